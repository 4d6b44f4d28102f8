//! Fault feedback end to end: from a storage fault made for real on the recorder's
//! disk to its announcement on the meeting's terminals, through the whole chain — the
//! recorder, the media link, the mixer service relaying to its SFU adapter, and then
//! either the JSON control channel over a WebSocket to the simulated SFU (`sim`, on
//! loopback, with a light meeting: two participants, small pictures, so the CPU is
//! not what is measured), or the Janus WebSocket API to a real Janus, its TextRoom
//! and a real terminal's WebRTC data channel (`janus`, in a network namespace of the
//! bench's own with two publishers, H.264 and VP8).
//!
//! Each kind of fault gets one recording (on a fresh small ext4 disk, with a spool as
//! the box has) for each SFU and many trials: make the fault, wait for its
//! announcement at the terminals, repair it, and wait until the meeting has heard
//! that everything is over and the recording grows on the disk again. Needs root and
//! loop devices; Janus also needs network namespaces, Debian's janus and GStreamer.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout_at;

use super::latency::{ms, Percentiles};
use crate::link::frame::{FaultKind, UnixMillis};
use crate::link::handshake::LinkKey;
use crate::mixer::engine::EngineConfig;
use crate::mixer::service::MixerReport;
use crate::recorder::index::{HEADER_SIZE, RECORD_SIZE};
use crate::recorder::monitor::MonitorConfig;
use crate::recorder::service::RecorderConfig;
use crate::sfu::notice::Announcement;
use crate::sfu::sim::SimEvent;
use crate::sfu::Notice;
use crate::testbed::disk_fault::{newest_index, DiskFault, FaultDisk, Injected};
use crate::testbed::janus::{JanusLab, LabError, PublisherCodec, Terminal};
use crate::testbed::meeting::{Meeting, MeetingConfig, MeetingSfu};
use crate::testbed::netns::Netns;
use crate::testbed::scratch::fresh_dir;

/// What the issue asks: p99 under this.
const TARGET_P99: Duration = Duration::from_millis(100);
/// Fragment (and keyframe) interval of the bench's recordings: the recording's own
/// writes, which find write faults, come this often.
const FRAGMENT: Duration = Duration::from_millis(500);
/// How often the bench looks whether the recording has a fragment on the disk again.
const LOOK_INTERVAL: Duration = Duration::from_millis(20);
/// Shortest stay on the spool: the bench's repairs are complete when the meeting
/// hears the fault is over, so the recording may come back at once.
const SPOOL_STAY: Duration = Duration::from_millis(100);
const PARTICIPANTS: u8 = 2;
/// How long one step of a trial may take before the kind is given up.
const STEP_WAIT: Duration = Duration::from_secs(30);
/// Attempts at a repair that needs the recorder to let go of the broken file system.
const REPAIR_ATTEMPTS: u32 = 50;

/// The SFU between the mixer and the meeting's terminals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E2eSfu {
    /// The simulated SFU, on loopback: the terminals are its announcements.
    Sim,
    /// A real Janus in a network namespace, with publishers and a TextRoom terminal
    /// on a data channel (root, Debian's janus and GStreamer).
    Janus,
}

impl E2eSfu {
    const ALL: [E2eSfu; 2] = [E2eSfu::Sim, E2eSfu::Janus];

