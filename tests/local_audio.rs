//! The box's local audio through real alsa-lib, without a sound card: alsa-lib's own
//! `file` plugin over its `null` device plays into a raw file and captures from one.
//! The devices are defined in a private configuration read after the system's
//! (`ALSA_CONFIG_PATH`), so the code under test opens them by name like any card.
#![cfg(feature = "alsa")]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use recbox::audio::alsa::{AlsaCapture, AlsaSpeaker};
use recbox::audio::chime::{melody, A5_HZ, E5_HZ, E6_HZ};
use recbox::audio::convert::PcmFormat;
use recbox::audio::CaptureDevice;
use recbox::audio::{Chime, ChimePlayer, Microphone};
use recbox::decoder::opus::OpusDecoder;
use recbox::demo::{self, DemoConfig};
use recbox::encoder::EncoderKind;
use recbox::link::frame::Track;
use recbox::mixer::engine::{Engine, EngineConfig, EngineOutput};
use recbox::mixer::tone::tone_power;

const MICROPHONE: &str = "recbox_test_microphone";
const MICROPHONE_FILE: &str = "microphone.raw";

/// A speaker device of its own for each chime: opening a file device starts its
/// file anew.
fn speaker(chime: Chime) -> String {
    format!("recbox_test_speaker_{chime}")
}
/// The room's sound in the microphone's file: 2 s of a 1 kHz tone, 48 kHz stereo S16.
const ROOM_HZ: f32 = 1000.0;
const ROOM_FRAMES: usize = 96_000;

fn room_sound() -> Vec<i16> {
    (0..ROOM_FRAMES)
        .flat_map(|i| {
            let s = 9000.0 * (std::f32::consts::TAU * ROOM_HZ * i as f32 / 48_000.0).sin();
            [s as i16, s as i16]
        })
        .collect()
}

/// The directory of the test devices' files, after pointing alsa-lib at their
/// definitions (once, before any test opens a device).
fn devices() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let system = ["/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("alsa-lib's configuration (Debian: libasound2-data)");
        let dir = tempfile::tempdir().unwrap().keep();
        let bytes: Vec<u8> = room_sound().iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(dir.join(MICROPHONE_FILE), bytes).unwrap();
        let mut config = format!(
            "pcm.{MICROPHONE} {{ type file; slave.pcm null; file \"/dev/null\"; \
             infile \"{}\"; format raw }}\n",
            dir.join(MICROPHONE_FILE).display()
        );
        let speakers = Chime::ALL.map(speaker);
        for device in speakers
            .iter()
            .map(String::as_str)
            .chain(["recbox_test_speaker_demo"])
        {
            let file = dir.join(format!("{device}.raw"));
            config += &format!(
                "pcm.{device} {{ type file; slave.pcm null; file \"{}\"; format raw }}\n",
                file.display()
            );
        }
        let config_file = dir.join("asound.conf");
        std::fs::write(&config_file, config).unwrap();
        std::env::set_var(
            "ALSA_CONFIG_PATH",
            format!("{system}:{}", config_file.display()),
        );
        dir
    })
}

/// The left channel of a raw 48 kHz stereo S16 file, checking that the right one is
/// the same (a mono chime on both).
fn left_channel(file: &Path) -> Vec<i16> {
    let bytes = std::fs::read(file).unwrap();
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let (left, right): (Vec<i16>, Vec<i16>) = samples.chunks(2).map(|p| (p[0], p[1])).unzip();
    assert_eq!(left, right, "{}: the same on both channels", file.display());
    left
}

fn stereo_48k() -> PcmFormat {
    PcmFormat {
        rate: 48_000,
        channels: 2,
    }
}

#[test]
fn chimes_played_through_alsa_land_in_the_file_with_their_tones() {
    let dir = devices();
    for (chime, notes) in [
        (Chime::Start, vec![E5_HZ, A5_HZ]),
        (Chime::Stop, vec![A5_HZ, E5_HZ]),
        (Chime::Fault, vec![E6_HZ; 3]),
    ] {
        let device = speaker(chime);
        // What the device negotiates: the file plugin takes what it is asked for.
        assert_eq!(AlsaSpeaker::open(&device).unwrap().format(), stereo_48k());
        let player = ChimePlayer::open(&device);
        assert!(player.is_enabled());
        assert!(player.play(chime));
        // Dropping the player waits for the chime to be played.
        drop(player);
        let left = left_channel(&dir.join(format!("{device}.raw")));
        // All of it, with the one silent sample that lets the last one out.
        let pcm = chime.pcm();
        assert_eq!(left.len(), pcm.len() + 1, "{chime}");
        assert_eq!(left[..pcm.len()], pcm, "{chime}: played as synthesised");
        assert_eq!(melody(&left, 48_000), notes, "{chime}");
    }
}

