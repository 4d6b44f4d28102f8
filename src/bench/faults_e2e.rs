//! Fault feedback end to end: from a storage fault made for real on the recorder's
//! disk to its announcement on the meeting's terminals, through the whole chain — the
//! recorder, the media link, the mixer service relaying to its `WsSfuAdapter`, the
//! JSON control channel over a WebSocket, the simulated SFU — all on loopback with a
//! light meeting (two participants, small pictures), so the CPU is not what is
//! measured.
//!
//! Each kind of fault gets one recording (on a fresh small ext4 disk, with a spool as
//! the box has) and many trials: make the fault, wait for its announcement at the
//! terminals, repair it, and wait until the meeting has heard that everything is
//! over and the recording grows on the disk again. Needs root and loop devices.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
use crate::sfu::notice::{Announcement, Audience};
use crate::sfu::sim::SimEvent;
use crate::sfu::Notice;
use crate::testbed::disk_fault::{newest_index, DiskFault, FaultDisk, Injected};
use crate::testbed::meeting::{Meeting, MeetingConfig};
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

pub async fn run(out: &mut dyn Write, trials: usize) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/loop-control").exists() {
        return writeln!(
            out,
            "skipped: needs root and loop devices (/dev/loop-control): each fault is made on a small ext4 disk on a loop device"
        );
    }
    writeln!(
        out,
        "{PARTICIPANTS} participants -> mixer (320x240 @ 30 fps) -> recorder (storage poll {} ms, {} ms fragments, a spool) on a {} MiB ext4 loop disk",
        MonitorConfig::new(PathBuf::new()).poll.as_millis(),
        FRAGMENT.as_millis(),
        FaultDisk::BYTES >> 20,
    )?;
    writeln!(
        out,
        "clock: from just before the system call that makes the fault to its announcement reaching the terminals in the simulated SFU"
    )?;
    writeln!(
        out,
        "{:<36} {:>6} {:>9} {:>9} {:>9}  p99 < {} ms",
        "fault",
        "trials",
        "p50 ms",
        "p99 ms",
        "max ms",
        TARGET_P99.as_millis()
    )?;
    out.flush()?;
    let mut stages = Vec::new();
    for fault in DiskFault::ALL {
        let started = Instant::now();
        let (done, failure) = match Bench::start(fault).await {
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
        match Percentiles::of(&totals) {
            Some(p) => writeln!(
                out,
                "{label:<36} {:>6} {:>9.1} {:>9.1} {:>9.1}  {:<4} ({:.0} s)",
                p.count,
                ms(p.p50),
                ms(p.p99),
                ms(p.max),
                if p.p99 < TARGET_P99 { "yes" } else { "NO" },
                started.elapsed().as_secs_f64(),
            )?,
            None => writeln!(out, "{label:<36} {:>6}", 0)?,
        }
        if let Some(e) = failure {
            writeln!(out, "  stopped after {} trials: {e}", done.len())?;
        }
        out.flush()?;
        stages.push((label, done));
    }
    writeln!(
        out,
        "\nwhere the time goes, p50 / p99 ms: fault -> raised by the recorder (its ms clock) -> relayed by the mixer -> shown at the terminals; and the injecting call itself"
    )?;
    writeln!(
        out,
        "{:<36} {:>15} {:>15} {:>15} {:>15}",
        "fault", "raised", "relayed", "terminals", "call"
    )?;
    for (label, done) in &stages {
        let column = |f: fn(&Trial) -> Duration| {
            let v: Vec<Duration> = done.iter().map(f).collect();
            Percentiles::of(&v).map_or("-".into(), |p| {
                format!("{:.1} / {:.1}", ms(p.p50), ms(p.p99))
            })
        };
        writeln!(
            out,
            "{label:<36} {:>15} {:>15} {:>15} {:>15}",
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
struct Bench {
    /// What the meeting hears, stamped as it arrives.
    heard: mpsc::UnboundedReceiver<(Instant, Heard)>,
    fault: DiskFault,
    disk: FaultDisk,
    spool: PathBuf,
    meeting: Meeting,
}

impl Bench {
    async fn start(fault: DiskFault) -> Result<Self, Failure> {
        let disk = FaultDisk::create().ok_or("cannot make a loop disk (losetup, mkfs.ext4)")?;
        let spool = fresh_dir("bench-spool").ok_or("cannot make a spool directory")?;
        let key = LinkKey::new(b"bench".to_vec()).map_err(|e| e.to_string())?;
        let mut recorder = RecorderConfig::new(disk.root().to_path_buf(), key);
        recorder.spool = Some(spool.clone());
        recorder.health = FaultDisk::health();
        recorder.writer.max_fragment = FRAGMENT;
        recorder.writer.min_spool_stay = SPOOL_STAY;
        let mut meeting = Meeting::start(MeetingConfig {
            recorder,
            participants: PARTICIPANTS,
            engine: EngineConfig {
                width: 320,
                height: 240,
                ..EngineConfig::default()
            },
            recording: format!("bench-{}", fault.name()),
            microphone: None,
            codecs: crate::sfu::sim::CodecMix::default(),
        })
        .await
        .map_err(|e| e.to_string())?;
        let heard = stamped(&mut meeting).map_err(|e| format!("stamping thread: {e}"))?;
        let mut bench = Self {
            heard,
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
            let next = timeout_at(deadline, async {
                tokio::select! {
                    heard = heard.recv() => heard,
                    // Look at the disk again.
                    _ = tokio::time::sleep(LOOK_INTERVAL) => Some((Instant::now(), Heard::Nothing)),
                }
            });
            let (at, heard) = match next.await {
                Ok(Some(heard)) => heard,
                Ok(None) => return Err("the meeting ended".into()),
                Err(_) => {
                    return Err(format!(
                        "not done within {STEP_WAIT:?}; faults announced and not over: {:?}",
                        settle.active
                    ))
                }
            };
            match heard {
                Heard::Event(SimEvent::Announcement(a)) => {
                    if let Some(said) = Said::of(&a) {
                        settle.hear(&said);
                        if let Some(c) = clock.as_deref_mut() {
                            c.shown(&said, at);
                        }
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

enum Heard {
    Event(SimEvent),
    Report(MixerReport),
    Nothing,
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
                        Some(e) = events.recv() => Heard::Event(e),
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
        if a.to != Audience::Terminals {
            return None;
        }
        if a.kind == "cleared" {
            return a.fault.map(Said::Cleared);
        }
        let kind = serde_json::from_value(serde_json::Value::String(a.kind.clone())).ok()?;
        Some(Said::Fault { kind, at: a.at })
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
