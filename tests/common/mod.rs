//! Helpers shared by the whole-process tests: a real recorder on a real socket, a
//! real mixer-side link client with synthetic participants, and ffprobe.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod decode;
pub mod process;
pub mod proxy;
pub mod rtp;
pub mod segments;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::frame::{text, Summary};
use recbox::link::handshake::LinkKey;
use recbox::link::session::MixerEvent;
use recbox::link::transport::{LinkAddr, LinkListener};
use recbox::media::h264::{nal_type, nal_units};
use recbox::mixer::uplink::{Uplink, UplinkEvent};
use recbox::recorder::service::{self, RecorderConfig};
use recbox::sfu::sim::{SfuSim, SimConfig, SimEvent};
use recbox::synth::{PatternSpec, SyntheticFeed, ToneSpec};
use recbox::testbed::scratch::{LoopDisk, Tmpfs};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const ROOM: &str = "room-1";

pub fn key() -> LinkKey {
    LinkKey::new(b"test link key".to_vec()).unwrap()
}

/// Starts a recorder on `addr` (port 0 / a socket path) and returns where it listens.
pub async fn start_recorder(
    addr: &str,
    storage: &Path,
    tune: impl FnOnce(&mut RecorderConfig),
) -> LinkAddr {
    start_recorder_task(addr, storage, tune).await.0
}

/// [`start_recorder`], with the task that accepts sessions (aborting it closes the
/// listener; sessions already accepted run on).
pub async fn start_recorder_task(
    addr: &str,
    storage: &Path,
    tune: impl FnOnce(&mut RecorderConfig),
) -> (LinkAddr, JoinHandle<()>) {
    let mut config = RecorderConfig::new(storage.to_path_buf(), key());
    tune(&mut config);
    let listener = LinkListener::bind(&addr.parse().unwrap()).await.unwrap();
    let local = listener.local_addr();
    (
        local,
        tokio::spawn(service::serve(listener, Arc::new(config))),
    )
}

/// A simulated SFU in this process with two small participants; its control URL.
pub async fn start_sfu() -> String {
    let (url, mut events) = start_sfu_with(|_| {}).await;
    // The simulator serves while someone listens.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    url
}

/// A simulated SFU in this process with two small participants (160x120, 10 fps)
/// unless `tune` says otherwise; its control URL and what it reports.
pub async fn start_sfu_with(
    tune: impl FnOnce(&mut SimConfig),
) -> (String, mpsc::UnboundedReceiver<SimEvent>) {
    let mut config = SimConfig {
        participants: 2,
        video: PatternSpec {
            width: 160,
            height: 120,
            fps: 10,
            gop: 20,
            ..PatternSpec::default()
        },
        ..SimConfig::default()
    };
    tune(&mut config);
    let sim = SfuSim::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let url = format!("ws://{}/", sim.local_addr().unwrap());
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(sim.run(tx));
    (url, events)
}

/// The configuration file of a small box under `dir` recording the meeting of the
/// SFU at `sfu` (software encoding at 10 fps, no panel, no chimes), with the lines
/// `mixer` and `sfu_extra` added to those sections.
pub fn box_config(dir: &Path, sfu: &str, mixer: &str, sfu_extra: &str) -> PathBuf {
    let config = dir.join("recbox.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[link]
socket = "{dir}/run/link.sock"
[recorder]
storage = "{dir}/storage"
spool = "{dir}/spool"
stats_interval = "500ms"
[mixer]
ingest = "127.0.0.1:0"
room = "{ROOM}"
fps = 10
encoder = "software"
{mixer}
[sfu]
url = "{sfu}"
{sfu_extra}
[panel]
backend = "none"
[audio]
chime = false
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    config
}

pub fn feed() -> SyntheticFeed {
    SyntheticFeed::new(
        PatternSpec {
            width: 320,
            height: 240,
            fps: 30,
            gop: 30,
            ..PatternSpec::default()
        },
        ToneSpec::default(),
    )
    .unwrap()
}

pub async fn connect(addr: &LinkAddr, recording: &str) -> Uplink {
    Uplink::connect(addr, key(), text(recording), DEFAULT_MAX_FRAME)
        .await
        .unwrap()
}

/// What a recording session sent and what the recorder answered.
pub struct Sent {
    pub video_frames: usize,
    pub audio_frames: usize,
    /// Media time of the end of the last frame sent, in µs.
    pub end_us: u64,
    pub events: Vec<MixerEvent>,
}

/// Sends `seconds` of media as fast as the link takes it (timestamps, not the clock,
/// define the recording's timing).
pub async fn send_media(uplink: &Uplink, feed: &mut SyntheticFeed, seconds: f64) -> Sent {
    let mut sent = Sent {
        video_frames: 0,
        audio_frames: 0,
        end_us: 0,
        events: Vec::new(),
    };
    let end = (seconds * 1e6) as u64;
    while feed.next_time_us() < end {
        let m = feed.next_media().unwrap();
        let (count, dur_us) = match m.track {
            recbox::link::frame::Track::Video => (&mut sent.video_frames, 1_000_000 / 30),
            recbox::link::frame::Track::Audio => (&mut sent.audio_frames, 20_000),
        };
        *count += 1;
        let t = m.pts as u64 * 1_000_000 / u64::from(m.track.timescale());
        sent.end_us = sent.end_us.max(t + dur_us);
        uplink.media(m).await.unwrap();
    }
    sent
}

/// Sends Stop and collects events until `Stopped`.
pub async fn stop(uplink: &mut Uplink, events: &mut Vec<MixerEvent>) -> Summary {
    uplink.stop().await.unwrap();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), uplink.next_event())
            .await
            .expect("recorder answers Stop")
            .expect("link open until Stopped");
        match ev {
            UplinkEvent::Recorder(MixerEvent::Stopped(summary)) => return summary,
            UplinkEvent::Recorder(other) => events.push(other),
            UplinkEvent::Closed(reason) => panic!("link closed before Stopped: {reason:?}"),
        }
    }
}

