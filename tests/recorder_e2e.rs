//! Whole recorder over real sockets: a mixer-side client sends real H.264 and Opus;
//! ffprobe reads the result; the index matches the file.

mod common;

use std::path::Path;

use common::*;
use recbox::link::session::MixerEvent;
use recbox::recorder::index::IndexFile;
use recbox::recorder::recovery;

async fn record_and_check(listen: &str, storage: &Path) {
    let addr = start_recorder(listen, storage, |_| {}).await;
    let mut up = connect(&addr, "rec-1").await;
    let mut feed = feed();
    up.start(feed.start_params("rec-1", ROOM)).await.unwrap();
    let mut sent = send_media(&up, &mut feed, 4.0).await;
    let summary = stop(&mut up, &mut sent.events).await;
    assert!(
        !sent
            .events
            .iter()
            .any(|e| matches!(e, MixerEvent::Fault(_))),
        "no fault expected: {:?}",
        sent.events
    );
    assert!(sent
        .events
        .iter()
        .any(|e| matches!(e, MixerEvent::Started { .. })));

    let dir = recording_dir(storage, "rec-1");
    let mp4 = dir.join("recording.mp4");
    assert_eq!(stream_codecs(&mp4), ["h264", "opus"]);
    let duration = format_duration_s(&mp4);
    let expected = sent.end_us as f64 / 1e6;
    assert!(
        (duration - expected).abs() < 0.1,
        "ffprobe duration {duration} s, sent {expected} s"
    );
    // Every frame sent is in the file and decodes.
    assert_eq!(decoded_frames(&mp4), [sent.video_frames, sent.audio_frames]);

    // The playlist plays too (ffprobe follows the byte ranges into the mp4).
    let m3u8 = dir.join("recording.m3u8");
    let playlist_codecs = ffprobe(&[
        "-show_entries",
        "stream=codec_name",
        "-of",
        "csv=p=0",
        m3u8.to_str().unwrap(),
    ]);
    // The HLS demuxer lists the streams once per program and once on their own.
    let mut codecs: Vec<_> = playlist_codecs.lines().filter(|l| !l.is_empty()).collect();
    codecs.sort_unstable();
    codecs.dedup();
    assert_eq!(codecs, ["h264", "opus"]);

    // The live index is exactly the one the file implies: one record per fragment,
    // at the fragments' real offsets.
    let live = IndexFile::open(&dir.join("recording.idx"))
        .unwrap()
        .read_all()
        .unwrap()
        .records;
    let from_file = recovery::index_from_file(&mp4).unwrap();
    assert_eq!(live, from_file);
    // GOP of 30 frames at 30 fps: one fragment per second, each starting on a keyframe.
    assert_eq!(live.len(), 4);
    assert_eq!(summary.fragments as usize, live.len());
    assert!(live.iter().all(|r| r.keyframe()));
    let file_len = std::fs::metadata(&mp4).unwrap().len();
    let last = live.last().unwrap();
    assert_eq!(last.offset + u64::from(last.length), file_len);
    assert_eq!(summary.file_bytes, file_len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_over_tcp() {
    let storage = tempfile::tempdir().unwrap();
    record_and_check("127.0.0.1:0", storage.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_over_unix_socket() {
    let storage = tempfile::tempdir().unwrap();
    let sock = storage.path().join("link.sock");
    record_and_check(&format!("unix:{}", sock.display()), storage.path()).await;
}

/// Stats arrive every interval while recording, and the file size they report is a
/// size the file really had: empty, the init segment, or that plus a whole number
/// of fragments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_sizes_on_disk() {
    let storage = tempfile::tempdir().unwrap();
    let addr = start_recorder("127.0.0.1:0", storage.path(), |c| {
        c.stats_interval = std::time::Duration::from_millis(50);
    })
    .await;
    let mut up = connect(&addr, "rec-stats").await;
    let mut feed = feed();
    up.start(feed.start_params("rec-stats", ROOM))
        .await
        .unwrap();
    let mut sent = send_media(&up, &mut feed, 3.0).await;
    // Keep the recording open until at least two Stats have been seen.
    let mut stats = Vec::new();
    while stats.len() < 2 {
        match up.next_event().await.unwrap() {
            recbox::mixer::uplink::UplinkEvent::Recorder(MixerEvent::Stats(s)) => stats.push(s),
            recbox::mixer::uplink::UplinkEvent::Recorder(other) => sent.events.push(other),
            closed => panic!("{closed:?}"),
        }
    }
    stop(&mut up, &mut sent.events).await;
    let dir = recording_dir(storage.path(), "rec-stats");
    let records = IndexFile::open(&dir.join("recording.idx"))
        .unwrap()
        .read_all()
        .unwrap()
        .records;
    // Nothing yet (a stats tick before the init segment is on disk), the init
    // segment, or whole fragments after it.
    let init_len = records[0].offset;
    let mut possible = vec![0, init_len];
    for r in &records {
        possible.push(r.offset + u64::from(r.length));
    }
    for s in &stats {
        assert!(
            possible.contains(&s.file_bytes),
            "stats file_bytes {} is not a size the file had: {possible:?}",
            s.file_bytes
        );
        assert!(s.free_bytes > 0);
        assert!(s.index_bytes >= 16);
    }
    assert!(stats.windows(2).all(|w| w[0].at <= w[1].at));
}
