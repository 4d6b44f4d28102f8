//! `recbox demo`: the whole chain on this machine over loopback — a simulated SFU
//! sending N participants as real RTP, the mixer, the recorder — with a progress line
//! every second and every announcement the meeting sees. With a fault plan
//! (`disk-full@10s`) the recorder's storage is a small real file system (ext4 on a
//! loop device) that the demo breaks on schedule and repairs a few seconds later, so
//! the notice can be watched reaching the terminals while the recording fails over
//! to the spool and comes back. A simulated front panel follows the recording and
//! shows the same as the terminals are told.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, Instant};

use crate::audio::{ChimeCues, ChimePlayer};
use crate::link::frame::Summary;
use crate::link::handshake::LinkKey;
use crate::mixer::engine::EngineConfig;
use crate::mixer::service::{self as mixer, MixerReport};
use crate::mixer::status::RecordingStatus;
use crate::panel::pattern::describe;
use crate::panel::{
    Lifecycle, Panel, PanelState, PanelTiming, SimulatedPanel, SimulatedPanelHandle,
};
use crate::recorder::layout::{encode_chain, parse_chain, CHAIN_FILE};
use crate::recorder::service::RecorderConfig;
use crate::recorder::{recovery, resume};
use crate::sfu::notice::Audience;
use crate::sfu::sim::{CodecMix, SimEvent};
pub use crate::testbed::disk_fault::DiskFault;
use crate::testbed::disk_fault::{FaultDisk, Injected};
pub(crate) use crate::testbed::meeting::ROOM;
use crate::testbed::meeting::{Meeting, MeetingConfig, MeetingError, MeetingSfu};

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("--fault needs root: it mounts a small ext4 disk on a loop device to break")]
    NoScratchDisk,
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Meeting(#[from] MeetingError),
    #[error("mixer: {0}")]
    Mixer(#[from] mixer::MixerError),
    #[error("the mixer task ended abnormally: {0}")]
    MixerTask(#[from] tokio::task::JoinError),
    #[error("the recorder did not confirm the end of the recording")]
    NoSummary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    pub fault: DiskFault,
    /// From the start of the recording.
    pub at: Duration,
    /// How long the fault lasts before the demo repairs it.
    pub lasts: Duration,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{0}` is not FAULT@TIME with FAULT one of {names} (e.g. disk-full@10s)", names = DiskFault::names())]
pub struct FaultPlanError(String);

impl FromStr for FaultPlan {
    type Err = FaultPlanError;

    fn from_str(s: &str) -> Result<Self, FaultPlanError> {
        let bad = || FaultPlanError(s.to_owned());
        let (name, at) = s.trim().split_once('@').ok_or_else(bad)?;
        let fault = name.parse().map_err(|_| bad())?;
        let at = crate::duration::parse(at).map_err(|_| bad())?;
        Ok(Self {
            fault,
            at,
            lasts: Duration::from_secs(6),
        })
    }
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub duration: Duration,
    pub storage: PathBuf,
    pub participants: u8,
    pub engine: EngineConfig,
    pub fault: Option<FaultPlan>,
    /// Interval of the recorder's stats (and so of the progress figures).
    pub stats_interval: Duration,
    /// ALSA device to chime on at start, stop and each fault; none: no chimes.
    pub chimes: Option<String>,
    /// ALSA capture device mixed in as the room microphone; none: no microphone.
    pub microphone: Option<String>,
    /// Each participant's video codec.
    pub codecs: CodecMix,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(20),
            storage: PathBuf::from("recordings"),
            participants: 4,
            engine: EngineConfig::default(),
            fault: None,
            stats_interval: Duration::from_secs(2),
            chimes: None,
            microphone: None,
            codecs: CodecMix::default(),
        }
    }
}

/// What the demo left behind and what the meeting was told.
#[derive(Debug)]
pub struct DemoOutcome {
    pub summary: Summary,
    /// Directories of the recording's segments, in order.
    pub segments: Vec<PathBuf>,
    /// Every announcement the simulated SFU showed, as JSON lines.
    pub announcements: Vec<String>,
    /// Every state the simulated front panel showed, in order.
    pub panel: Vec<PanelState>,
}

/// Where the recorder writes: the storage itself, or for a fault demo a small disk
/// with the spool on the storage.
struct Place {
    primary: PathBuf,
    spool: Option<PathBuf>,
    disk: Option<FaultDisk>,
}

impl Place {
    fn new(config: &DemoConfig) -> Result<Self, DemoError> {
        let create = |p: &Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| DemoError::Io(format!("creating {}", p.display()), e))
        };
        create(&config.storage)?;
        if config.fault.is_none() {
            return Ok(Self {
                primary: config.storage.clone(),
                spool: None,
                disk: None,
            });
        }
        let disk = FaultDisk::create().ok_or(DemoError::NoScratchDisk)?;
        let spool = config.storage.join("spool");
        create(&spool)?;
        Ok(Self {
            primary: disk.root().to_path_buf(),
            spool: Some(spool),
            disk: Some(disk),
        })
    }
}

/// Runs the demo: starts the meeting, shows it until the configured duration is over
/// (breaking and repairing the disk on the fault plan's schedule), stops it, and
/// gathers the recording's segments.
pub async fn run(
    config: DemoConfig,
    out: &mut (impl Write + Send),
) -> Result<DemoOutcome, DemoError> {
    let place = Place::new(&config)?;
    let recording = format!("demo-{}", crate::link::frame::now_millis());
    let mut meeting = start_meeting(&config, &place, &recording).await?;
    let mut log = Log {
        out,
        t0: Instant::now(),
    };
    log.say(format!(
        "demo: {} participants for {:?} -> mixer ({}x{} @ {} fps) -> recorder writing under {}",
        config.participants,
        config.duration,
        config.engine.width,
        config.engine.height,
        config.engine.fps,
        place.primary.display()
    ));
    let mut show = Show::new(log, config.chimes.as_deref());
    let mut fault = config.fault.map(|plan| (plan, FaultStep::Inject));
    let result = show
        .follow(&mut meeting, config.duration, &place, &mut fault)
        .await;
    let (mut log, announcements, panel) = show.wind_down(&mut meeting, &result).await;
    drop(meeting);
    // A fault the demo outlasted is repaired now, so that what is on the disk is kept.
    if let (Some((_, FaultStep::Lift(injected))), Some(disk)) = (fault, place.disk.as_ref()) {
        log.say_at(&repair(
            disk,
            &injected,
            "fault repaired after the recording",
        ));
    }
    let segments = gather_segments(&place, &config.storage, &recording, &mut log);
    let summary = match result {
        Ok(Ok(Some(summary))) => summary,
        Ok(Ok(None)) => return Err(DemoError::NoSummary),
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(e.into()),
    };
    log.say(format!(
        "demo: stopped: {} fragments, {} bytes, {:.1} s of media",
        summary.fragments,
        summary.file_bytes,
        summary.media_ms as f64 / 1000.0
    ));
    Ok(DemoOutcome {
        summary,
        segments,
        announcements,
        panel,
    })
}

/// The meeting on loopback, its recorder writing to `place`.
async fn start_meeting(
    config: &DemoConfig,
    place: &Place,
    recording: &str,
) -> Result<Meeting, DemoError> {
    let key = LinkKey::new(rand::random::<[u8; 32]>().to_vec()).expect("32 bytes is a valid key");
    let mut rec = RecorderConfig::new(place.primary.clone(), key);
    rec.stats_interval = config.stats_interval;
    rec.spool = place.spool.clone();
    if place.disk.is_some() {
        rec.health = FaultDisk::health();
    }
    Ok(Meeting::start(MeetingConfig {
        recorder: rec,
        sfu: MeetingSfu::Sim {
            participants: config.participants,
            codecs: config.codecs,
        },
        engine: config.engine.clone(),
        recording: recording.to_owned(),
        microphone: config.microphone.clone(),
    })
    .await?)
}

/// The demo's output lines, timed from the start of the meeting.
struct Log<'a> {
    out: &'a mut (dyn Write + Send),
    t0: Instant,
}

impl Log<'_> {
    fn say(&mut self, line: String) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    /// `line` after the time since the start.
    fn say_at(&mut self, line: &str) {
        let at = self.t0.elapsed().as_secs_f64();
        self.say(format!("demo: [{at:>5.1}s] {line}"));
    }

    /// What the front panel shows now.
    fn panel(&mut self, state: PanelState) {
        self.say_at(&format!("panel: {}", describe(state)));
    }
}

type MixerResult = Result<Result<Option<Summary>, mixer::MixerError>, tokio::task::JoinError>;

/// What the demo shows of a running meeting: the simulated front panel, the chimes,
/// the progress and every announcement, kept for the outcome.
struct Show<'a> {
    log: Log<'a>,
    panel: Panel,
    panel_sim: SimulatedPanelHandle,
    chimes: ChimePlayer,
    cues: ChimeCues,
    status: RecordingStatus,
    announcements: Vec<String>,
    panel_states: Vec<PanelState>,
}

impl<'a> Show<'a> {
    fn new(mut log: Log<'a>, chime_device: Option<&str>) -> Self {
        // Nothing presses the demo's button: its commands have nobody to go to.
        let (panel_io, panel_sim) = SimulatedPanel::new();
        let panel = Panel::spawn(
            Box::new(panel_io),
            PanelTiming::default(),
            mpsc::unbounded_channel().0,
        );
        panel.lifecycle(Lifecycle::Starting);
        let chimes = match chime_device {
            Some(device) => {
                let player = ChimePlayer::open(device);
                if !player.is_enabled() {
                    log.say(format!(
                        "demo: no chimes: {device} cannot be played on (RUST_LOG=warn says why)"
                    ));
                }
                player
            }
            None => ChimePlayer::silent(),
        };
        Self {
            log,
            panel,
            panel_sim,
            chimes,
            cues: ChimeCues::new(),
            status: RecordingStatus::default(),
            announcements: Vec::new(),
            panel_states: Vec::new(),
        }
    }

    /// Follows the meeting until the mixer ends: stops it after `duration`, and
    /// injects and lifts the planned fault when due.
    async fn follow(
        &mut self,
        meeting: &mut Meeting,
        duration: Duration,
        place: &Place,
        fault: &mut Option<(FaultPlan, FaultStep)>,
    ) -> MixerResult {
        let t0 = self.log.t0;
        let mut progress = interval(Duration::from_secs(1));
        loop {
            let fault_due = fault.as_ref().map(|(plan, step)| {
                t0 + match step {
                    FaultStep::Inject => plan.at,
                    FaultStep::Lift(_) => plan.at + plan.lasts,
                }
            });
            tokio::select! {
                result = &mut meeting.mixer => return result,
                Some(event) = meeting.sim_events.recv() => self.sim_event(event),
                Some(report) = meeting.reports.recv() => self.report(&report, true),
                Some(state) = self.panel_sim.next_shown() => self.panel_shown(state),
                _ = progress.tick() => {
                    let line = format!("{} | panel: {}", progress_line(&self.status, t0.elapsed()), self.panel.state());
                    self.log.say(line);
                    if t0.elapsed() >= duration && !meeting.stopping() {
                        self.log.say("demo: stopping".into());
                        self.panel.lifecycle(Lifecycle::Stopping);
                        meeting.stop();
                    }
                }
                _ = sleep_until(fault_due.unwrap_or(t0 + Duration::from_secs(86_400))), if fault_due.is_some() => {
                    let (plan, step) = fault.take().expect("due");
                    let disk = place.disk.as_ref().expect("a fault demo has its disk");
                    let line = match step {
                        FaultStep::Inject => match disk.inject(plan.fault) {
                            Ok(injected) => {
                                *fault = Some((plan, FaultStep::Lift(injected)));
                                format!("injecting fault: {}", plan.fault)
                            }
                            Err(e) => format!("could not inject fault: {}: {e}", plan.fault),
                        },
                        FaultStep::Lift(injected) => repair(disk, &injected, "fault repaired"),
                    };
                    self.log.say_at(&line);
                }
            }
        }
    }

    fn sim_event(&mut self, event: SimEvent) {
        if let SimEvent::Announcement(a) = event {
            if a.to == Audience::Terminals {
                self.log.say_at(&format!("terminals see: {}", a.text));
            }
            self.announcements.push(a.to_json_line());
        }
    }

    /// Follows a mixer report on the panel and in the progress, with its chime;
    /// `timed` says whether the chime's line shows the time.
    fn report(&mut self, report: &MixerReport, timed: bool) {
        self.panel.report(report);
        if let Some(line) = chime(&mut self.cues, &self.chimes, report) {
            if timed {
                self.log.say_at(&line);
            } else {
                self.log.say(format!("demo: {line}"));
            }
        }
        self.status.update(report);
    }

    fn panel_shown(&mut self, state: PanelState) {
        self.log.panel(state);
        self.panel_states.push(state);
    }

    /// After the mixer ended: takes what was still on its way, shows the end on the
    /// panel and lets the stop chime play out. Returns the log, the announcements and
    /// the panel's states.
    async fn wind_down(
        mut self,
        meeting: &mut Meeting,
        result: &MixerResult,
    ) -> (Log<'a>, Vec<String>, Vec<PanelState>) {
        while let Ok(report) = meeting.reports.try_recv() {
            self.report(&report, false);
        }
        self.panel.lifecycle(match result {
            Ok(Ok(Some(_))) => Lifecycle::Stopped,
            Ok(Ok(None)) => Lifecycle::Failed(DemoError::NoSummary.to_string()),
            Ok(Err(e)) => Lifecycle::Failed(e.to_string()),
            Err(e) => Lifecycle::Failed(e.to_string()),
        });
        let Self {
            mut log,
            panel,
            mut panel_sim,
            chimes,
            mut announcements,
            mut panel_states,
            ..
        } = self;
        // The panel's task ends once it has shown all it was told.
        drop(panel);
        while let Some(state) = panel_sim.next_shown().await {
            log.panel(state);
            panel_states.push(state);
        }
        // The stop chime plays to its end, off the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(chimes)).await;
        while let Ok(SimEvent::Announcement(a)) = meeting.sim_events.try_recv() {
            announcements.push(a.to_json_line());
        }
        (log, announcements, panel_states)
    }
}

/// Every segment of the recording (failover adds some), in order, wherever it is.
/// From a fault demo's small disk, which goes away with the demo, segments are
/// copied to the storage, the chain in every segment names the copies, and a
/// segment left unfinished by the fault is recovered as the recorder would at its
/// next start.
fn gather_segments(place: &Place, storage: &Path, recording: &str, log: &mut Log) -> Vec<PathBuf> {
    let roots: Vec<&Path> = std::iter::once(place.primary.as_path())
        .chain(place.spool.as_deref())
        .collect();
    let mut segments = resume::segment_dirs(&roots, ROOM, recording);
    if place.disk.is_none() {
        return segments;
    }
    let before = segments.clone();
    for dir in &mut segments {
        if dir.starts_with(&place.primary) {
            match keep(dir, storage) {
                Ok(copy) => *dir = copy,
                Err(e) => log.say(format!("demo: could not keep {}: {e}", dir.display())),
            }
        }
    }
    if let Err(e) = relocate_chain(&before, &segments) {
        log.say(format!("demo: could not update the segment chain: {e}"));
    }
    // One left without a fragment by the fault is removed, as recovery does.
    segments.retain(|dir| {
        match recovery::recover(dir) {
            Ok(r) if r.removed_empty => {
                log.say(format!(
                    "demo: {} held no fragment when the fault hit: removed",
                    dir.display()
                ));
                return false;
            }
            Ok(r) if !r.was_finished => log.say(format!(
                "demo: {} was left unfinished by the fault; recovered: {} fragments, {:.1} s",
                dir.display(),
                r.fragments,
                r.media_duration_us as f64 / 1e6
            )),
            Ok(_) => {}
            Err(e) => log.say(format!("demo: could not recover {}: {e}", dir.display())),
        }
        true
    });
    segments
}

enum FaultStep {
    Inject,
    Lift(Injected),
}

/// Plays the chime `report` calls for, if any, and says so.
fn chime(cues: &mut ChimeCues, chimes: &ChimePlayer, report: &MixerReport) -> Option<String> {
    let chime = cues.on_report(report)?;
    chimes.play(chime).then(|| format!("chime: {chime}"))
}

/// Copies a segment directory from the small disk to `<storage>/<room>/`.
fn keep(dir: &Path, storage: &Path) -> std::io::Result<PathBuf> {
    let to = storage.join(ROOM).join(dir.file_name().unwrap_or_default());
    std::fs::create_dir_all(&to)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(to)
}

/// Repairs what was injected, and says so: `done` if it worked.
fn repair(disk: &FaultDisk, injected: &Injected, done: &str) -> String {
    match disk.repair(injected) {
        Ok(()) => format!("{done}: {}", injected.fault),
        Err(e) => format!("could not repair fault: {}: {e}", injected.fault),
    }
}

/// Rewrites the chain file of every segment in `now` so that each segment `was`
/// names is named by where it is now.
fn relocate_chain(was: &[PathBuf], now: &[PathBuf]) -> std::io::Result<()> {
    if was == now {
        return Ok(());
    }
    for dir in now {
        let path = dir.join(CHAIN_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            // A recording of one segment has no chain.
            continue;
        };
        let mut chain = parse_chain(&text).map_err(std::io::Error::other)?;
        for entry in &mut chain {
            if let Some(at) = was.iter().position(|d| *d == entry.dir) {
                entry.dir = now[at].clone();
            }
        }
        std::fs::write(&path, encode_chain(&chain))?;
    }
    Ok(())
}

fn progress_line(status: &RecordingStatus, elapsed: Duration) -> String {
    format!(
        "demo: [{:>5.1}s] participants {} | {} | faults: {}",
        elapsed.as_secs_f64(),
        status.participants,
        status
            .recorded_text()
            .unwrap_or_else(|| "recorded -".into()),
        status.faults_text(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_plans() {
        let p: FaultPlan = "disk-full@10s".parse().unwrap();
        assert_eq!(
            (p.fault, p.at),
            (DiskFault::DiskFull, Duration::from_secs(10))
        );
        for (s, f) in [
            ("disk-offline@1s", DiskFault::DiskOffline),
            ("read-only@500ms", DiskFault::ReadOnly),
            (" index-io@2s ", DiskFault::IndexIo),
            ("low-space@1s", DiskFault::LowSpace),
            ("io-error@1s", DiskFault::IoError),
        ] {
            assert_eq!(s.parse::<FaultPlan>().unwrap().fault, f);
        }
        for bad in ["disk-full", "full@1s", "disk-full@soon", "@1s"] {
            let e = bad.parse::<FaultPlan>().unwrap_err().to_string();
            assert!(
                e.contains("disk-full, low-space, disk-offline, read-only, index-io, io-error"),
                "{e}"
            );
        }
    }
}
