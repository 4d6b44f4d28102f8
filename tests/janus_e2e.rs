//! The box records a real Janus meeting: Janus 1.1 from Debian with a config of
//! the lab's own, real WebRTC publishers (GStreamer webrtcbin, H.264 or VP8, and
//! Opus) and a TextRoom terminal on a data channel (`recbox::testbed::janus`),
//! `recbox run` joining the VideoRoom. Everything runs in a network namespace this
//! test creates and removes, with a veth pair whose both ends are inside it (Janus
//! gathers no loopback ICE candidates): nothing is sent anywhere else.
//!
//! Checked: each publisher's colour is in a tile and its tone in the mix of the
//! recording; when one leaves and another joins mid-meeting the pictures and the mix
//! follow; a real storage fault (the recording disk, a small ext4 loop disk, filled
//! below its low watermark) reaches the TextRoom terminal as an announcement, and so
//! does its clearing; the control platform's webhook (a real HTTP receiver inside the
//! namespace) gets the same notices and the stats every interval.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::decode;
use common::webhook::{Received, Receiver};
use recbox::mixer::layout;
use recbox::mixer::tone::tone_power;
use recbox::recorder::layout::MP4_FILE;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PALETTE, TONES_HZ};
use recbox::testbed::disk_fault::{DiskFault, FaultDisk};
use recbox::testbed::janus::{JanusLab, PublisherCodec, PATIENCE};
use recbox::testbed::netns::Netns;
use recbox::testbed::process::Process;
use serde_json::Value;

const WIDTH: usize = 640;
const HEIGHT: usize = 360;

/// The box's configuration: recording to `storage`, joining Janus in the namespace.
fn box_config(dir: &Path, storage: &Path, webhook: &str) -> PathBuf {
    let config = dir.join("recbox.toml");
    let health = FaultDisk::health();
    std::fs::write(
        &config,
        format!(
            r#"
[link]
socket = "{dir}/run/link.sock"
[recorder]
storage = "{storage}"
spool = "{dir}/spool"
stats_interval = "1s"
low_space = {low}
full_space = {full}
[mixer]
ingest = "127.0.0.1:0"
room = "room-1"
size = "{WIDTH}x{HEIGHT}"
fps = 15
encoder = "software"
stats_interval = "2s"
[sfu]
kind = "janus"
url = "ws://127.0.0.1:8188/"
room = 1234
secret = "adminpwd"
admin_key = "recbox-admin-key"
textroom = 1234
display_name = "recbox"
webhook = "{webhook}"
[panel]
backend = "none"
[audio]
chime = false
"#,
            dir = dir.display(),
            storage = storage.display(),
            low = health.low_space_bytes.unwrap(),
            full = health.full_space_bytes,
        ),
    )
    .unwrap();
    config
}

/// The control platform: every notice the webhook got, kept in order.
struct Platform {
    receiver: Receiver,
    notices: Vec<Value>,
}

