//! The whole chain as `recbox demo` runs it: a simulated SFU sending four
//! participants as real RTP, the mixer decoding, mixing, compositing and encoding,
//! the recorder writing. The recording must be one 1280x720 H.264 stream and one Opus
//! stream of the expected length, each participant's colour must be in its own tile
//! and each participant's tone in the mixed audio, whether it sends H.264 or VP8.

mod common;

use std::time::Duration;

use common::decode;
use recbox::demo::{self, DemoConfig};
use recbox::mixer::engine::EngineConfig;
use recbox::recorder::layout::MP4_FILE;
use recbox::sfu::sim::CodecMix;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PatternCodec, PALETTE};

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

    // Late in the recording, every participant is on screen in its own tile.
    let colours: Vec<[u8; 3]> = PALETTE[..4].iter().map(|&c| rgb_to_yuv(c)).collect();
    decode::late_picture_with_tiles(&file, WIDTH, HEIGHT, &colours);

    // Every participant's tone is in the mix, and no other.
    decode::assert_tones(&file, Duration::from_secs(1), &[0, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_mixing_vp8_and_h264_publishers_records_each_in_its_tile() {
    let (width, height) = (640, 360);
    let dir = tempfile::tempdir().unwrap();
    let config = DemoConfig {
        duration: Duration::from_secs(6),
        storage: dir.path().to_path_buf(),
        participants: 4,
        engine: EngineConfig {
            width: width as u16,
            height: height as u16,
            fps: 15,
            ..EngineConfig::default()
        },
        codecs: CodecMix::default()
            .with(&"2,3".parse().unwrap(), PatternCodec::Vp8)
            .unwrap(),
        ..DemoConfig::default()
    };
    let mut out = Vec::new();
    let outcome = demo::run(config, &mut out).await.unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out));
    // Every codec decodes: no participant's video is reported as undecodable.
    assert!(
        !outcome
            .announcements
            .iter()
            .any(|a| a.contains("unsupported_codec")),
        "{:#?}",
        outcome.announcements
    );
    assert_ingest_counters_reported(&outcome.announcements, 4);
    let file = outcome.segments[0].join(MP4_FILE);
    assert_eq!(common::stream_codecs(&file), ["h264", "opus"]);
    let duration = common::format_duration_s(&file);
    assert!((4.5..=7.5).contains(&duration), "duration {duration} s");
    // Participants 2 and 3 send VP8, 1 and 4 H.264.
    let colours: Vec<[u8; 3]> = PALETTE[..4].iter().map(|&c| rgb_to_yuv(c)).collect();
    decode::late_picture_with_tiles(&file, width, height, &colours);
    decode::assert_tones(&file, Duration::from_secs(1), &[0, 1, 2, 3]);
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
