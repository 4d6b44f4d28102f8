//! The whole chain as `recbox demo` runs it: a simulated SFU sending four
//! participants as real RTP, the mixer decoding, mixing, compositing and encoding,
//! the recorder writing. The recording must be one 1280x720 H.264 stream and one Opus
//! stream of the expected length, each participant's colour must be in its own tile
//! and each participant's tone in the mixed audio.

mod common;

use std::time::Duration;

use common::decode;
use recbox::demo::{self, DemoConfig};
use recbox::mixer::layout;
use recbox::mixer::tone::tone_power;
use recbox::recorder::layout::MP4_FILE;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PALETTE, TONES_HZ};

const WIDTH: usize = 1280;
const HEIGHT: usize = 720;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_records_every_participant_in_its_tile_and_the_mix() {
    let dir = tempfile::tempdir().unwrap();
    let config = DemoConfig {
        duration: Duration::from_secs(6),
        storage: dir.path().to_path_buf(),
        participants: 4,
        ..DemoConfig::default()
    };
    let mut out = Vec::new();
    let outcome = demo::run(config, &mut out).await.unwrap();
    let printed = String::from_utf8_lossy(&out);
    eprintln!("{printed}");
    assert!(
        printed.contains("participants 4"),
        "progress shows the participants"
    );

    assert_ingest_counters_reported(&outcome.announcements, 4);

    assert_eq!(outcome.segments.len(), 1);
    let file = outcome.segments[0].join(MP4_FILE);
    let streams = common::ffprobe(&[
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        file.to_str().unwrap(),
    ]);
    let streams: Vec<&str> = streams.lines().map(str::trim).collect();
    assert_eq!(
        streams,
        ["h264,1280,720", "opus"],
        "one video and one audio stream"
    );
    let duration = common::format_duration_s(&file);
    assert!((4.5..=7.5).contains(&duration), "duration {duration} s");
    // How many pictures a loaded machine manages is no matter for this test (the
    // benchmark measures speed); they all decode, and the audio is complete.
    let frames = common::decoded_frames(&file);
    assert!(frames[0] >= 5, "{frames:?} frames in {duration} s");
    assert!(
        frames[1] as f64 >= duration * 50.0 * 0.95,
        "{frames:?} frames in {duration} s"
    );

    // Late in the recording, every participant is on screen in its own tile: sample
    // a quarter of the way down each tile, clear of the pattern's moving square.
    let picture = decode::picture_at(
        &file,
        Duration::from_secs_f64(duration - 1.5),
        WIDTH,
        HEIGHT,
    );
    let tiles = layout::tiles(4, WIDTH, HEIGHT).unwrap();
    for (i, tile) in tiles.iter().enumerate() {
        let (x, y) = (tile.x + tile.width / 2, tile.y + tile.height / 4);
        let got = decode::yuv_at(&picture, WIDTH, HEIGHT, x, y);
        let want = rgb_to_yuv(PALETTE[i]);
        let close = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 12);
        assert!(
            close,
            "tile {i} is {got:?}, participant {} is {want:?}",
            i + 1
        );
    }

    // Every participant's tone is in the mix, and no other.
    let audio = decode::audio_at(&file, Duration::from_secs(1), None);
    assert!(audio.len() >= 48_000 * 3, "{} samples", audio.len());
    let powers: Vec<f32> = TONES_HZ
        .iter()
        .map(|&f| tone_power(&audio, 48_000, f))
        .collect();
    let quietest_present = powers[..4].iter().cloned().fold(f32::MAX, f32::min);
    let loudest_absent = powers[4..].iter().cloned().fold(0.0, f32::max);
    assert!(
        quietest_present > 0.01 && quietest_present > 1000.0 * loudest_absent,
        "tone powers {powers:?}"
    );
}

/// The control platform hears how well the mixer receives each participant.
fn assert_ingest_counters_reported(announcements: &[String], participants: usize) {
    let last = announcements
        .iter()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "ingest")
        .expect("an ingest announcement every stats interval");
    assert_eq!(last["to"], "control");
    let streams = last["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2 * participants, "{last}");
    for s in streams {
        assert!(s["packets"].as_u64().unwrap() > 0, "{s}");
        assert!(s["frames"].as_u64().unwrap() > 0, "{s}");
        assert!(s.get("lost").is_some() && s.get("keyframe_requests").is_some());
    }
}