impl Platform {
    /// The first notice from now on that `pred` takes.
    async fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(Received { json, path, .. }) = self.receiver.next(left).await else {
                panic!("the webhook got no {what} within {PATIENCE:?}");
            };
            assert_eq!(path, "/recbox/notices");
            self.notices.push(json.clone());
            if pred(&json) {
                return json;
            }
        }
    }

    /// The recorded duration once it has grown `more` past the latest stats.
    async fn recorded_past(&mut self, more: Duration) -> Duration {
        let now = self.wait("stats", |v| v["kind"] == "stats").await;
        let from = now["stats"]["duration_ms"].as_u64().unwrap();
        let until = from + more.as_millis() as u64;
        self.wait("stats", |v| {
            v["kind"] == "stats" && v["stats"]["duration_ms"].as_u64().unwrap() >= until
        })
        .await;
        Duration::from_millis(from)
    }

    /// Waits for an ingest report where `participants` each have both streams
    /// decoding frames, one at least not `before`; their ids.
    async fn receiving(
        &mut self,
        participants: usize,
        before: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let report = self
            .wait("ingest of every publisher", |v| {
                let Some(streams) = v["streams"].as_array().filter(|_| v["kind"] == "ingest")
                else {
                    return false;
                };
                let live: Vec<&Value> = streams
                    .iter()
                    .filter(|s| s["frames"].as_u64() > Some(0))
                    .collect();
                let ids: BTreeSet<&str> = live
                    .iter()
                    .filter_map(|s| s["participant"].as_str())
                    .collect();
                streams.len() == 2 * participants
                    && live.len() == streams.len()
                    && ids.len() == participants
                    && (before.is_empty() || ids.iter().any(|id| !before.contains(*id)))
            })
            .await;
        report["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["participant"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Which publishers (indexes into the palette, of `candidates`) fill the tiles of a
/// `shown`-participant layout at `at`.
fn tiles_at(file: &Path, at: Duration, shown: usize, candidates: &[usize]) -> BTreeSet<usize> {
    let picture = decode::picture_at(file, at, WIDTH, HEIGHT);
    layout::tiles(shown, WIDTH, HEIGHT)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(t, tile)| {
            let (x, y) = (tile.x + tile.width / 2, tile.y + tile.height / 2);
            let got = decode::yuv_at(&picture, WIDTH, HEIGHT, x, y);
            let distance = |i: &usize| {
                let want = rgb_to_yuv(PALETTE[*i]);
                got.iter()
                    .zip(want)
                    .map(|(g, w)| g.abs_diff(w))
                    .max()
                    .unwrap()
            };
            let best = *candidates.iter().min_by_key(|i| distance(i)).unwrap();
            assert!(
                distance(&best) <= 24,
                "tile {t} at {at:?} is {got:?}, no publisher's colour"
            );
            best
        })
        .collect()
}

/// The tones (of `candidates`) clearly in the mix for `len` from `from`.
fn tones_at(file: &Path, from: Duration, len: Duration, candidates: &[usize]) -> BTreeSet<usize> {
    let audio = decode::audio_at(file, from, Some(len));
    assert!(audio.len() >= 48_000, "{} samples", audio.len());
    let powers: Vec<f32> = candidates
        .iter()
        .map(|&i| tone_power(&audio, 48_000, TONES_HZ[i]))
        .collect();
    let loudest = powers.iter().cloned().fold(0.0, f32::max);
    eprintln!("tone powers from {from:?}: {powers:?}");
    candidates
        .iter()
        .zip(&powers)
        .filter(|(_, &p)| p > 0.001 && p > loudest / 100.0)
        .map(|(&i, _)| i)
        .collect()
}

/// The announcement's JSON line (the second line of its text).
fn announced(event: &Value) -> Value {
    let text = event["text"].as_str().unwrap();
    let json = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no JSON line in {text:?}"));
    serde_json::from_str(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recbox_records_a_real_janus_meeting_and_tells_its_terminals() {
    let ns = match Netns::create("e2e") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace with a veth pair here ({e}); Janus needs one for ICE");
            return;
        }
    };
    let Some(disk) = FaultDisk::create() else {
        eprintln!("SKIPPED: cannot mount a loop disk here (needs root)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lab = JanusLab::start(ns).unwrap();
    let ns = lab.netns();
    let listener = ns
        .inside(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let mut platform = Platform {
        receiver: Receiver::serve(listener),
        notices: Vec::new(),
    };
    let webhook = platform.receiver.url("/recbox/notices");

    // The meeting: a TextRoom terminal and three publishers, then the box.
    let mut carol = lab.textroom_terminal("carol").unwrap();
    let alice = lab.publisher("alice", 0, PublisherCodec::H264).unwrap();
    let bob = lab.publisher("bob", 1, PublisherCodec::Vp8).unwrap();
    let mut dave = lab.publisher("dave", 2, PublisherCodec::H264).unwrap();
    let config = box_config(dir.path(), disk.root(), &webhook);
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_recbox"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut recbox = Process::spawn("recbox", cmd).unwrap();

    let first = platform.receiving(3, &BTreeSet::new()).await;
    let before_leave = platform.recorded_past(Duration::from_secs(3)).await;

    // Dave leaves, Erin joins.
    assert!(dave.stop().unwrap().success(), "dave left cleanly");
    drop(dave);
    let erin = lab.publisher("erin", 3, PublisherCodec::Vp8).unwrap();
    let second = platform.receiving(3, &first).await;
    assert_eq!(
        first.intersection(&second).count(),
        2,
        "{first:?} then {second:?}"
    );
    let after_join = platform.recorded_past(Duration::from_secs(3)).await;

    // A real storage fault: the recording disk filled below its low watermark.
    let injected = disk.inject(DiskFault::LowSpace).unwrap();
    let fault = carol
        .wait_event("announcement", |v| announced(v)["kind"] == "low_space")
        .unwrap();
    let text = fault["text"].as_str().unwrap();
    assert!(
        text.starts_with("Recording warning: the recording disk is almost full."),
        "{text}"
    );
    assert_eq!(announced(&fault)["to"], "terminals");
    platform
        .wait("the fault", |v| v["kind"] == "low_space")
        .await;
    disk.repair(&injected).unwrap();
    let cleared = carol
        .wait_event("announcement", |v| announced(v)["kind"] == "cleared")
        .unwrap();
    assert_eq!(announced(&cleared)["fault"], "low_space");
    assert!(cleared["text"].as_str().unwrap().starts_with("Resolved: "));
    platform
        .wait("the clearing", |v| {
            v["kind"] == "cleared" && v["fault"] == "low_space"
        })
        .await;
    // The stats keep coming after it.
    platform.recorded_past(Duration::from_secs(1)).await;

    assert!(
        recbox.stop(PATIENCE).unwrap().success(),
        "recbox run exits cleanly"
    );
    for p in [alice, bob, erin, carol] {
        drop(p);
    }

    // The platform got every notice in order, numbered without gaps, the stats
    // every interval and the mixer's ingest counters.
    platform
        .notices
        .extend(platform.receiver.drain().into_iter().map(|r| r.json));
    let seqs: Vec<u64> = platform
        .notices
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "no notice lost"
    );
    let stats: Vec<u64> = platform
        .notices
        .iter()
        .filter(|v| v["kind"] == "stats")
        .map(|v| v["stats"]["duration_ms"].as_u64().unwrap())
        .collect();
    assert!(stats.windows(2).all(|w| w[0] <= w[1]), "{stats:?}");
    let recorded_s = stats.last().unwrap() / 1000;
    // Every second (the recorder's interval), give or take a busy machine.
    assert!(
        stats.len() as u64 >= recorded_s / 2,
        "{} stats in {recorded_s} s",
        stats.len()
    );
    assert!(platform
        .notices
        .iter()
        .any(|v| v["kind"] == "ingest" && v["to"] == "control"));
    assert!(platform
        .notices
        .iter()
        .all(|v| v["mixer"] == "recbox" && v["room"] == "room-1"));

    // The recording: each publisher in a tile and in the mix, the layout following
    // the leave and the join.
    let rooms: Vec<PathBuf> = std::fs::read_dir(disk.root().join("room-1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rooms.len(), 1, "one recording: {rooms:?}");
    let file = rooms[0].join(MP4_FILE);
    assert_eq!(common::stream_codecs(&file), ["h264", "opus"]);
    let everyone = [0, 1, 2, 3];
    let window = Duration::from_secs(2);
    let early = before_leave + Duration::from_millis(500);
    let late = after_join + Duration::from_millis(500);
    assert_eq!(
        tiles_at(&file, early + window / 2, 3, &everyone),
        BTreeSet::from([0, 1, 2])
    );
    assert_eq!(
        tones_at(&file, early, window, &everyone),
        BTreeSet::from([0, 1, 2])
    );
    assert_eq!(
        tiles_at(&file, late + window / 2, 3, &everyone),
        BTreeSet::from([0, 1, 3])
    );
    assert_eq!(
        tones_at(&file, late, window, &everyone),
        BTreeSet::from([0, 1, 3])
    );
    drop(disk);
    drop(lab);
}
