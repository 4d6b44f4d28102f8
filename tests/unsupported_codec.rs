//! A publisher whose video the box cannot decode, in a real meeting: `recbox run` as
//! a process, the simulated SFU announcing three participants (H.264, VP9, VP8) and
//! sending all of them as real RTP, the VP9 one's join announced again twice while
//! the recording runs. The control platform (its webhook, and the SFU's control
//! audience) is told once, the VP9 participant's tile is the placeholder while the
//! others show their pictures, its Opus audio is mixed, and the box records on
//! until it is stopped.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::decode;
use common::process::Recbox;
use common::webhook::{Received, Receiver};
use recbox::recorder::layout::MP4_FILE;
use recbox::sfu::sim::{CodecMix, SimEvent};
use recbox::sfu::Announcement;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PatternCodec, PALETTE};

/// Generous: the machine is shared and busy.
const PATIENCE: Duration = Duration::from_secs(120);
const WIDTH: usize = 640;
const HEIGHT: usize = 360;
/// How much the box records before it is stopped, well after the repeated joins.
const RECORDED_MS: u64 = 7_000;
/// The compositor's placeholder: a dark grey tile, a lighter grey figure on it.
const PLACEHOLDER: [u8; 3] = [48, 128, 128];
const FIGURE: [u8; 3] = [110, 128, 128];

/// Every request the webhook gets until the recording's stats say `RECORDED_MS`.
async fn until_recorded(platform: &mut Receiver) -> Vec<Received> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = platform
            .next(left)
            .await
            .unwrap_or_else(|| panic!("not recorded {RECORDED_MS} ms in time: {got:#?}"));
        let recorded = r.json["kind"] == "stats"
            && r.json["stats"]["duration_ms"].as_u64().unwrap() >= RECORDED_MS;
        got.push(r);
        if recorded {
            return got;
        }
    }
}

fn the_recording(storage: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(storage.join("room-1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].join(MP4_FILE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_publisher_is_reported_once_and_shown_as_a_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Receiver::start().await;
    let (sfu, mut sim_events) = common::start_sfu_with(|c| {
        c.participants = 3;
        c.codecs = CodecMix::default()
            .with(&"2".parse().unwrap(), PatternCodec::Vp9)
            .unwrap()
            .with(&"3".parse().unwrap(), PatternCodec::Vp8)
            .unwrap();
        c.schedule = "announce 2@2s, announce 2@3s".parse().unwrap();
    })
    .await;
    let config = common::box_config(
        dir.path(),
        &sfu,
        &format!("size = \"{WIDTH}x{HEIGHT}\"\nstats_interval = \"1s\""),
        &format!("webhook = \"{}\"", platform.url("/hooks")),
    );
    let mut recbox = Recbox::spawn("recbox", |cmd| {
        cmd.arg("run").arg("--config").arg(&config);
    });

    let mut delivered = until_recorded(&mut platform).await;
    recbox.terminate();
    let (status, log) = tokio::task::spawn_blocking(move || (recbox.wait(), recbox.log()))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // The notices left before the box exited are all delivered by then.
    delivered.extend(platform.drain());

    // The repeated joins reached the mixer, and were refused as the same person.
    let repeats = log
        .iter()
        .filter(|l| l.contains("participant p2 joined twice"))
        .count();
    assert_eq!(repeats, 2, "both repeats are in the log");
    assert!(!log.iter().any(|l| l.contains("panicked")));
    // p2's VP9 arrived all along, and was dropped as of a stream the mixer has not.
    let demux = log
        .iter()
        .find_map(|l| l.split("ingest demux stats: ").nth(1))
        .expect("the ingest's last stats");
    let unknown: u64 = demux
        .split_whitespace()
        .find_map(|f| f.strip_prefix("unknown_ssrc="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{demux}"));
    assert!(unknown >= 30, "{demux}");

    let unsupported: Vec<&Received> = delivered
        .iter()
        .filter(|r| r.json["kind"] == "unsupported_codec")
        .collect();
    assert_eq!(unsupported.len(), 1, "{unsupported:#?}");
    let notice = &unsupported[0].json;
    assert_eq!(
        (&notice["to"], &notice["participant"], &notice["detail"]),
        (&"control".into(), &"p2".into(), &"vp9".into())
    );
    assert!(notice["text"].as_str().unwrap().contains("placeholder"));
    // Its streams are counted with the others' (its video is not received at all).
    let ingest = delivered
        .iter()
        .rev()
        .find(|r| r.json["kind"] == "ingest")
        .expect("ingest counters");
    let streams = ingest.json["streams"].as_array().unwrap();
    let of_p2: Vec<&str> = streams
        .iter()
        .filter(|s| s["participant"] == "p2")
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(of_p2, ["audio"], "{streams:#?}");

    // The SFU's control audience heard it once too.
    let mut shown: Vec<Announcement> = Vec::new();
    while let Ok(event) = sim_events.try_recv() {
        if let SimEvent::Announcement(a) = event {
            shown.push(a);
        }
    }
    let to_control: Vec<String> = shown
        .iter()
        .map(Announcement::to_json_line)
        .filter(|l| l.contains(r#""kind":"unsupported_codec""#))
        .collect();
    assert_eq!(to_control.len(), 1, "{to_control:#?}");
    assert!(to_control[0].contains(r#""to":"control""#));

    // The recording went on to the stop: p1 (H.264) and p3 (VP8) in their tiles,
    // p2 a placeholder; everyone's tone in the mix.
    let file = the_recording(&dir.path().join("storage"));
    assert_eq!(common::stream_codecs(&file), ["h264", "opus"]);
    let duration = common::format_duration_s(&file);
    assert!(
        duration >= RECORDED_MS as f64 / 1000.0 - 0.5,
        "{duration} s"
    );
    let colours = [rgb_to_yuv(PALETTE[0]), FIGURE, rgb_to_yuv(PALETTE[2])];
    let picture = decode::late_picture_with_tiles(&file, WIDTH, HEIGHT, &colours);
    let p2 = recbox::mixer::layout::tiles(3, WIDTH, HEIGHT).unwrap()[1];
    let corner = decode::yuv_at(
        &picture,
        WIDTH,
        HEIGHT,
        p2.x + p2.width / 8,
        p2.y + p2.height / 8,
    );
    assert!(decode::near(corner, PLACEHOLDER, 12), "{corner:?}");
    decode::assert_tones(&file, Duration::from_secs(1), &[0, 1, 2]);
}