    fn name(self) -> &'static str {
        match self {
            E2eSfu::Sim => "sim",
            E2eSfu::Janus => "janus",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an SFU of the bench: one of sim, janus")]
pub struct E2eSfuError(String);

impl FromStr for E2eSfu {
    type Err = E2eSfuError;

    fn from_str(s: &str) -> Result<Self, E2eSfuError> {
        E2eSfu::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| E2eSfuError(s.to_owned()))
    }
}

/// `trials` of every fault kind through each of `sfus`, side by side in one table.
/// The Janus variant fails (an error) where its namespace or Janus cannot be had.
pub async fn run(out: &mut (dyn Write + Send), trials: usize, sfus: &[E2eSfu]) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let janus = sfus.contains(&E2eSfu::Janus);
    if !root || !Path::new("/dev/loop-control").exists() {
        let why = "needs root and loop devices (/dev/loop-control): each fault is made on a small ext4 disk on a loop device";
        if janus {
            return Err(io::Error::other(format!(
                "the Janus variant {why}, and a network namespace"
            )));
        }
        return writeln!(out, "skipped: {why}");
    }
    writeln!(
        out,
        "mixer (320x240 @ 30 fps) -> recorder (storage poll {} ms, {} ms fragments, a spool) on a {} MiB ext4 loop disk",
        MonitorConfig::new(PathBuf::new()).poll.as_millis(),
        FRAGMENT.as_millis(),
        FaultDisk::BYTES >> 20,
    )?;
    if sfus.contains(&E2eSfu::Sim) {
        writeln!(
            out,
            "sim: the simulated SFU on loopback with {PARTICIPANTS} participants; the clock stops when the announcement reaches its terminals"
        )?;
    }
    if !janus {
        return table(out, trials, sfus, None).await;
    }
    writeln!(
        out,
        "janus: Janus in a network namespace (ICE on a veth pair), {} GStreamer publishers (H.264, VP8), the mixer in the VideoRoom; the clock stops when a TextRoom terminal (GStreamer webrtcbin) has the announcement on its data channel",
        PUBLISHERS.len()
    )?;
    out.flush()?;
    let room = tokio::task::block_in_place(JanusRoom::start)?;
    let JanusRoom {
        people,
        lab,
        mut heard,
    } = room;
    // The mixer and recorder inside the namespace, where Janus's API is; a runtime
    // of their own, on a thread that entered it.
    let done = tokio::task::block_in_place(|| {
        lab.netns().inside(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(table(out, trials, sfus, Some(&mut heard)))
        })
    });
    drop(people);
    drop(lab);
    done.map_err(io::Error::other)?
}

/// The publishers of the Janus room: name, codec.
const PUBLISHERS: [(&str, PublisherCodec); 2] = [
    ("alice", PublisherCodec::H264),
    ("bob", PublisherCodec::Vp8),
];

/// The Janus variant's meeting, for the whole run: Janus, the publishers and the
/// TextRoom terminal, whose announcements come stamped with their arrival.
struct JanusRoom {
    people: Vec<Terminal>,
    lab: JanusLab,
    heard: mpsc::UnboundedReceiver<(Instant, Said)>,
}

impl JanusRoom {
    fn start() -> io::Result<Self> {
        let ns = Netns::create("bench").map_err(|e| {
            io::Error::other(format!(
                "the Janus variant needs a network namespace with a veth pair (Janus offers no loopback ICE candidates), and none can be made here: {e}"
            ))
        })?;
        let failed = |e: LabError| io::Error::other(format!("the Janus variant's meeting: {e}"));
        let lab = JanusLab::start(ns).map_err(failed)?;
        let mut terminal = lab.textroom_terminal("terminal").map_err(failed)?;
        let heard = stamped_terminal(terminal.take_lines())?;
        let mut people = vec![terminal];
        for (i, (name, codec)) in PUBLISHERS.into_iter().enumerate() {
            people.push(lab.publisher(name, i, codec).map_err(failed)?);
        }
        Ok(Self { people, lab, heard })
    }
}

