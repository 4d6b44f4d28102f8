//! Recovery of a recording damaged the way a power cut or a pulled disk damages it,
//! on a real recording of real H.264 and Opus.

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use recbox::recorder::recovery;
use recbox::recorder::service::recover_unfinished;

/// Records 4 s (four 1-second fragments) and returns the recording directory.
async fn record(storage: &Path) -> PathBuf {
    record_in(storage, "rec-r", 4.0).await
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// What a crash leaves: the playlist was never ended.
fn unfinish(dir: &Path) {
    let p = dir.join("recording.m3u8");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("#EXT-X-ENDLIST\n", "")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_file_torn_index_and_missing_index_are_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let original = record(&tmp.path().join("storage")).await;
    let live = index_records(&original);
    assert_eq!(live.len(), 4);
    let live_index = std::fs::read(original.join("recording.idx")).unwrap();

    // Torn tail: the file ends in the middle of the last fragment, and the last index
    // record is half garbage.
    let crashed = tmp.path().join("storage/room-1/crashed");
    copy_dir(&original, &crashed);
    let last = live[3];
    OpenOptions::new()
        .write(true)
        .open(crashed.join("recording.mp4"))
        .unwrap()
        .set_len(last.offset + u64::from(last.length) / 2)
        .unwrap();
    let mut idx = std::fs::read(crashed.join("recording.idx")).unwrap();
    let n = idx.len();
    idx[n - 10] ^= 0x5a;
    std::fs::write(crashed.join("recording.idx"), &idx).unwrap();
    unfinish(&crashed);

    // The index without its damaged record is still readable up to the tear.
    assert_eq!(index_records(&crashed), live[..3]);

    // Missing index: only the file is left.
    let no_index = tmp.path().join("storage/room-1/no-index");
    copy_dir(&original, &no_index);
    std::fs::remove_file(no_index.join("recording.idx")).unwrap();
    unfinish(&no_index);

    // The recorder recovers both at start; the clean original is left alone.
    assert_eq!(recover_unfinished(&tmp.path().join("storage")), 2);

    let mp4 = crashed.join("recording.mp4");
    assert_eq!(
        std::fs::metadata(&mp4).unwrap().len(),
        last.offset,
        "torn fragment cut off"
    );
    let rebuilt = std::fs::read(crashed.join("recording.idx")).unwrap();
    assert_eq!(rebuilt, live_index[..live_index.len() - 40]);
    assert_eq!(recovery::index_from_file(&mp4).unwrap(), live[..3]);
    // It plays to the last whole fragment: three seconds of 30 fps video.
    assert_eq!(decoded_frames(&mp4)[0], 90);
    assert!(std::fs::read_to_string(crashed.join("recording.m3u8"))
        .unwrap()
        .contains("#EXT-X-ENDLIST"));

    assert_eq!(
        std::fs::read(no_index.join("recording.idx")).unwrap(),
        live_index,
        "index rebuilt from the file is byte-identical to the live one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_inspect_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = record(&tmp.path().join("storage")).await;
    let live_index = std::fs::read(dir.join("recording.idx")).unwrap();
    let mp4 = dir.join("recording.mp4");
    let len = std::fs::metadata(&mp4).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&mp4)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    std::fs::remove_file(dir.join("recording.idx")).unwrap();

    let recbox = env!("CARGO_BIN_EXE_recbox");
    let out = Command::new(recbox)
        .arg("repair")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("recording.idx")).unwrap(),
        live_index[..live_index.len() - 40]
    );

    let out = Command::new(recbox)
        .arg("inspect")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in ["H.264", "Opus", "320x240", "3 fragments"] {
        assert!(
            text.contains(expected),
            "inspect lacks {expected:?}:\n{text}"
        );
    }

    let out = Command::new(recbox)
        .arg("inspect")
        .arg(tmp.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}
