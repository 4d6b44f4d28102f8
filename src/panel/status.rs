//! What the front panel shows: one [`PanelState`] folded from what the mixer reports
//! (the notices relayed to the SFU, and the recorder's `Started`), the recording's
//! lifecycle as the box's controller tells it, and, while no recording runs, the
//! storage monitor's own events. Sans-IO: time is passed in.
//!
//! While a recording starts or runs, the panel follows exactly the notices the
//! meeting's terminals are told, with the same bookkeeping as the stats' list of
//! faults that still apply (`Recovered` ends `Failover`; `MediaDropped` is an event).
//!
//! Precedence, first match wins:
//!
//! | phase | condition | state |
//! |---|---|---|
//! | eject-safe | (anything) | `EjectSafe` |
//! | stopping | (anything) | `Stopping` |
//! | failed | (anything) | `Fault` |
//! | starting, recording | recorder unreachable | `Fault` |
//! | starting, recording | storage fault, no failover for `failover_grace` (and not vouched for) | `Fault` |
//! | starting, recording | failover active | `Spooling` |
//! | starting, recording | low space, media dropped in this recording, or a storage fault not yet covered by the spool or vouched for | `Warning` |
//! | starting | | `Starting` |
//! | recording | | `Recording` |
//! | idle | storage fault (last known) | `Fault` |
//! | idle | low space (last known) | `Warning` |
//! | idle | | `Ready` |
//!
//! A storage fault that still applies when recording moves back from the spool
//! (`Recovered`) is *vouched for*: the recorder found the storage taking writes again
//! (a write fault clears only at the recording's next write there). It is a warning
//! until it clears; if the storage fails again, the recorder fails over again.

use std::fmt;
use std::time::{Duration, Instant};

use crate::link::frame::FaultKind;
use crate::mixer::link::LinkReport;
use crate::mixer::service::MixerReport;
use crate::sfu::Notice;
use crate::storage::health::HealthEvent;

/// What the front panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PanelState {
    /// Idle, storage fine: a recording can start.
    Ready,
    /// A recording was asked to start; the recorder has not confirmed it yet.
    Starting,
    Recording,
    /// Recording, or idle, with something to look at: low space, media lost earlier
    /// in this recording, or a storage fault the spool is about to take over.
    Warning,
    /// Recording continues on the spool because the recording disk failed.
    Spooling,
    /// Recording is not safe: the recorder is unreachable, the storage failed with no
    /// spool taking over, or the recording could not start.
    Fault,
    /// The recording is being closed.
    Stopping,
    /// A safe stop finished: the disk may be removed.
    EjectSafe,
}

impl PanelState {
    #[cfg(test)]
    pub(crate) const ALL: [PanelState; 8] = [
        PanelState::Ready,
        PanelState::Starting,
        PanelState::Recording,
        PanelState::Warning,
        PanelState::Spooling,
        PanelState::Fault,
        PanelState::Stopping,
        PanelState::EjectSafe,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            PanelState::Ready => "ready",
            PanelState::Starting => "starting",
            PanelState::Recording => "recording",
            PanelState::Warning => "warning",
            PanelState::Spooling => "spooling",
            PanelState::Fault => "fault",
            PanelState::Stopping => "stopping",
            PanelState::EjectSafe => "eject-safe",
        }
    }
}

impl fmt::Display for PanelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The recording's lifecycle, as the box's controller tells it. That a recording
/// runs is learnt from the recorder itself (its `Started`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// A recording was asked to start.
    Starting,
    /// A stop (plain or safe) was asked.
    Stopping,
    /// No recording runs.
    Stopped,
    /// A safe stop finished: recordings closed, storage synced and released.
    EjectSafe,
    /// A recording could not start, or ended on an error: a fault until the next start.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Starting,
    Recording,
    Stopping,
    /// `removed`: the disk went offline since, so it coming back is a new disk.
    EjectSafe {
        removed: bool,
    },
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
struct Condition {
    kind: FaultKind,
    /// When it was raised here.
    since: Instant,
    /// It applied when recording moved back from the spool.
    vouched: bool,
}