/// Records `seconds` of media as `recording` over the link at `addr`, and stops it
/// cleanly.
pub async fn record(addr: &LinkAddr, recording: &str, seconds: f64) {
    let mut up = connect(addr, recording).await;
    let mut feed = feed();
    up.start(feed.start_params(recording, ROOM)).await.unwrap();
    let mut sent = send_media(&up, &mut feed, seconds).await;
    stop(&mut up, &mut sent.events).await;
}

/// Records `seconds` of media as `recording` with a recorder of its own on
/// `storage`; returns the recording's directory.
pub async fn record_in(storage: &Path, recording: &str, seconds: f64) -> PathBuf {
    let addr = start_recorder("127.0.0.1:0", storage, |_| {}).await;
    record(&addr, recording, seconds).await;
    recording_dir(storage, recording)
}

/// The records of the index in the recording directory `dir`.
pub fn index_records(dir: &Path) -> Vec<recbox::recorder::index::IndexRecord> {
    recbox::recorder::index::IndexFile::open(&dir.join(recbox::recorder::layout::INDEX_FILE))
        .unwrap()
        .read_all()
        .unwrap()
        .records
}

/// The one recording directory under the room.
pub fn recording_dir(storage: &Path, recording: &str) -> PathBuf {
    let room = storage.join(ROOM);
    std::fs::read_dir(&room)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(recording))
        .unwrap_or_else(|| panic!("no recording {recording} in {}", room.display()))
}

pub fn ffprobe(args: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .output()
        .expect("ffprobe is installed (tests/run installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Codec names of the streams, in order.
pub fn stream_codecs(file: &Path) -> Vec<String> {
    ffprobe(&[
        "-show_entries",
        "stream=codec_name",
        "-of",
        "csv=p=0",
        file.to_str().unwrap(),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

pub fn format_duration_s(file: &Path) -> f64 {
    ffprobe(&[
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
        file.to_str().unwrap(),
    ])
    .trim()
    .parse()
    .unwrap()
}

/// Number of packets per stream (video first), counted without decoding; a stream
/// without packets counts 0.
pub fn packet_counts(file: &Path) -> Vec<u64> {
    ffprobe(&[
        "-count_packets",
        "-show_entries",
        "stream=nb_read_packets",
        "-of",
        "csv=p=0",
        file.to_str().unwrap(),
    ])
    .lines()
    .map(|l| match l.trim() {
        "N/A" => 0,
        n => n.parse().unwrap(),
    })
    .collect()
}

/// The pts of every packet per stream (video first), in the stream's time base.
pub fn packet_pts(file: &Path) -> [Vec<i64>; 2] {
    let mut pts = [Vec::new(), Vec::new()];
    let out = ffprobe(&[
        "-show_entries",
        "packet=stream_index,pts",
        "-of",
        "csv=p=0",
        file.to_str().unwrap(),
    ]);
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (stream, t) = line.split_once(',').unwrap();
        pts[stream.parse::<usize>().unwrap()].push(t.trim().parse().unwrap());
    }
    pts
}

/// Number of decodable frames per stream (video first), counted by decoding.
pub fn decoded_frames(file: &Path) -> Vec<usize> {
    ffprobe(&[
        "-count_frames",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "csv=p=0",
        file.to_str().unwrap(),
    ])
    .lines()
    .map(|l| l.trim().parse().unwrap())
    .collect()
}

/// A size-limited tmpfs; `None`, with the reason printed, where this process may
/// not mount.
pub fn tmpfs(size: &str) -> Option<Tmpfs> {
    let fs = Tmpfs::mount(size);
    if fs.is_none() {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
    }
    fs
}

/// An ext4 on a loop device; `None`, with the reason printed, where there is none.
pub fn loop_disk(size: u64) -> Option<LoopDisk> {
    let disk = LoopDisk::create(size);
    if disk.is_none() {
        eprintln!("SKIPPED: no loop device, mkfs.ext4 or right to mount here");
    }
    disk
}

/// Runs ffmpeg with a command line of whitespace-separated arguments (the paths are
/// in a temporary directory, without spaces).
pub fn ffmpeg(args: &str) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args.split_whitespace())
        .output()
        .expect("ffmpeg is installed (tests/run installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Splits an Annex B stream into access units (lists of NAL units): a unit starts at
/// the first slice of a picture (first_mb_in_slice 0, whose ue(v) code is a single 1
/// bit) or at the non-slice units that precede one.
pub fn access_units(stream: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_slice = false;
    for nal in nal_units(stream) {
        let slice = matches!(nal_type(nal), 1..=5);
        let first_slice = slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        if units.is_empty() || (has_slice && (first_slice || !slice)) {
            units.push(Vec::new());
            has_slice = false;
        }
        has_slice |= slice;
        units.last_mut().unwrap().push(nal);
    }
    units
}