/// The table: every fault kind through each SFU, then where the time goes.
async fn table(
    out: &mut (dyn Write + Send),
    trials: usize,
    sfus: &[E2eSfu],
    mut terminal: Option<&mut mpsc::UnboundedReceiver<(Instant, Said)>>,
) -> io::Result<()> {
    writeln!(
        out,
        "clock: from just before the system call that makes the fault to its announcement at the terminals"
    )?;
    writeln!(
        out,
        "{:<36} {:<5} {:>6} {:>9} {:>9} {:>9}  p99 < {} ms",
        "fault",
        "sfu",
        "trials",
        "p50 ms",
        "p99 ms",
        "max ms",
        TARGET_P99.as_millis()
    )?;
    out.flush()?;
    let mut stages = Vec::new();
    for fault in DiskFault::ALL {
        for &sfu in sfus {
            let started = Instant::now();
            let heard = match sfu {
                E2eSfu::Sim => None,
                E2eSfu::Janus => terminal.as_deref_mut(),
            };
            let (done, failure) = match Bench::start(fault, sfu, heard).await {
                Ok(mut bench) => {
                    let mut done = Vec::with_capacity(trials);
                    let failure = bench.trials(trials, &mut done).await.err();
                    bench.finish().await;
                    (done, failure)
                }
                Err(e) => (Vec::new(), Some(e)),
            };
            let totals: Vec<Duration> = done.iter().map(|t| t.total).collect();
            let label = format!("{fault} ({})", fault.how());
            let sfu = sfu.name();
            match Percentiles::of(&totals) {
                Some(p) => writeln!(
                    out,
                    "{label:<36} {sfu:<5} {:>6} {:>9.1} {:>9.1} {:>9.1}  {:<4} ({:.0} s)",
                    p.count,
                    ms(p.p50),
                    ms(p.p99),
                    ms(p.max),
                    if p.p99 < TARGET_P99 { "yes" } else { "NO" },
                    started.elapsed().as_secs_f64(),
                )?,
                None => writeln!(out, "{label:<36} {sfu:<5} {:>6}", 0)?,
            }
            if let Some(e) = failure {
                writeln!(out, "  stopped after {} trials: {e}", done.len())?;
            }
            out.flush()?;
            stages.push((label, sfu, done));
        }
    }
    writeln!(
        out,
        "\nwhere the time goes, p50 / p99 ms: fault -> raised by the recorder (its ms clock) -> relayed by the mixer -> shown at the terminals; and the injecting call itself"
    )?;
    writeln!(
        out,
        "{:<36} {:<5} {:>15} {:>15} {:>15} {:>15}",
        "fault", "sfu", "raised", "relayed", "terminals", "call"
    )?;
    for (label, sfu, done) in &stages {
        let column = |f: fn(&Trial) -> Duration| {
            let v: Vec<Duration> = done.iter().map(f).collect();
            Percentiles::of(&v).map_or("-".into(), |p| {
                format!("{:.1} / {:.1}", ms(p.p50), ms(p.p99))
            })
        };
        writeln!(
            out,
            "{label:<36} {sfu:<5} {:>15} {:>15} {:>15} {:>15}",
            column(|t| t.raised),
            column(|t| t.relayed),
            column(|t| t.shown),
            column(|t| t.call)
        )?;
    }
    Ok(())
}

/// Why a kind's trials stopped.
type Failure = String;

/// One kind of fault on its own disk and recording.
struct Bench<'a> {
    /// What the mixer reports and the simulated SFU's terminals hear, stamped as it
    /// arrives.
    heard: mpsc::UnboundedReceiver<(Instant, Heard)>,
    /// What Janus's terminal hears, stamped as it arrived there.
    terminal: Option<&'a mut mpsc::UnboundedReceiver<(Instant, Said)>>,
    fault: DiskFault,
    disk: FaultDisk,
    spool: PathBuf,
    meeting: Meeting,
}

impl<'a> Bench<'a> {
    /// The Janus variant when `terminal` is its terminal's announcements.
    async fn start(
        fault: DiskFault,
        sfu: E2eSfu,
        terminal: Option<&'a mut mpsc::UnboundedReceiver<(Instant, Said)>>,
    ) -> Result<Self, Failure> {
        let disk = FaultDisk::create().ok_or("cannot make a loop disk (losetup, mkfs.ext4)")?;
        let spool = fresh_dir("bench-spool").ok_or("cannot make a spool directory")?;
        let key = LinkKey::new(b"bench".to_vec()).map_err(|e| e.to_string())?;
        let mut recorder = RecorderConfig::new(disk.root().to_path_buf(), key);
        recorder.spool = Some(spool.clone());
        recorder.health = FaultDisk::health();
        recorder.writer.max_fragment = FRAGMENT;
        recorder.writer.min_spool_stay = SPOOL_STAY;
        let sfu = match (sfu, &terminal) {
            (E2eSfu::Sim, _) => MeetingSfu::Sim {
                participants: PARTICIPANTS,
                codecs: crate::sfu::sim::CodecMix::default(),
            },
            (E2eSfu::Janus, Some(_)) => MeetingSfu::Janus(JanusLab::mixer_config("recbox bench")),
            (E2eSfu::Janus, None) => return Err("no Janus room".into()),
        };
        let mut meeting = Meeting::start(MeetingConfig {
            recorder,
            sfu,
            engine: EngineConfig {
                width: 320,
                height: 240,
                ..EngineConfig::default()
            },
            recording: format!("bench-{}", fault.name()),
            microphone: None,
        })
        .await
        .map_err(|e| e.to_string())?;
        let heard = stamped(&mut meeting).map_err(|e| format!("stamping thread: {e}"))?;
        let mut bench = Self {
            heard,
            terminal,
            fault,
            disk,
            spool,
            meeting,
        };
        // The recording is being written before the first fault.
        bench
            .until(&mut Settle::default(), None, Bench::settled)
            .await?;
        Ok(bench)
    }