/// The fold of everything the panel is told.
#[derive(Debug, Clone)]
pub(crate) struct PanelStatus {
    phase: Phase,
    /// Faults that still apply, oldest first.
    active: Vec<Condition>,
    /// Media was dropped during this recording.
    dropped: bool,
    failover_grace: Duration,
}

impl PanelStatus {
    /// Idle. A storage fault while recording is a `Fault` once `failover_grace` has
    /// passed without the spool taking over (until then a `Warning`): the failover
    /// follows the fault by a moment, and the panel should not flash a fault for it.
    pub(crate) fn new(failover_grace: Duration) -> Self {
        Self {
            phase: Phase::Idle,
            active: Vec::new(),
            dropped: false,
            failover_grace,
        }
    }

    pub(crate) fn on_report(&mut self, report: &MixerReport, now: Instant) {
        match report {
            MixerReport::Relayed(notice) => self.on_notice(notice, now),
            MixerReport::Link(LinkReport::Started { .. }) => match self.phase {
                Phase::Starting | Phase::Recording => self.phase = Phase::Recording,
                // Not stopped by us: someone else started it.
                Phase::Idle | Phase::EjectSafe { .. } | Phase::Failed(_) => {
                    self.begin();
                    self.phase = Phase::Recording;
                }
                Phase::Stopping => {}
            },
            // Link notices come again as `Relayed`, once the SFU has been told.
            MixerReport::Link(_) | MixerReport::Participants(_) | MixerReport::Output { .. } => {}
        }
    }

    pub(crate) fn on_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.phase = match lifecycle {
            Lifecycle::Starting => {
                self.begin();
                Phase::Starting
            }
            Lifecycle::Stopping => Phase::Stopping,
            Lifecycle::Stopped => Phase::Idle,
            Lifecycle::EjectSafe => Phase::EjectSafe { removed: false },
            Lifecycle::Failed(reason) => Phase::Failed(reason),
        };
    }

    /// An event of the storage monitor, for while no recording runs (while one does,
    /// the recorder reports the same on the link, and that is what the panel follows).
    /// After a safe stop, the disk going offline and coming back is a new disk: ready.
    pub(crate) fn on_storage(&mut self, event: &HealthEvent, now: Instant) {
        if self.recording() {
            return;
        }
        match *event {
            HealthEvent::Fault { kind, .. } => {
                if let (Phase::EjectSafe { removed }, FaultKind::DiskOffline) =
                    (&mut self.phase, kind)
                {
                    *removed = true;
                }
                self.raise(kind, now);
            }
            HealthEvent::Cleared { kind, .. } => {
                if matches!(
                    (&self.phase, kind),
                    (Phase::EjectSafe { removed: true }, FaultKind::DiskOffline)
                ) {
                    self.phase = Phase::Idle;
                }
                self.clear(kind);
            }
        }
    }

    pub(crate) fn state(&self, now: Instant) -> PanelState {
        match self.phase {
            Phase::EjectSafe { .. } => PanelState::EjectSafe,
            Phase::Stopping => PanelState::Stopping,
            Phase::Failed(_) => PanelState::Fault,
            Phase::Idle => {
                if self.any(|k| is_storage_wide(k) && k != FaultKind::LowSpace) {
                    PanelState::Fault
                } else if self.any(|k| k == FaultKind::LowSpace) {
                    PanelState::Warning
                } else {
                    PanelState::Ready
                }
            }
            Phase::Starting | Phase::Recording => self.recording_state(now),
        }
    }

    fn recording_state(&self, now: Instant) -> PanelState {
        let spooling = self.any(|k| k == FaultKind::Failover);
        // Storage faults the spool does not cover; given up on once the grace is
        // over, unless vouched for.
        let mut uncovered = self
            .active
            .iter()
            .filter(|c| !spooling && is_storage_fault(c.kind));
        let pending = uncovered.clone().next().is_some();
        let failed = uncovered.any(|c| !c.vouched && now >= c.since + self.failover_grace);
        if failed || self.any(|k| k == FaultKind::RecorderUnreachable) {
            PanelState::Fault
        } else if spooling {
            PanelState::Spooling
        } else if pending || self.dropped || self.any(|k| k == FaultKind::LowSpace) {
            PanelState::Warning
        } else if self.phase == Phase::Starting {
            PanelState::Starting
        } else {
            PanelState::Recording
        }
    }

    /// The faults that still apply, oldest first.
    pub(crate) fn faults(&self) -> impl Iterator<Item = FaultKind> + '_ {
        self.active.iter().map(|c| c.kind)
    }

    /// Why the recording failed, while that is shown.
    pub(crate) fn failure(&self) -> Option<&str> {
        match &self.phase {
            Phase::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    fn recording(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Recording | Phase::Stopping
        )
    }

    /// A new recording: the recorder tells it every fault that applies at its start.
    fn begin(&mut self) {
        self.active.clear();
        self.dropped = false;
    }

    fn on_notice(&mut self, notice: &Notice, now: Instant) {
        match notice {
            Notice::Fault(f) => self.raise(f.kind, now),
            Notice::Cleared { kind, .. } => self.clear(*kind),
            // The faults that still apply, as the mixer keeps them: a panel that
            // missed a notice (or started late) catches up.
            Notice::Stats { faults, .. } => {
                self.active.retain(|c| faults.contains(&c.kind));
                for &kind in faults {
                    self.raise(kind, now);
                }
            }
            // How the mixer receives the participants: nothing the panel shows.
            Notice::Ingest { .. } | Notice::UnsupportedCodec { .. } => {}
        }
    }

    fn raise(&mut self, kind: FaultKind, now: Instant) {
        match kind {
            FaultKind::MediaDropped => self.dropped = true,
            FaultKind::Recovered => {
                self.clear(FaultKind::Failover);
                for c in &mut self.active {
                    c.vouched = true;
                }
            }
            kind if !self.any(|k| k == kind) => self.active.push(Condition {
                kind,
                since: now,
                vouched: false,
            }),
            _ => {}
        }
    }

    fn clear(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::MediaDropped => self.dropped = false,
            kind => self.active.retain(|c| c.kind != kind),
        }
    }

    fn any(&self, f: impl Fn(FaultKind) -> bool) -> bool {
        self.active.iter().any(|c| f(c.kind))
    }
}

