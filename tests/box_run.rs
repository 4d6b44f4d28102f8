//! `recbox run` and `recbox mixer` as real processes, as systemd runs the box: a
//! simulated SFU with two participants, the notify socket bound here. The service
//! says it is ready, pings the watchdog, records a growing recording, and on SIGTERM
//! says it is stopping, closes the recording and exits 0; the recording opens in
//! ffprobe. A bad configuration is refused with the key named.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::Recbox;
use recbox::appliance::front::Front;
use recbox::appliance::{Appliance, ApplianceError, Event, Plan, RecordingState};
use recbox::audio::chime::Chime;
use recbox::audio::playback::SimulatedSpeaker;
use recbox::audio::ChimePlayer;
use recbox::config::Config;
use recbox::link::frame::FaultKind;
use recbox::mixer::service::MixerReport;
use recbox::panel::{PanelState, SimulatedPanel, SimulatedPanelHandle};
use recbox::recorder::layout::{INDEX_FILE, MP4_FILE};
use recbox::sfu::Notice;
use recbox::storage::health::HealthEvent;
use recbox::systemd::Notifier;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// Generous: the machine is shared and busy.
const PATIENCE: Duration = Duration::from_secs(90);

/// The notify socket systemd would bind; every datagram as a line.
struct NotifySocket {
    path: PathBuf,
    messages: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        Self {
            path,
            messages,
            seen: Vec::new(),
        }
    }

    /// Waits for a message that `pred` accepts; every message seen is kept.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}; got {:?}", self.seen));
            self.seen.push(message.clone());
            if pred(&message) {
                return message;
            }
        }
    }

    fn count(&self, message: &str) -> usize {
        self.seen.iter().filter(|m| *m == message).count()
    }
}

/// `recbox` with `args`, under a simulated systemd at `notify` if given.
fn spawn(args: &[&str], notify: Option<&Path>) -> Recbox {
    Recbox::spawn("recbox", |cmd| {
        cmd.args(args);
        if let Some(path) = notify {
            cmd.env("NOTIFY_SOCKET", path)
                // Pings every half second.
                .env("WATCHDOG_USEC", "1000000");
        }
    })
}