    async fn trials(&mut self, n: usize, done: &mut Vec<Trial>) -> Result<(), Failure> {
        for _ in 0..n {
            done.push(self.trial().await?);
        }
        Ok(())
    }

    async fn trial(&mut self) -> Result<Trial, Failure> {
        // At a random moment: the storage polls and the recording's writes come
        // at a steady pace, which a fault right after the last trial's end would
        // always meet at the same phase.
        tokio::time::sleep(FRAGMENT.mul_f64(rand::random())).await;
        // Nothing heard meanwhile concerns the next fault.
        while self.heard.try_recv().is_ok() {}
        if let Some(t) = self.terminal.as_deref_mut() {
            while t.try_recv().is_ok() {}
        }
        let injected = self
            .disk
            .inject(self.fault)
            .map_err(|e| format!("injecting: {e}"))?;
        let mut clock = TrialClock::new(
            self.fault.reported_as(),
            injected.at,
            injected.wall,
            injected.call,
        );
        let mut settle = Settle::default();
        let release = self.fault.repair_needs_release();
        self.until(&mut settle, Some(&mut clock), |_, s: &mut Settle, c| {
            c.is_some_and(|c| c.trial().is_some()) && (!release || s.failed_over)
        })
        .await?;
        self.repair(&injected).await?;
        self.until(&mut settle, None, Bench::settled).await?;
        Ok(clock.trial().expect("complete"))
    }

