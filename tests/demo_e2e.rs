//! The whole chain as `recbox demo` runs it: a simulated SFU sending four
//! participants as real RTP, the mixer decoding, mixing, compositing and encoding,
//! the recorder writing. The recording must be one 1280x720 H.264 stream and one Opus
//! stream of the expected length, each participant's colour must be in its own tile
//! and each participant's tone in the mixed audio.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use recbox::demo::{self, DemoConfig};
use recbox::mixer::layout;
use recbox::mixer::tone::tone_power;
use recbox::recorder::layout::MP4_FILE;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PALETTE, TONES_HZ};

const WIDTH: usize = 1280;
const HEIGHT: usize = 720;

/// One decoded picture at `at_s` seconds, as raw I420.
fn picture_at(file: &Path, at_s: f64) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_s}"), "-i"])
        .arg(file)
        .args([
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), WIDTH * HEIGHT * 3 / 2);
    out.stdout
}

/// The mixed audio from `from_s` on, as 48 kHz mono samples.
fn audio_from(file: &Path, from_s: f64) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{from_s}"), "-i"])
        .arg(file)
        .args(["-vn", "-ac", "1", "-ar", "48000", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

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
    let picture = picture_at(&file, duration - 1.5);
    let tiles = layout::tiles(4, WIDTH, HEIGHT).unwrap();
    let (chroma_w, luma) = (WIDTH / 2, WIDTH * HEIGHT);
    for (i, tile) in tiles.iter().enumerate() {
        let (x, y) = (tile.x + tile.width / 2, tile.y + tile.height / 4);
        let c = (y / 2) * chroma_w + x / 2;
        let got = [
            picture[y * WIDTH + x],
            picture[luma + c],
            picture[luma + luma / 4 + c],
        ];
        let want = rgb_to_yuv(PALETTE[i]);
        let close = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 12);
        assert!(
            close,
            "tile {i} is {got:?}, participant {} is {want:?}",
            i + 1
        );
    }

    // Every participant's tone is in the mix, and no other.
    let audio = audio_from(&file, 1.0);
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