/// The configuration of a small box under `dir`.
fn small_box(dir: &Path, sfu: &str) -> PathBuf {
    common::box_config(dir, sfu, r#"size = "320x240""#, "")
}

/// The recording directories under `storage/room-1`.
fn recordings(storage: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(storage.join("room-1"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until the one recording's file has grown past two sizes seen; its dir.
fn wait_for_growth(storage: &Path) -> PathBuf {
    let deadline = Instant::now() + PATIENCE;
    let mut sizes = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no growing recording: {sizes:?}");
        if let [dir] = recordings(storage).as_slice() {
            let len = file_len(&dir.join(MP4_FILE));
            if sizes.last() != Some(&len) {
                sizes.push(len);
            }
            // The init segment, then two more fragments.
            if sizes.iter().filter(|&&s| s > 0).count() >= 3 {
                return dir.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The recording was closed and opens as one H.264 and one Opus stream with
/// packets in both.
fn check_recording(dir: &Path) {
    let mp4 = dir.join(MP4_FILE);
    assert_eq!(common::stream_codecs(&mp4), ["h264", "opus"]);
    let packets = common::packet_counts(&mp4);
    assert!(packets.iter().all(|&n| n > 0), "{packets:?}");
    assert!(file_len(&dir.join(INDEX_FILE)) > 0);
    // Closed cleanly: nothing left for recovery to do.
    assert!(
        recbox::recorder::recovery::find_unfinished(dir.parent().unwrap().parent().unwrap())
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_ready_watched_records_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sfu = common::start_sfu().await;
    let config = small_box(dir.path(), &sfu);
    let mut notify = NotifySocket::bind(dir.path());
    let config_arg = config.to_str().unwrap().to_owned();
    let notify_path = notify.path.clone();
    let storage = dir.path().join("storage");

    let (mut notify, mut recbox, dir_of_recording) = tokio::task::spawn_blocking(move || {
        let recbox = spawn(&["run", "--config", &config_arg], Some(&notify_path));
        notify.wait_for("READY=1", |m| m == "READY=1");
        let recording = wait_for_growth(&storage);
        notify.wait_for("a recording status", |m| {
            m.starts_with("STATUS=Recording rec-")
        });
        // The watchdog keeps being pinged while it records.
        let pings = notify.count("WATCHDOG=1");
        for _ in 0..3 {
            notify.wait_for("WATCHDOG=1", |m| m == "WATCHDOG=1");
        }
        assert!(notify.count("WATCHDOG=1") >= pings + 3);
        (notify, recbox, recording)
    })
    .await
    .unwrap();

    recbox.terminate();
    let (notify, status, log) = tokio::task::spawn_blocking(move || {
        notify.wait_for("STOPPING=1", |m| m == "STOPPING=1");
        let status = recbox.wait();
        (notify, status, recbox.log())
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // Stop and Stopped were exchanged: the recorder confirmed the recording's end.
    assert!(
        log.iter()
            .any(|l| l.contains("recording stopped") && l.contains("fragments=")),
        "no confirmed stop in the log"
    );
    let ready = notify.seen.iter().position(|m| m == "READY=1").unwrap();
    let stopping = notify.seen.iter().position(|m| m == "STOPPING=1").unwrap();
    assert!(ready < stopping);
    check_recording(&dir_of_recording);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixer_alone_records_on_a_recorder_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let recorder = common::start_recorder("127.0.0.1:0", &storage, |c| {
        c.stats_interval = Duration::from_millis(500);
    })
    .await;
    let key_file = dir.path().join("link.key");
    std::fs::write(&key_file, b"test link key\n").unwrap();
    let sfu = common::start_sfu().await;
    let args: Vec<String> = [
        "mixer",
        "--sfu",
        &sfu,
        "--recorder",
        &recorder.to_string(),
        "--key-file",
        key_file.to_str().unwrap(),
        "--room",
        common::ROOM,
        "--ingest",
        "127.0.0.1:0",
        "--size",
        "320x240",
        "--fps",
        "10",
        "--encoder",
        "software",
    ]
    .map(str::to_owned)
    .to_vec();
    let (recbox, recording) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let recbox = spawn(&args, None);
        let recording = wait_for_growth(&storage);
        (recbox, recording)
    })
    .await
    .unwrap();
    recbox.terminate();
    let status = tokio::task::spawn_blocking(move || {
        let mut recbox = recbox;
        recbox.wait()
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    check_recording(&recording);
}

fn run_with(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recbox.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_configuration_is_refused_with_its_key() {
    for (config, message) in [
        (
            "[recorder]\nstats_interval = \"0s\"\n",
            r#"recorder.stats_interval = "0s": must be more than zero"#,
        ),
        (
            "[recorder]\nspol = \"/tmp\"\n",
            "recorder.spol: unknown key",
        ),
        (
            "[sfu]\nurl = \"http//x\"\n",
            r#"sfu.url = "http//x": not a ws:// URL"#,
        ),
        ("[mixer\n", "line 1"),
    ] {
        let (ok, stderr) = run_with(config);
        assert!(!ok, "{config:?} accepted");
        assert!(stderr.contains(message), "{config:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["run", "--config", "/nonexistent/recbox.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/recbox.toml"), "{stderr}");
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recbox.toml");
    std::fs::write(&path, "[mixer]\nfps = 25\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let config = recbox::config::Config::parse(&printed).unwrap();
    assert_eq!(config.mixer.fps, 25);
    assert_eq!(config.recorder, recbox::config::RecorderSection::default());

    std::fs::write(&path, "[mixer]\nfps = 0\nroom = \"\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["mixer.room = \"\"", "mixer.fps = 0"] {
        assert!(stderr.contains(key), "{stderr}");
    }

    // A link key file that cannot be read, or holds no key, is named.
    let key_file = dir.path().join("link.key");
    std::fs::write(&path, format!("[link]\nkey_file = {key_file:?}\n")).unwrap();
    for contents in [None, Some("  \n")] {
        if let Some(c) = contents {
            std::fs::write(&key_file, c).unwrap();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("link.key_file"), "{stderr}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["config", "defaults"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        recbox::config::DOCUMENTED_DEFAULTS
    );
}

/// The next event that `pred` accepts.
async fn wait_event(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if pred(&event) => return event,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("no {what}: events closed"),
            Err(_) => panic!("no {what} within {PATIENCE:?}"),
        }
    }
}

/// Recorded bytes in a stats report.
fn recorded(event: &Event) -> Option<u64> {
    match event {
        Event::Mixer(report) => match &**report {
            MixerReport::Relayed(Notice::Stats { stats, .. }) => Some(stats.file_bytes),
            _ => None,
        },
        _ => None,
    }
}

/// The box of a configuration in this process, with its front as `recbox run`
/// wires it on a simulated panel and speaker; it records only when told.
struct FrontedBox {
    events: broadcast::Receiver<Event>,
    panel: SimulatedPanelHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ApplianceError>>,
    front: JoinHandle<()>,
}

impl FrontedBox {
    fn start(text: &str, speaker: &SimulatedSpeaker) -> (Config, Self) {
        let mut config = Config::parse(text).unwrap();
        config.recording.autostart = false;
        let (appliance, handle) =
            Appliance::new(Plan::both(&config, common::key()), Notifier::none());
        let events = handle.subscribe();
        let (panel_io, panel) = SimulatedPanel::new();
        let front = Front {
            panel: Box::new(panel_io),
            timing: config.panel.timing(),
            chimes: ChimePlayer::new(Box::new(speaker.clone())),
            button: None,
        }
        .spawn(&handle);
        // The front ends when the box's events do: nothing else may hold them open.
        drop(handle);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(appliance.run(async {
            let _ = stopped.await;
        }));
        let running = Self {
            events,
            panel,
            stop,
            task,
            front,
        };
        (config, running)
    }

    /// Stops the box, which ends its front; the panel, to read what it showed.
    async fn stop(self) -> SimulatedPanelHandle {
        self.stop.send(()).unwrap();
        let waited = tokio::time::timeout(PATIENCE, async {
            self.task.await.unwrap().unwrap();
            self.front.await.unwrap();
        });
        waited.await.expect("the box and its front stop");
        self.panel
    }
}

/// The box's front as `recbox run` wires it: a short press on the panel's button
/// (the `Toggle` command) starts recording, a long one (`SafeStop`) closes it and
/// syncs the disk; the panel shows each step up to eject-safe, and the speaker
/// chimes the start and the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_button_records_and_safe_stops_with_chimes() {
    let dir = tempfile::tempdir().unwrap();
    let sfu = common::start_sfu().await;
    let text = std::fs::read_to_string(small_box(dir.path(), &sfu)).unwrap();
    let speaker = SimulatedSpeaker::new();
    let (config, mut running) = FrontedBox::start(&text, &speaker);
    let idle = |e: &Event| matches!(e, Event::State(RecordingState::Idle));
    wait_event(&mut running.events, "idle at start", idle).await;
    assert!(
        recordings(&dir.path().join("storage")).is_empty(),
        "no autostart"
    );

    let press = |held: Duration| {
        let panel = &running.panel;
        async move {
            panel.press();
            tokio::time::sleep(held).await;
            panel.release();
        }
    };
    press(Duration::from_millis(200)).await;
    let first =
        recorded(&wait_event(&mut running.events, "bytes", |e| recorded(e) > Some(0)).await);
    wait_event(&mut running.events, "more bytes", |e| recorded(e) > first).await;
    press(config.panel.long_press + Duration::from_millis(300)).await;
    wait_event(&mut running.events, "synced", |e| {
        matches!(e, Event::Synced(Ok(())))
    })
    .await;

    let mut panel = running.stop().await;
    let mut shown = Vec::new();
    while let Some(state) = panel.next_shown().await {
        shown.push(state);
    }
    let steps: Vec<PanelState> = [
        PanelState::Starting,
        PanelState::Recording,
        PanelState::Stopping,
        PanelState::EjectSafe,
    ]
    .into_iter()
    .filter(|s| shown.contains(s))
    .collect();
    assert_eq!(steps.len(), 4, "the panel showed {shown:?}");
    let at = |s| shown.iter().position(|&x| x == s).unwrap();
    assert!(at(PanelState::Starting) < at(PanelState::Recording));
    assert!(at(PanelState::Recording) < at(PanelState::Stopping));
    assert!(at(PanelState::Stopping) < at(PanelState::EjectSafe));
    assert_eq!(
        speaker.played(),
        [Chime::Start.pcm(), Chime::Stop.pcm()],
        "a start and a stop chime"
    );
    let [dir] = recordings(&dir.path().join("storage"))
        .try_into()
        .expect("one recording");
    check_recording(&dir);
}

/// On a host the panel is simulated, and its button is pressed with signals: SIGUSR1
/// a short press (start or stop), SIGUSR2 a long one (safe stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_press_the_simulated_panel_button() {
    let dir = tempfile::tempdir().unwrap();
    let sfu = common::start_sfu().await;
    let config = small_box(dir.path(), &sfu);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("backend = \"none\"", "backend = \"simulated\"")
        .replace("[recording]", "")
        + "[recording]\nautostart = false\n";
    std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let storage = dir.path().join("storage");
    let (status, log) = tokio::task::spawn_blocking(move || {
        let mut recbox = spawn(&["run", "--config", &config_arg], None);
        recbox.wait_line("recbox is up");
        assert!(recordings(&storage).is_empty(), "no autostart");
        recbox.signal(libc::SIGUSR1);
        recbox.wait_line("front panel button command=StartStop");
        let recording = wait_for_growth(&storage);
        recbox.signal(libc::SIGUSR2);
        recbox.wait_line("storage synced: the disk can be removed");
        recbox.wait_line("front panel: eject-safe");
        check_recording(&recording);
        recbox.terminate();
        (recbox.wait(), recbox.log())
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let gestures: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("front panel button command="))
        .collect();
    assert_eq!(gestures.len(), 2, "{gestures:?}");
    assert!(gestures[0].contains("StartStop") && gestures[1].contains("SafeStop"));
}

/// While no recording runs, the panel follows the storage monitor: a disk short of
/// space (here: any disk, under a threshold no disk meets) shows as a warning on an
/// idle box, not as ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_box_shows_low_space_on_its_panel() {
    let dir = tempfile::tempdir().unwrap();
    let sfu = common::start_sfu().await;
    let text = std::fs::read_to_string(small_box(dir.path(), &sfu)).unwrap();
    let text = text.replace("[recorder]\n", "[recorder]\nlow_space = \"1000000G\"\n");
    let (_, mut running) = FrontedBox::start(&text, &SimulatedSpeaker::new());
    wait_event(&mut running.events, "the low-space finding", |e| {
        matches!(
            e,
            Event::Storage(HealthEvent::Fault {
                kind: FaultKind::LowSpace,
                ..
            })
        )
    })
    .await;
    let shown = tokio::time::timeout(PATIENCE, async {
        while let Some(state) = running.panel.next_shown().await {
            if state == PanelState::Warning {
                return;
            }
        }
        panic!("the panel ended without showing the warning");
    });
    shown
        .await
        .expect("the idle panel shows low space as a warning");
    assert!(
        recordings(&dir.path().join("storage")).is_empty(),
        "nothing recorded"
    );
    running.stop().await;
}