#[test]
fn a_tone_captured_through_alsa_is_in_the_mix() {
    devices();
    let capture = AlsaCapture::open(MICROPHONE).unwrap();
    assert_eq!(capture.format(), stereo_48k());
    drop(capture);
    // 1.5 s of frames from the device. The file holds 2 s; past its end the plugin
    // gives silence, as fast as it is read (it has no clock).
    let wanted = 75;
    let (tx, frames) = mpsc::channel();
    let microphone = Microphone::open(MICROPHONE).expect("the test microphone opens");
    let mut sent = 0;
    let capturing = microphone.start(move |frame| {
        sent += 1;
        tx.send(frame).is_ok() && sent < wanted
    });
    let frames: Vec<_> = frames.iter().take(wanted).collect();
    drop(capturing);
    assert_eq!(frames.len(), wanted);
    let captured: Vec<i16> = frames.iter().flat_map(|f| f.pcm.clone()).collect();
    assert_eq!(
        captured,
        room_sound()[..captured.len()],
        "captured as it was"
    );

    // The microphone in the mix, on the engine's clock: one frame every 20 ms.
    let config = EngineConfig {
        width: 160,
        height: 90,
        fps: 5,
        encoder: EncoderKind::Software,
        ..EngineConfig::default()
    };
    let start = Instant::now();
    let mut engine = Engine::new(config, start).unwrap();
    let mut decoder = OpusDecoder::new().unwrap();
    let mut mix = Vec::new();
    for (k, mut frame) in frames.into_iter().enumerate() {
        frame.captured = start + Duration::from_millis(20) * (k as u32 + 1);
        engine.on_local_audio(&frame);
        for out in engine.poll(frame.captured).unwrap() {
            match out {
                EngineOutput::Media(m) if m.track == Track::Audio => {
                    mix.extend(decoder.decode(&m.data).unwrap().iter().step_by(2));
                }
                _ => {}
            }
        }
    }
    assert!(mix.len() >= 48_000, "{} samples mixed", mix.len());
    let tail = &mix[mix.len() - 48_000..];
    let p = tone_power(tail, 48_000, ROOM_HZ);
    assert!(p > 0.05, "the room's tone in the mix at power {p}");
    assert!(tone_power(tail, 48_000, 1300.0) < p / 1000.0);
}

/// A short demo with the chimes on the test speaker: the recording's start and stop
/// are heard, in that order. A microphone that does not exist costs the meeting
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_chimes_at_its_start_and_stop() {
    let dir = devices();
    let device = "recbox_test_speaker_demo";
    let storage = tempfile::tempdir().unwrap();
    let config = DemoConfig {
        duration: Duration::from_secs(3),
        storage: storage.path().to_path_buf(),
        participants: 1,
        engine: EngineConfig {
            width: 160,
            height: 90,
            fps: 10,
            encoder: EncoderKind::Software,
            ..EngineConfig::default()
        },
        chimes: Some(device.into()),
        microphone: Some("recbox_no_such_microphone".into()),
        ..DemoConfig::default()
    };
    let mut out = Vec::new();
    let outcome = demo::run(config, &mut out).await.unwrap();
    let printed = String::from_utf8_lossy(&out);
    eprintln!("{printed}");
    assert_eq!(outcome.segments.len(), 1);
    let start = printed.find("chime: start").expect("the start chime");
    let stop = printed.find("chime: stop").expect("the stop chime");
    assert!(start < stop);
    let left = left_channel(&dir.join(format!("{device}.raw")));
    let mut expected = Chime::Start.pcm();
    expected.push(0);
    expected.extend(Chime::Stop.pcm());
    expected.push(0);
    assert_eq!(left, expected, "start, then stop, each to its end");
}