/// A condition of the storage itself, which outlasts the recording it was found in.
fn is_storage_wide(kind: FaultKind) -> bool {
    use FaultKind::*;
    matches!(
        kind,
        DiskFull | LowSpace | DiskOffline | ReadOnly | IoError | FsError
    )
}

/// A fault that stops the recording from being written where it was, unless the
/// spool takes over.
fn is_storage_fault(kind: FaultKind) -> bool {
    use FaultKind::*;
    kind != LowSpace
        && (is_storage_wide(kind) || matches!(kind, FileWriteFailed | IndexWriteFailed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{text, Fault, FaultTarget, Stats};
    use crate::mixer::status::tests::{cleared, fault};

    const GRACE: Duration = Duration::from_secs(2);

    fn stats(faults: &[FaultKind]) -> MixerReport {
        MixerReport::Relayed(Notice::Stats {
            stats: Stats {
                file_bytes: 1,
                index_bytes: 1,
                duration_ms: 1,
                free_bytes: 1,
                at: 0,
            },
            faults: faults.to_vec(),
        })
    }

    fn started() -> MixerReport {
        MixerReport::Link(LinkReport::Started {
            path: "/rec/seg".into(),
        })
    }

    fn storage_fault(kind: FaultKind) -> HealthEvent {
        HealthEvent::Fault {
            kind,
            target: FaultTarget::Storage,
            detail: String::new(),
            at: 0,
        }
    }

    fn storage_cleared(kind: FaultKind) -> HealthEvent {
        HealthEvent::Cleared {
            kind,
            target: FaultTarget::Storage,
            at: 0,
        }
    }

    /// A panel whose recording runs, and the time it started.
    fn recording() -> (PanelStatus, Instant) {
        let t = Instant::now();
        let mut s = PanelStatus::new(GRACE);
        s.on_lifecycle(Lifecycle::Starting);
        s.on_report(&started(), t);
        assert_eq!(s.state(t), PanelState::Recording);
        (s, t)
    }

    #[test]
    fn lifecycle_states() {
        let t = Instant::now();
        let mut s = PanelStatus::new(GRACE);
        assert_eq!(s.state(t), PanelState::Ready);
        s.on_lifecycle(Lifecycle::Starting);
        assert_eq!(s.state(t), PanelState::Starting);
        s.on_report(&started(), t);
        assert_eq!(s.state(t), PanelState::Recording);
        s.on_lifecycle(Lifecycle::Stopping);
        assert_eq!(s.state(t), PanelState::Stopping);
        s.on_lifecycle(Lifecycle::Stopped);
        assert_eq!(s.state(t), PanelState::Ready);
        s.on_lifecycle(Lifecycle::Starting);
        s.on_lifecycle(Lifecycle::Failed("no SFU".into()));
        assert_eq!(s.state(t), PanelState::Fault);
        assert_eq!(s.failure(), Some("no SFU"));
        s.on_lifecycle(Lifecycle::Starting);
        assert_eq!((s.state(t), s.failure()), (PanelState::Starting, None));
        s.on_report(&started(), t);
        s.on_lifecycle(Lifecycle::Stopping);
        s.on_lifecycle(Lifecycle::EjectSafe);
        assert_eq!(s.state(t), PanelState::EjectSafe);
    }

    #[test]
    fn storage_fault_fails_over_to_spooling_and_back_to_recording() {
        let (mut s, t) = recording();
        let ms = |n| t + Duration::from_millis(n);
        s.on_report(&fault(FaultKind::DiskFull), ms(100));
        // Not yet covered by the spool: a warning, not a flash of fault.
        assert_eq!(s.state(ms(100)), PanelState::Warning);
        s.on_report(&fault(FaultKind::Failover), ms(150));
        assert_eq!(s.state(ms(150)), PanelState::Spooling);
        // Covered: stays spooling however long it lasts.
        assert_eq!(s.state(ms(60_000)), PanelState::Spooling);
        s.on_report(&cleared(FaultKind::DiskFull), ms(60_000));
        assert_eq!(s.state(ms(60_000)), PanelState::Spooling);
        s.on_report(&fault(FaultKind::Recovered), ms(61_000));
        assert_eq!(s.state(ms(61_000)), PanelState::Recording);
        s.on_report(&cleared(FaultKind::Failover), ms(61_000));
        assert_eq!(s.state(ms(61_000)), PanelState::Recording);
        assert_eq!(s.faults().count(), 0);
    }

    #[test]
    fn storage_fault_without_spool_is_a_fault_after_the_grace() {
        for kind in [
            FaultKind::DiskFull,
            FaultKind::DiskOffline,
            FaultKind::ReadOnly,
            FaultKind::IoError,
            FaultKind::FsError,
            FaultKind::FileWriteFailed,
            FaultKind::IndexWriteFailed,
        ] {
            let (mut s, t) = recording();
            s.on_report(&fault(kind), t);
            assert_eq!(s.state(t), PanelState::Warning, "{kind:?}");
            assert_eq!(
                s.state(t + GRACE - Duration::from_millis(1)),
                PanelState::Warning
            );
            assert_eq!(s.state(t + GRACE), PanelState::Fault, "{kind:?}");
            s.on_report(&cleared(kind), t + GRACE);
            assert_eq!(s.state(t + GRACE), PanelState::Recording, "{kind:?}");
        }
    }

    #[test]
    fn spool_ending_while_storage_still_faulted_is_a_fault_at_once() {
        let (mut s, t) = recording();
        s.on_report(&fault(FaultKind::DiskOffline), t);
        s.on_report(&fault(FaultKind::Failover), t);
        let later = t + GRACE * 10;
        assert_eq!(s.state(later), PanelState::Spooling);
        s.on_report(&cleared(FaultKind::Failover), later);
        assert_eq!(s.state(later), PanelState::Fault);
    }

    #[test]
    fn a_fault_still_listed_when_recording_moves_back_is_a_warning_until_it_clears() {
        // A write fault clears only at the next write of the recording there.
        let (mut s, t) = recording();
        s.on_report(&fault(FaultKind::IndexWriteFailed), t);
        s.on_report(&fault(FaultKind::Failover), t);
        let back = t + GRACE * 5;
        s.on_report(&fault(FaultKind::Recovered), back);
        s.on_report(&cleared(FaultKind::Failover), back);
        assert_eq!(s.state(back + GRACE * 5), PanelState::Warning);
        // Failing again: the recorder fails over again.
        s.on_report(&fault(FaultKind::Failover), back);
        assert_eq!(s.state(back), PanelState::Spooling);
        s.on_report(&fault(FaultKind::Recovered), back);
        s.on_report(&cleared(FaultKind::IndexWriteFailed), back);
        assert_eq!(s.state(back), PanelState::Recording);
    }

    #[test]
    fn recorder_unreachable_is_a_fault_over_spooling_until_cleared() {
        let (mut s, t) = recording();
        s.on_report(&fault(FaultKind::Failover), t);
        s.on_report(&fault(FaultKind::RecorderUnreachable), t);
        assert_eq!(s.state(t), PanelState::Fault);
        s.on_report(&cleared(FaultKind::RecorderUnreachable), t);
        assert_eq!(s.state(t), PanelState::Spooling);
        // Unreachable at the start (or a refused handshake) is a fault too.
        let mut s = PanelStatus::new(GRACE);
        s.on_lifecycle(Lifecycle::Starting);
        s.on_report(&fault(FaultKind::RecorderUnreachable), t);
        assert_eq!(s.state(t), PanelState::Fault);
        s.on_report(&cleared(FaultKind::RecorderUnreachable), t);
        assert_eq!(s.state(t), PanelState::Starting);
    }

    #[test]
    fn low_space_and_dropped_media_are_warnings() {
        let (mut s, t) = recording();
        s.on_report(&fault(FaultKind::LowSpace), t);
        // Low space never turns into a fault by itself.
        assert_eq!(s.state(t + GRACE * 100), PanelState::Warning);
        s.on_report(&cleared(FaultKind::LowSpace), t);
        assert_eq!(s.state(t), PanelState::Recording);
        // Media lost earlier: a warning for the rest of this recording.
        s.on_report(&fault(FaultKind::MediaDropped), t);
        assert_eq!(s.state(t + GRACE * 100), PanelState::Warning);
        assert_eq!(s.faults().count(), 0, "an event, not a condition");
        s.on_lifecycle(Lifecycle::Stopping);
        s.on_lifecycle(Lifecycle::Stopped);
        assert_eq!(s.state(t), PanelState::Ready);
        s.on_lifecycle(Lifecycle::Starting);
        s.on_report(&started(), t);
        assert_eq!(s.state(t), PanelState::Recording);
    }

    #[test]
    fn precedence_fault_over_spooling_over_warning() {
        let (mut s, t) = recording();
        s.on_report(&fault(FaultKind::LowSpace), t);
        s.on_report(&fault(FaultKind::MediaDropped), t);
        assert_eq!(s.state(t), PanelState::Warning);
        s.on_report(&fault(FaultKind::DiskFull), t);
        s.on_report(&fault(FaultKind::Failover), t);
        assert_eq!(s.state(t + GRACE), PanelState::Spooling);
        s.on_report(&fault(FaultKind::RecorderUnreachable), t);
        assert_eq!(s.state(t), PanelState::Fault);
        // A stop and a safe stop win over any of it.
        s.on_lifecycle(Lifecycle::Stopping);
        assert_eq!(s.state(t), PanelState::Stopping);
        s.on_lifecycle(Lifecycle::EjectSafe);
        assert_eq!(s.state(t), PanelState::EjectSafe);
    }

    #[test]
    fn idle_shows_the_last_known_storage_condition() {
        let (mut s, t) = recording();
        s.on_report(&fault(FaultKind::DiskFull), t);
        s.on_report(&fault(FaultKind::Failover), t);
        s.on_report(&fault(FaultKind::RecorderUnreachable), t);
        s.on_lifecycle(Lifecycle::Stopping);
        s.on_lifecycle(Lifecycle::Stopped);
        // The disk is still full; the recording's own conditions ended with it.
        assert_eq!(s.state(t), PanelState::Fault);
        s.on_storage(&storage_cleared(FaultKind::DiskFull), t);
        assert_eq!(s.state(t), PanelState::Ready);
        s.on_storage(&storage_fault(FaultKind::LowSpace), t);
        assert_eq!(s.state(t), PanelState::Warning);
        s.on_storage(&storage_fault(FaultKind::ReadOnly), t);
        assert_eq!(s.state(t), PanelState::Fault);
        // A new recording hears every fault that applies from the recorder.
        s.on_lifecycle(Lifecycle::Starting);
        assert_eq!(s.state(t), PanelState::Starting);
    }

    #[test]
    fn storage_events_are_ignored_while_recording() {
        let (mut s, t) = recording();
        s.on_storage(&storage_fault(FaultKind::DiskFull), t);
        assert_eq!(s.state(t + GRACE), PanelState::Recording);
        s.on_report(&fault(FaultKind::DiskFull), t);
        s.on_storage(&storage_cleared(FaultKind::DiskFull), t);
        assert_eq!(s.state(t + GRACE), PanelState::Fault);
    }

    #[test]
    fn eject_safe_until_a_new_disk_or_a_new_recording() {
        let t = Instant::now();
        let mut s = PanelStatus::new(GRACE);
        s.on_lifecycle(Lifecycle::EjectSafe);
        // The disk pulled: expected, not a fault.
        s.on_storage(&storage_fault(FaultKind::DiskOffline), t);
        assert_eq!(s.state(t), PanelState::EjectSafe);
        // A disk back: a new one, ready to record.
        s.on_storage(&storage_cleared(FaultKind::DiskOffline), t);
        assert_eq!(s.state(t), PanelState::Ready);

        // Other storage events do not end it; a clearing without a removal neither.
        s.on_lifecycle(Lifecycle::EjectSafe);
        s.on_storage(&storage_fault(FaultKind::LowSpace), t);
        s.on_storage(&storage_cleared(FaultKind::DiskOffline), t);
        assert_eq!(s.state(t), PanelState::EjectSafe);
        s.on_lifecycle(Lifecycle::Starting);
        assert_eq!(s.state(t), PanelState::Starting);
        // A recording started elsewhere ends it too.
        s.on_lifecycle(Lifecycle::EjectSafe);
        s.on_report(&started(), t);
        assert_eq!(s.state(t), PanelState::Recording);
    }

    #[test]
    fn started_during_stopping_does_not_resume() {
        let (mut s, t) = recording();
        s.on_lifecycle(Lifecycle::Stopping);
        s.on_report(&started(), t);
        assert_eq!(s.state(t), PanelState::Stopping);
    }

    #[test]
    fn stats_bring_a_late_panel_up_to_date() {
        let (mut s, t) = recording();
        s.on_report(&stats(&[FaultKind::DiskFull, FaultKind::Failover]), t);
        assert_eq!(s.state(t + GRACE), PanelState::Spooling);
        s.on_report(&stats(&[FaultKind::DiskFull]), t + GRACE);
        assert_eq!(s.state(t + GRACE), PanelState::Fault);
        s.on_report(&stats(&[]), t + GRACE);
        assert_eq!(s.state(t + GRACE), PanelState::Recording);
    }

    #[test]
    fn link_notices_are_counted_once_as_relayed() {
        let (mut s, t) = recording();
        let notice = Notice::Fault(Fault {
            recording: text("rec-1"),
            kind: FaultKind::RecorderUnreachable,
            target: FaultTarget::Recorder,
            detail: text("gone"),
            at: 0,
        });
        s.on_report(&MixerReport::Link(LinkReport::Notice(notice)), t);
        s.on_report(&MixerReport::Participants(3), t);
        assert_eq!(s.state(t), PanelState::Recording);
    }
}
