//! The box records a real Janus meeting: Janus 1.1 from Debian with a config of
//! this test's own, real WebRTC publishers (GStreamer webrtcbin, H.264 and Opus) and
//! a TextRoom terminal on a data channel (`tests/janus/terminal.py`), `recbox run`
//! joining the VideoRoom. Everything runs in a network namespace this test creates
//! and removes, with a veth pair whose both ends are inside it (Janus gathers no
//! loopback ICE candidates): nothing is sent anywhere else.
//!
//! Checked: each publisher's colour is in a tile and its tone in the mix of the
//! recording; when one leaves and another joins mid-meeting the pictures and the mix
//! follow; a real storage fault (the recording disk, a small ext4 loop disk, filled
//! below its low watermark) reaches the TextRoom terminal as an announcement, and so
//! does its clearing; the control platform's webhook (a real HTTP receiver inside the
//! namespace) gets the same notices and the stats every interval.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::decode;
use common::webhook::{Received, Receiver};
use recbox::mixer::layout;
use recbox::mixer::tone::tone_power;
use recbox::recorder::layout::MP4_FILE;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PALETTE, TONES_HZ};
use recbox::testbed::disk_fault::{DiskFault, FaultDisk};
use serde_json::Value;

/// Generous: the machine is shared and busy.
const PATIENCE: Duration = Duration::from_secs(40);
const WIDTH: usize = 640;
const HEIGHT: usize = 360;
/// Janus's end of the veth pair, and the terminals'.
const JANUS_IF: (&str, &str) = ("vj", "10.77.0.1/24");
const TERMINAL_IF: (&str, &str) = ("vc", "10.77.0.2/24");
const PYTHON: &str = "/usr/bin/python3";

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace with `lo` and a veth pair, both ends inside; removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Self, String> {
        let name = format!("recbox-e2e-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        let ip = |args: &[&str]| run(Command::new("ip").arg("-n").arg(&ns.name).args(args));
        ip(&["link", "set", "lo", "up"])?;
        ip(&[
            "link",
            "add",
            JANUS_IF.0,
            "type",
            "veth",
            "peer",
            "name",
            TERMINAL_IF.0,
        ])?;
        for (dev, addr) in [JANUS_IF, TERMINAL_IF] {
            ip(&["addr", "add", addr, "dev", dev])?;
            ip(&["link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    /// A command run inside the namespace.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// A TCP listener on 127.0.0.1 inside the namespace, bound from a thread that
    /// entered it (the socket stays there; this process does not).
    fn listen(&self) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap();
            // SAFETY: a valid descriptor of a network namespace; this thread only.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap()
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port` inside.
    fn accepts(&self, port: u16) -> bool {
        self.command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process inside the namespace: its stdout lines to the test, its stderr
/// to the test's; SIGTERM then SIGKILL on drop.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let err = BufReader::new(child.stderr.take().unwrap());
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next stdout line that `pred` takes, within [`PATIENCE`].
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {PATIENCE:?}; got {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// The next JSON event `event` on stdout.
    fn wait_event(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.wait_line(event, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                assert_ne!(v["event"], "error", "{l}");
                v["event"] == event && pred(&v)
            })
        });
        serde_json::from_str(&line).unwrap()
    }

    fn terminate(&self) {
        // SAFETY: a plain syscall on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Asks it to stop; its exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        self.terminate();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.terminate();
        for _ in 0..60 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Janus's libraries (`/usr/lib/<triplet>/janus`).
fn janus_lib() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .map(|e| e.unwrap().path().join("janus"))
        .find(|p| p.join("plugins/libjanus_videoroom.so").exists())
        .expect("Janus is installed (tests/run installs janus)")
}

/// Janus in the namespace with this test's configuration under `dir`.
fn start_janus(ns: &Netns, dir: &Path) -> Proc {
    let conf = dir.join("janus");
    std::fs::create_dir_all(&conf).unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/janus");
    for f in [
        "janus.plugin.videoroom.jcfg",
        "janus.plugin.textroom.jcfg",
        "janus.transport.websockets.jcfg",
    ] {
        std::fs::copy(here.join(f), conf.join(f)).unwrap();
    }
    let main = std::fs::read_to_string(here.join("janus.jcfg.in"))
        .unwrap()
        .replace("@LIB@", janus_lib().to_str().unwrap())
        .replace("@CONF@", conf.to_str().unwrap())
        .replace("@ICE@", JANUS_IF.0);
    std::fs::write(conf.join("janus.jcfg"), main).unwrap();
    let mut cmd = ns.command("janus");
    cmd.arg("-C")
        .arg(conf.join("janus.jcfg"))
        .arg("-F")
        .arg(&conf)
        .args(["-o"]);
    let janus = Proc::spawn("janus", cmd);
    let deadline = Instant::now() + PATIENCE;
    while !ns.accepts(8188) {
        assert!(Instant::now() < deadline, "Janus never listened on 8188");
        std::thread::sleep(Duration::from_millis(100));
    }
    janus
}

/// A terminal (`tests/janus/terminal.py`) named `name` with `args`.
fn terminal(ns: &Netns, name: &str, args: &[&str]) -> Proc {
    let mut cmd = ns.command(PYTHON);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/janus/terminal.py"))
        .args(["--name", name])
        .args(args);
    Proc::spawn(name, cmd)
}

/// A publisher showing `PALETTE[i]` in `codec` ("h264" or "vp8") and sounding
/// `TONES_HZ[i]`, once Janus has taken its media.
fn publisher(ns: &Netns, name: &str, i: usize, codec: &str) -> Proc {
    let [r, g, b] = PALETTE[i];
    let rgb = format!("{r:02x}{g:02x}{b:02x}");
    let freq = TONES_HZ[i].to_string();
    let mut p = terminal(
        ns,
        name,
        &[
            "--publish",
            "--vcodec",
            if codec == "vp8" { "vp8" } else { "x264" },
            "--rgb",
            &rgb,
            "--freq",
            &freq,
        ],
    );
    let configured = p.wait_event("configured", |_| true);
    assert_eq!(configured["video_codec"], codec, "{configured}");
    assert_eq!(configured["audio_codec"], "opus", "{configured}");
    p.wait_event("webrtcup", |_| true);
    p
}

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
    let ns = match Netns::create() {
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
    let _janus = start_janus(&ns, dir.path());
    let mut platform = Platform {
        receiver: Receiver::serve(ns.listen()),
        notices: Vec::new(),
    };
    let webhook = platform.receiver.url("/recbox/notices");

    // The meeting: a TextRoom terminal and three publishers, then the box.
    let mut carol = terminal(&ns, "carol", &["--textroom"]);
    carol.wait_event("textroom_joined", |_| true);
    let alice = publisher(&ns, "alice", 0, "h264");
    let bob = publisher(&ns, "bob", 1, "vp8");
    let mut dave = publisher(&ns, "dave", 2, "h264");
    let config = box_config(dir.path(), disk.root(), &webhook);
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_recbox"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut recbox = Proc::spawn("recbox", cmd);

    let first = platform.receiving(3, &BTreeSet::new()).await;
    let before_leave = platform.recorded_past(Duration::from_secs(3)).await;

    // Dave leaves, Erin joins.
    assert!(dave.stop().success(), "dave left cleanly");
    drop(dave);
    let erin = publisher(&ns, "erin", 3, "vp8");
    let second = platform.receiving(3, &first).await;
    assert_eq!(
        first.intersection(&second).count(),
        2,
        "{first:?} then {second:?}"
    );
    let after_join = platform.recorded_past(Duration::from_secs(3)).await;

    // A real storage fault: the recording disk filled below its low watermark.
    let injected = disk.inject(DiskFault::LowSpace).unwrap();
    let fault = carol.wait_event("announcement", |v| announced(v)["kind"] == "low_space");
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
    let cleared = carol.wait_event("announcement", |v| announced(v)["kind"] == "cleared");
    assert_eq!(announced(&cleared)["fault"], "low_space");
    assert!(cleared["text"].as_str().unwrap().starts_with("Resolved: "));
    platform
        .wait("the clearing", |v| {
            v["kind"] == "cleared" && v["fault"] == "low_space"
        })
        .await;
    // The stats keep coming after it.
    platform.recorded_past(Duration::from_secs(1)).await;

    assert!(recbox.stop().success(), "recbox run exits cleanly");
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
    drop(ns);
}
