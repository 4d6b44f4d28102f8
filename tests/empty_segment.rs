//! A recorder killed right after `Start` leaves a segment with an init segment and
//! no fragment, which no player opens. After a restart every segment the chain lists
//! (and its HLS playlist) is opened by ffmpeg without error, and the chain stays
//! right. Real `recbox recorder` processes killed with SIGKILL; this test's own link
//! client plays the mixer.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::RecorderProcess;
use common::*;
use recbox::link::transport::LinkAddr;
use recbox::mixer::uplink::Uplink;
use recbox::recorder::layout::{parse_chain, CHAIN_FILE, INDEX_FILE, MP4_FILE, PLAYLIST_FILE};
use recbox::recorder::resume;

const ID: &str = "rec-e";

/// Sends `Start` and waits until the recorder has made the segment whose directory
/// name `dir_name` accepts, up to its file `ready`; no media is sent, so the segment
/// holds no fragment. The link is returned open: closed, the recorder would finish
/// the recording.
async fn start_only(
    addr: &LinkAddr,
    storage: &Path,
    dir_name: impl Fn(&str) -> bool,
    ready: &str,
) -> (PathBuf, Uplink) {
    let up = connect(addr, ID).await;
    up.start(feed().start_params(ID, ROOM)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let made = fs::read_dir(storage.join(ROOM)).ok().and_then(|entries| {
            entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(&dir_name)
                    && p.join(ready).exists()
            })
        });
        if let Some(dir) = made {
            return (dir, up);
        }
        assert!(Instant::now() < deadline, "no segment made after Start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn holds_no_fragment(dir: &Path) -> bool {
    let init = fs::read(dir.join(MP4_FILE)).unwrap();
    let boxes: Vec<String> = recbox::media::mp4::boxes(&init)
        .map(|b| recbox::media::mp4::fourcc_str(&b.unwrap().0.fourcc))
        .collect();
    fs::metadata(dir.join(INDEX_FILE)).unwrap().len() == 16 && !boxes.iter().any(|b| b == "moof")
}

/// ffmpeg reads the whole file (or playlist) and decodes it without one error.
fn ffmpeg_plays(input: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed (tests/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg on {}: {stderr}",
        input.display()
    );
}

/// Every segment the chain lists exists, is opened and decoded by ffmpeg, as a file
/// and through its playlist, and every segment's chain agrees.
fn every_listed_segment_plays(storage: &Path) -> Vec<PathBuf> {
    let dirs = resume::segment_dirs(&[storage], ROOM, ID);
    assert!(!dirs.is_empty());
    for dir in &dirs {
        ffmpeg_plays(&dir.join(MP4_FILE));
        ffmpeg_plays(&dir.join(PLAYLIST_FILE));
        if dirs.len() > 1 {
            let chain = parse_chain(&fs::read_to_string(dir.join(CHAIN_FILE)).unwrap()).unwrap();
            let listed: Vec<_> = chain.into_iter().map(|e| e.dir).collect();
            assert_eq!(&listed, &dirs, "chain of {}", dir.display());
        }
    }
    // What is on disk is what is listed: nothing unplayable is left beside it.
    let mut on_disk: Vec<PathBuf> = fs::read_dir(storage.join(ROOM))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, dirs);
    dirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_killed_right_after_start_leaves_no_unplayable_segment() {
    let storage = tempfile::tempdir().unwrap();
    let recorder = RecorderProcess::spawn(storage.path(), &[]);
    let (empty, up) = start_only(
        &recorder.addr,
        storage.path(),
        |n| n.ends_with(ID),
        PLAYLIST_FILE,
    )
    .await;
    drop(recorder); // SIGKILL
    drop(up);
    assert!(holds_no_fragment(&empty));

    // The restart recovers it: no fragment, so it is gone; the mixer comes back.
    let recorder = RecorderProcess::spawn(storage.path(), &[]);
    assert!(!empty.exists(), "{} is left", empty.display());
    record(&recorder.addr, ID, 3.0).await;
    let dirs = every_listed_segment_plays(storage.path());
    assert_eq!(dirs.len(), 1);
    let (out, text) = inspect(&dirs[0]);
    assert!(out && text.contains("health   finished cleanly"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_killed_right_after_a_resumed_start_keeps_the_chain_right() {
    let storage = tempfile::tempdir().unwrap();
    // Segment 0 holds at least two 1-second fragments (the resumed segment carries
    // the last one over); the recorder dies while it is still open.
    let recorder = RecorderProcess::spawn(storage.path(), &[]);
    let addr = recorder.addr.clone();
    {
        let up = connect(&addr, ID).await;
        let mut feed = feed();
        up.start(feed.start_params(ID, ROOM)).await.unwrap();
        send_media(&up, &mut feed, 4.0).await;
        let first = recording_dir(storage.path(), ID);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !fs::metadata(first.join(INDEX_FILE)).is_ok_and(|m| m.len() >= 16 + 2 * 40) {
            assert!(Instant::now() < deadline, "no fragment indexed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(recorder);
        drop(up);
    }
    // The mixer comes back and starts again: segment 1 is made after the recovered
    // segment 0, and the recorder dies before any media reaches it.
    let recorder = RecorderProcess::spawn(storage.path(), &[]);
    let (empty, up) = start_only(
        &recorder.addr,
        storage.path(),
        |n| n.ends_with(".seg1"),
        CHAIN_FILE,
    )
    .await;
    drop(recorder);
    drop(up);
    assert!(holds_no_fragment(&empty));

    // Restarted, the recorder removes segment 1 and takes it out of the chain; the
    // mixer comes back once more and the recording continues.
    let recorder = RecorderProcess::spawn(storage.path(), &[]);
    assert!(!empty.exists(), "{} is left", empty.display());
    record(&recorder.addr, ID, 3.0).await;
    let dirs = every_listed_segment_plays(storage.path());
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let (ok, text) = inspect(&dirs[0]);
    assert!(
        ok && text.contains("chain    2 segments") && !text.contains("UNREACHABLE"),
        "{text}"
    );
}

fn inspect(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .arg("inspect")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
