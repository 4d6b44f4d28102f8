//! `recbox recorder` stopped by SIGTERM or SIGINT while it records: it closes the
//! recording as on the mixer's `Stop` (the mixer gets `Stopped`, index and playlist
//! are closed), exits 0 within its shutdown limit, and `recbox inspect` finds the
//! recording finished cleanly, with every frame sent in it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::RecorderProcess;
use common::{connect, decoded_frames, feed, recording_dir, send_media, ROOM};
use recbox::link::session::MixerEvent;
use recbox::mixer::uplink::UplinkEvent;
use recbox::recorder::service::SHUTDOWN_LIMIT;

/// Bounds a broken run only.
const PATIENCE: Duration = Duration::from_secs(60);

async fn stops_cleanly_on(signal: libc::c_int) {
    let storage = tempfile::tempdir().unwrap();
    let mut recorder = RecorderProcess::spawn(storage.path(), &[]);
    let mut up = connect(&recorder.addr, "rec-1").await;
    let mut feed = feed();
    up.start(feed.start_params("rec-1", ROOM)).await.unwrap();
    let sent = send_media(&up, &mut feed, 3.0).await;
    // The recorder answers a ping once it has taken every frame sent before it: all
    // of them are then the recording's, whenever the signal comes.
    up.ping(7).await.unwrap();
    let mut events = sent.events;
    let mut summary = None;
    loop {
        let event = tokio::time::timeout(PATIENCE, up.next_event())
            .await
            .expect("the recorder answers")
            .expect("the link stays open until Stopped");
        match event {
            UplinkEvent::Recorder(MixerEvent::Pong { seq: 7 }) => {
                recorder.signal(signal);
            }
            UplinkEvent::Recorder(MixerEvent::Stopped(s)) => {
                summary = Some(s);
            }
            UplinkEvent::Recorder(other) => events.push(other),
            UplinkEvent::Closed(_) => break,
        }
    }
    let summary = summary.expect("the recorder sent Stopped before closing the link");
    assert!(
        !events.iter().any(|e| matches!(e, MixerEvent::Fault(_))),
        "no fault expected: {events:?}"
    );
    // The shutdown limit bounds the recorder; the rest is slack for a loaded machine.
    let status = recorder
        .wait_for(SHUTDOWN_LIMIT + PATIENCE)
        .expect("the recorder exits after the signal");
    assert!(status.success(), "the recorder exited with {status}");

    let dir = recording_dir(storage.path(), "rec-1");
    let inspect = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .arg("inspect")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let report = String::from_utf8(inspect.stdout).unwrap();
    assert!(report.contains("finished cleanly"), "{report}");
    let mp4 = dir.join("recording.mp4");
    assert_eq!(decoded_frames(&mp4), [sent.video_frames, sent.audio_frames]);
    assert_eq!(summary.file_bytes, std::fs::metadata(&mp4).unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_recording() {
    stops_cleanly_on(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_finishes_the_recording() {
    stops_cleanly_on(libc::SIGINT).await;
}