    async fn repair(&mut self, injected: &Injected) -> Result<(), Failure> {
        let mut attempt = 1;
        loop {
            match self.disk.repair(injected) {
                Ok(()) => return Ok(()),
                // The recorder may still be closing its files on the broken file
                // system; its writes go to the spool meanwhile.
                Err(_) if self.fault.repair_needs_release() && attempt < REPAIR_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("repairing: {e}")),
            }
        }
    }

    /// Every fault the meeting heard of is over, and since then the recording has
    /// written a fragment on the disk: the recorder is done with the fault (it may
    /// still fail over for a fault that has just cleared), and after a failover it is
    /// back (else it would keep the next failover on the spool for longer).
    fn settled(&self, settle: &mut Settle, _: Option<&TrialClock>) -> bool {
        settle.settled(|| IndexMark::newest(self.disk.root()))
    }

    /// Takes what the meeting hears, stamped as it arrives, until `done`.
    async fn until(
        &mut self,
        settle: &mut Settle,
        mut clock: Option<&mut TrialClock>,
        done: impl Fn(&Self, &mut Settle, Option<&TrialClock>) -> bool,
    ) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + STEP_WAIT;
        while !done(self, settle, clock.as_deref()) {
            let heard = &mut self.heard;
            let terminal = self.terminal.as_deref_mut();
            let next = timeout_at(deadline, async {
                tokio::select! {
                    heard = heard.recv() => heard.ok_or("the meeting ended"),
                    said = terminal_said(terminal) => said
                        .map(|(at, said)| (at, Heard::Said(said)))
                        .ok_or("the Janus terminal is gone"),
                    // Look at the disk again.
                    _ = tokio::time::sleep(LOOK_INTERVAL) => Ok((Instant::now(), Heard::Nothing)),
                }
            });
            let (at, heard) = match next.await {
                Ok(Ok(heard)) => heard,
                Ok(Err(gone)) => return Err(gone.into()),
                Err(_) => {
                    return Err(format!(
                        "not done within {STEP_WAIT:?}; faults announced and not over: {:?}",
                        settle.active
                    ))
                }
            };
            match heard {
                Heard::Said(said) => {
                    settle.hear(&said);
                    if let Some(c) = clock.as_deref_mut() {
                        c.shown(&said, at);
                    }
                }
                Heard::Report(MixerReport::Relayed(Notice::Fault(f))) => {
                    if let Some(c) = clock.as_deref_mut() {
                        c.relayed(f.kind, at);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn finish(mut self) {
        self.meeting.stop();
        let _ = tokio::time::timeout(STEP_WAIT, &mut self.meeting.mixer).await;
        drop(self.meeting);
        drop(self.disk);
        let _ = std::fs::remove_dir_all(&self.spool);
    }
}

// A few a second, each handled at once: not worth a box.
#[allow(clippy::large_enum_variant)]
enum Heard {
    /// At the terminals.
    Said(Said),
    Report(MixerReport),
    Nothing,
}

/// The next announcement at Janus's terminal; never, without one.
async fn terminal_said(
    terminal: Option<&mut mpsc::UnboundedReceiver<(Instant, Said)>>,
) -> Option<(Instant, Said)> {
    match terminal {
        Some(t) => t.recv().await,
        None => std::future::pending().await,
    }
}

/// Takes the meeting's reports and stamps each as it arrives, on a thread of its
/// own: the bench's own thread may be held up in the very system call that makes a
/// fault (an unmount waits for the kernel's RCU grace period) while the meeting
/// already hears of it.
fn stamped(meeting: &mut Meeting) -> io::Result<mpsc::UnboundedReceiver<(Instant, Heard)>> {
    let mut events = std::mem::replace(&mut meeting.sim_events, mpsc::unbounded_channel().1);
    let mut reports = std::mem::replace(&mut meeting.reports, mpsc::unbounded_channel().1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("bench-stamps".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let heard = tokio::select! {
                        Some(e) = events.recv() => match e {
                            SimEvent::Announcement(a) => match Said::of(&a) {
                                Some(said) => Heard::Said(said),
                                None => continue,
                            },
                            _ => continue,
                        },
                        Some(r) = reports.recv() => Heard::Report(r),
                        // The meeting is over.
                        else => return,
                    };
                    if tx.send((Instant::now(), heard)).is_err() {
                        return;
                    }
                }
            })
        })?;
    Ok(rx)
}

/// What an announcement at the terminals says, for the bench's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    /// A fault raised at the recorder's `at`.
    Fault { kind: FaultKind, at: UnixMillis },
    /// A fault is over.
    Cleared(FaultKind),
}

impl Said {
    fn of(a: &Announcement) -> Option<Self> {
        Self::of_json(&serde_json::to_value(a).ok()?)
    }

    /// From an announcement's JSON line, as a terminal shows it.
    fn of_json(a: &Value) -> Option<Self> {
        if a["to"] != "terminals" {
            return None;
        }
        let kind = |v: &Value| serde_json::from_value::<FaultKind>(v.clone()).ok();
        if a["kind"] == "cleared" {
            return kind(&a["fault"]).map(Said::Cleared);
        }
        Some(Said::Fault {
            kind: kind(&a["kind"])?,
            at: a["at"].as_u64()?,
        })
    }

    /// From a terminal's `announcement` event: the text's second line is the JSON.
    fn of_terminal_event(event: &Value) -> Option<Self> {
        if event["event"] != "announcement" {
            return None;
        }
        let line = event["text"].as_str()?.lines().nth(1)?;
        Self::of_json(&serde_json::from_str(line).ok()?)
    }
}

/// Reads a Janus terminal's event lines on a thread of its own; each announcement
/// comes out with the instant the terminal stamped on its arrival (its `rx`, on the
/// wall clock), so neither the pipe nor this process's scheduling adds to it.
fn stamped_terminal(
    lines: std::sync::mpsc::Receiver<String>,
) -> io::Result<mpsc::UnboundedReceiver<(Instant, Said)>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("bench-terminal".into())
        .spawn(move || {
            for line in lines {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let (Some(said), Some(rx_at)) =
                    (Said::of_terminal_event(&event), event["rx"].as_f64())
                else {
                    continue;
                };
                tracing::debug!("terminal: {line}");
                let at = arrival(rx_at, Instant::now(), SystemTime::now());
                if tx.send((at, said)).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

/// The instant of a wall-clock time `rx` (seconds since the epoch), by the pair
/// `now`/`wall` read together.
fn arrival(rx: f64, now: Instant, wall: SystemTime) -> Instant {
    let rx = UNIX_EPOCH + Duration::try_from_secs_f64(rx).unwrap_or_default();
    match wall.duration_since(rx) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        // Stamped after `wall`: only a clock step does that.
        Err(ahead) => now + ahead.duration(),
    }
}

/// The faults the terminals were told of and not yet told are over.
#[derive(Debug, Default)]
struct Settle {
    active: Vec<FaultKind>,
    /// The recording went to the spool.
    failed_over: bool,
    /// The recording's newest index on the disk when the last fault was over.
    calm_from: Option<IndexMark>,
}

impl Settle {
    fn hear(&mut self, said: &Said) {
        match *said {
            // The end of a failover (its `cleared` follows), not a fault.
            Said::Fault {
                kind: FaultKind::Recovered,
                ..
            } => {}
            Said::Fault { kind, .. } => {
                self.failed_over |= kind == FaultKind::Failover;
                if !self.active.contains(&kind) {
                    self.active.push(kind);
                }
                self.calm_from = None;
            }
            Said::Cleared(kind) => self.active.retain(|k| *k != kind),
        }
    }

    /// No fault is left and the recording has a fragment on the disk it did not
    /// have when the last one was over; `look` reads the newest index there.
    fn settled(&mut self, look: impl Fn() -> IndexMark) -> bool {
        if !self.active.is_empty() {
            return false;
        }
        match &self.calm_from {
            None => {
                self.calm_from = Some(look());
                false
            }
            Some(from) => look().grew_from(from),
        }
    }
}

/// The newest index file of the recording on a disk, and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexMark(Option<(PathBuf, u64)>);

impl IndexMark {
    fn newest(root: &Path) -> Self {
        Self(newest_index(root).and_then(|p| {
            let len = p.metadata().ok()?.len();
            Some((p, len))
        }))
    }

    /// Whether a fragment came since `before`: a record more in the same index, or
    /// one in a newer segment's (a record is written once its fragment is durable).
    fn grew_from(&self, before: &IndexMark) -> bool {
        let Some((path, len)) = &self.0 else {
            return false;
        };
        match &before.0 {
            Some((p, l)) if p == path => len > l,
            _ => *len >= (HEADER_SIZE + RECORD_SIZE) as u64,
        }
    }
}

/// When one injected fault was seen along the chain.
#[derive(Debug)]
struct TrialClock {
    kind: FaultKind,
    at: Instant,
    /// The same instant on the wall clock, since the epoch.
    wall: Duration,
    call: Duration,
    relayed: Option<Instant>,
    /// At the terminals, and the recorder's stamp of the fault.
    shown: Option<(Instant, UnixMillis)>,
}

/// One trial's latencies: in all, and by stage.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial {
    total: Duration,
    /// Fault to the recorder raising it (its stamp has ms resolution).
    raised: Duration,
    /// Raised to the mixer relaying it to the SFU adapter.
    relayed: Duration,
    /// Relayed to the terminals in the SFU.
    shown: Duration,
    /// The injecting system call, which `raised` may overlap.
    call: Duration,
}

impl TrialClock {
    /// A fault of `kind` made by a system call that started at `at` (`wall` on the
    /// wall clock) and took `call`.
    fn new(kind: FaultKind, at: Instant, wall: SystemTime, call: Duration) -> Self {
        Self {
            kind,
            at,
            wall: wall.duration_since(UNIX_EPOCH).unwrap_or_default(),
            call,
            relayed: None,
            shown: None,
        }
    }

    fn relayed(&mut self, kind: FaultKind, at: Instant) {
        if kind == self.kind && self.relayed.is_none() {
            self.relayed = Some(at);
        }
    }

    fn shown(&mut self, said: &Said, at: Instant) {
        if let &Said::Fault { kind, at: raised } = said {
            if kind == self.kind && self.shown.is_none() {
                self.shown = Some((at, raised));
            }
        }
    }

    /// Once the fault was relayed and shown.
    fn trial(&self) -> Option<Trial> {
        let (shown, raised_ms) = self.shown?;
        let relayed = self.relayed?;
        let total = shown.saturating_duration_since(self.at);
        let to_relay = relayed.saturating_duration_since(self.at);
        let raised = Duration::from_millis(raised_ms)
            .saturating_sub(self.wall)
            .min(to_relay);
        Some(Trial {
            total,
            raised,
            relayed: to_relay - raised,
            shown: shown.saturating_duration_since(relayed),
            call: self.call,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{text, Fault, FaultTarget, Stats};
    use crate::recorder::layout::INDEX_FILE;

    fn fault(kind: FaultKind) -> Said {
        Said::Fault { kind, at: 0 }
    }

    #[test]
    fn announcements_are_read_back() {
        let f = Fault {
            recording: text("r"),
            kind: FaultKind::IndexWriteFailed,
            target: FaultTarget::Index,
            detail: text("EPERM"),
            at: 42,
        };
        let said = |n: Notice| Said::of(&Announcement::new(&n));
        assert_eq!(
            said(Notice::Fault(f)),
            Some(Said::Fault {
                kind: FaultKind::IndexWriteFailed,
                at: 42
            })
        );
        let cleared = Notice::Cleared {
            kind: FaultKind::DiskFull,
            target: FaultTarget::Storage,
            at: 43,
        };
        assert_eq!(said(cleared), Some(Said::Cleared(FaultKind::DiskFull)));
        let stats = Stats {
            file_bytes: 1000,
            index_bytes: 56,
            duration_ms: 1,
            free_bytes: 2,
            at: 44,
        };
        let stats = Notice::Stats {
            stats,
            faults: vec![FaultKind::Failover],
        };
        assert_eq!(said(stats), None);
    }

    #[test]
    fn a_janus_terminal_line_is_read_back() {
        let f = Fault {
            recording: text("r"),
            kind: FaultKind::DiskOffline,
            target: FaultTarget::Storage,
            detail: text("gone"),
            at: 42,
        };
        let a = Announcement::new(&Notice::Fault(f));
        // As terminal.py prints what the TextRoom sent: the sentence, then the JSON.
        let text = format!("{}\n{}", a.text, a.to_json_line());
        let event =
            serde_json::json!({"event": "announcement", "name": "t", "rx": 1.5, "text": text});
        assert_eq!(
            Said::of_terminal_event(&event),
            Some(Said::Fault {
                kind: FaultKind::DiskOffline,
                at: 42
            })
        );
        let cleared = Announcement::new(&Notice::Cleared {
            kind: FaultKind::DiskOffline,
            target: FaultTarget::Storage,
            at: 43,
        });
        let text = format!("{}\n{}", cleared.text, cleared.to_json_line());
        let event = serde_json::json!({"event": "announcement", "rx": 2.0, "text": text});
        assert_eq!(
            Said::of_terminal_event(&event),
            Some(Said::Cleared(FaultKind::DiskOffline))
        );
        // Other events, and a text without its JSON line, are not announcements.
        let joined = serde_json::json!({"event": "textroom_joined", "rx": 1.0});
        assert_eq!(Said::of_terminal_event(&joined), None);
        let bare = serde_json::json!({"event": "announcement", "rx": 1.0, "text": "hello"});
        assert_eq!(Said::of_terminal_event(&bare), None);
    }

    #[test]
    fn a_terminal_stamp_becomes_an_instant() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        // Stamped 250 ms before the pair was read.
        assert_eq!(
            arrival(1_700_000_000.25, now, wall),
            now - Duration::from_millis(250)
        );
        // A clock that stepped back: after `now`, never a panic.
        assert_eq!(
            arrival(1_700_000_001.5, now, wall),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn sfus_by_name() {
        assert_eq!("sim".parse(), Ok(E2eSfu::Sim));
        assert_eq!(" janus".parse(), Ok(E2eSfu::Janus));
        assert_eq!(
            "mcu".parse::<E2eSfu>().unwrap_err().to_string(),
            "`mcu` is not an SFU of the bench: one of sim, janus"
        );
    }

    #[test]
    fn faults_are_followed_to_their_end() {
        let mut s = Settle::default();
        for k in [
            FaultKind::DiskFull,
            FaultKind::LowSpace,
            FaultKind::Failover,
        ] {
            s.hear(&fault(k));
        }
        // Raised once, whatever repeats.
        s.hear(&fault(FaultKind::LowSpace));
        assert_eq!(
            s.active,
            [
                FaultKind::DiskFull,
                FaultKind::LowSpace,
                FaultKind::Failover
            ]
        );
        assert!(s.failed_over);
        s.hear(&Said::Cleared(FaultKind::DiskFull));
        s.hear(&Said::Cleared(FaultKind::LowSpace));
        s.hear(&fault(FaultKind::Recovered));
        assert_eq!(s.active, [FaultKind::Failover]);
        s.hear(&Said::Cleared(FaultKind::Failover));
        assert!(s.active.is_empty());
    }

    #[test]
    fn settled_once_a_fragment_came_after_the_last_fault() {
        let dir = tempfile::tempdir().unwrap();
        let seg = |n: u64| dir.path().join(format!("room/rec.seg{n}"));
        let index = |n: u64, records: usize| {
            std::fs::create_dir_all(seg(n)).unwrap();
            let f = std::fs::File::create(seg(n).join(INDEX_FILE)).unwrap();
            f.set_len((HEADER_SIZE + records * RECORD_SIZE) as u64)
                .unwrap();
            // Later segments are newer.
            f.set_modified(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n))
                .unwrap();
        };
        let look = || IndexMark::newest(dir.path());
        let mut s = Settle::default();
        // Nothing on the disk yet.
        assert!(!s.settled(look));
        index(0, 0);
        assert!(!s.settled(look), "a header is no fragment");
        index(0, 1);
        assert!(s.settled(look));

        // A fault: the mark is taken when it is over, not before.
        s.hear(&fault(FaultKind::DiskOffline));
        index(0, 2);
        assert!(!s.settled(look));
        s.hear(&Said::Cleared(FaultKind::DiskOffline));
        assert!(
            !s.settled(look),
            "the fragment before the end does not count"
        );
        // The recorder fails over late, then comes back in a new segment.
        s.hear(&fault(FaultKind::Failover));
        s.hear(&fault(FaultKind::Recovered));
        assert!(!s.settled(look));
        s.hear(&Said::Cleared(FaultKind::Failover));
        index(1, 0);
        assert!(!s.settled(look));
        index(1, 1);
        assert!(s.settled(look));
        assert!(s.failed_over);
    }

    #[test]
    fn a_trial_splits_into_stages() {
        let wall =
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_000) + Duration::from_micros(200);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = TrialClock::new(FaultKind::DiskFull, t0, wall, ms(3));
        // Other kinds, and later repeats, do not count.
        c.relayed(FaultKind::LowSpace, t0 + ms(1));
        c.shown(&fault(FaultKind::LowSpace), t0 + ms(2));
        assert_eq!(c.trial(), None);
        c.relayed(FaultKind::DiskFull, t0 + ms(30));
        assert_eq!(c.trial(), None);
        let raised = Said::Fault {
            kind: FaultKind::DiskFull,
            at: 1_700_000_000_025,
        };
        c.shown(&raised, t0 + ms(32));
        c.relayed(FaultKind::DiskFull, t0 + ms(90));
        let t = c.trial().unwrap();
        assert_eq!(t.total, ms(32));
        // 25 ms after the epoch-ms of the fault, less the 0.2 ms it was past it.
        assert_eq!(t.raised, Duration::from_micros(24_800));
        assert_eq!(t.raised + t.relayed, ms(30));
        assert_eq!((t.shown, t.call), (ms(2), ms(3)));
        // A recorder clock ahead of the relay is clipped to it.
        let mut c = TrialClock::new(FaultKind::DiskFull, t0, wall, ms(3));
        c.relayed(FaultKind::DiskFull, t0 + ms(5));
        c.shown(&raised, t0 + ms(6));
        let t = c.trial().unwrap();
        assert_eq!((t.raised, t.relayed), (ms(5), ms(0)));
    }
}
