//! When the box chimes, sans-IO: once when a recording starts, once when it stops,
//! and once for each new fault, never for the stats and notices that keep coming
//! while nothing changes.

use std::collections::HashSet;

use super::chime::Chime;
use crate::link::frame::{FaultKind, FaultTarget};
use crate::mixer::link::LinkReport;
use crate::mixer::service::MixerReport;
use crate::sfu::Notice;

/// What the box itself does with a recording (the button, the service's start and
/// end), as opposed to what the mixer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    RecordingStarted,
    RecordingStopped,
}

/// Decides which chime, if any, an event calls for. Feed it the box's own
/// [`Lifecycle`] and every [`MixerReport`]; both may tell of the same start or stop
/// (the recorder confirming what the box began), which chimes once.
#[derive(Debug, Default)]
pub struct ChimeCues {
    recording: bool,
    /// Faults chimed for and not cleared since.
    faults: HashSet<(FaultKind, FaultTarget)>,
}

impl ChimeCues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn on_lifecycle(&mut self, event: Lifecycle) -> Option<Chime> {
        match event {
            Lifecycle::RecordingStarted if !self.recording => {
                self.recording = true;
                Some(Chime::Start)
            }
            Lifecycle::RecordingStopped if self.recording => {
                self.recording = false;
                // The next recording is told of a fault still there: that is news again.
                self.faults.clear();
                Some(Chime::Stop)
            }
            _ => None,
        }
    }

    pub fn on_report(&mut self, report: &MixerReport) -> Option<Chime> {
        match report {
            // Every segment of a recording (after a failover or a reconnection)
            // starts again; only the first is the recording starting.
            MixerReport::Link(LinkReport::Started { .. }) => {
                self.on_lifecycle(Lifecycle::RecordingStarted)
            }
            MixerReport::Link(LinkReport::Stopped(_)) => {
                self.on_lifecycle(Lifecycle::RecordingStopped)
            }
            // Recording moving back to the primary storage is good news.
            MixerReport::Relayed(Notice::Fault(f)) if f.kind == FaultKind::Recovered => None,
            MixerReport::Relayed(Notice::Fault(f)) => self
                .faults
                .insert((f.kind, f.target))
                .then_some(Chime::Fault),
            MixerReport::Relayed(Notice::Cleared { kind, target, .. }) => {
                self.faults.remove(&(*kind, *target));
                None
            }
            // Stats repeat the faults that still apply; the notices the link reports
            // also come as `Relayed`, which is where they are counted.
            MixerReport::Relayed(Notice::Stats { .. })
            | MixerReport::Relayed(Notice::Ingest { .. })
            | MixerReport::Relayed(Notice::UnsupportedCodec { .. })
            | MixerReport::Link(_)
            | MixerReport::Participants(_)
            | MixerReport::Output { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{text, Fault, Stats, Summary};

    fn fault(kind: FaultKind, target: FaultTarget) -> MixerReport {
        MixerReport::Relayed(Notice::Fault(Fault {
            recording: text("rec-1"),
            kind,
            target,
            detail: text("detail"),
            at: 1,
        }))
    }

    fn cleared(kind: FaultKind, target: FaultTarget) -> MixerReport {
        MixerReport::Relayed(Notice::Cleared {
            kind,
            target,
            at: 2,
        })
    }

    fn started() -> MixerReport {
        MixerReport::Link(LinkReport::Started {
            path: "/rec/seg".into(),
        })
    }

    fn stopped() -> MixerReport {
        MixerReport::Link(LinkReport::Stopped(Summary {
            recording: text("rec-1"),
            fragments: 3,
            file_bytes: 1000,
            index_bytes: 100,
            media_ms: 6000,
        }))
    }

    fn stats(faults: Vec<FaultKind>) -> MixerReport {
        MixerReport::Relayed(Notice::Stats {
            stats: Stats {
                file_bytes: 1000,
                index_bytes: 100,
                duration_ms: 5000,
                free_bytes: 1 << 30,
                at: 3,
            },
            faults,
        })
    }

    fn chimes(cues: &mut ChimeCues, reports: &[MixerReport]) -> Vec<Chime> {
        reports.iter().filter_map(|r| cues.on_report(r)).collect()
    }

    #[test]
    fn a_recording_chimes_at_its_start_and_stop_only() {
        let mut cues = ChimeCues::new();
        let reports = [
            MixerReport::Participants(2),
            started(),
            stats(vec![]),
            // A reconnection: the next segment of the same recording.
            started(),
            stats(vec![]),
            stopped(),
        ];
        assert_eq!(chimes(&mut cues, &reports), [Chime::Start, Chime::Stop]);
    }

    #[test]
    fn the_box_and_the_recorder_telling_of_one_start_chime_once() {
        let mut cues = ChimeCues::new();
        assert_eq!(
            cues.on_lifecycle(Lifecycle::RecordingStarted),
            Some(Chime::Start)
        );
        assert_eq!(cues.on_report(&started()), None);
        assert_eq!(
            cues.on_lifecycle(Lifecycle::RecordingStopped),
            Some(Chime::Stop)
        );
        // The recorder's confirmation comes after.
        assert_eq!(cues.on_report(&stopped()), None);
        assert_eq!(cues.on_lifecycle(Lifecycle::RecordingStopped), None);
        // A next recording.
        assert_eq!(cues.on_report(&started()), Some(Chime::Start));
    }

    #[test]
    fn each_fault_chimes_once_until_it_is_cleared() {
        use FaultKind::*;
        use FaultTarget::*;
        let mut cues = ChimeCues::new();
        let link_notice = MixerReport::Link(LinkReport::Notice(Notice::Fault(Fault {
            recording: text("rec-1"),
            kind: DiskFull,
            target: Storage,
            detail: text(""),
            at: 1,
        })));
        let reports = [
            started(),
            fault(DiskFull, Storage),
            // The same notice as the link reported it, and again to a new segment.
            link_notice,
            fault(DiskFull, Storage),
            stats(vec![DiskFull]),
            // Another fault at the same time is news of its own.
            fault(Failover, Storage),
            fault(RecorderUnreachable, Recorder),
            cleared(RecorderUnreachable, Recorder),
            // Moving back is not a fault.
            fault(Recovered, Storage),
            cleared(Failover, Storage),
            cleared(DiskFull, Storage),
            stats(vec![]),
            // Back again after it was cleared: a new fault.
            fault(DiskFull, Storage),
        ];
        assert_eq!(
            chimes(&mut cues, &reports),
            [
                Chime::Start,
                Chime::Fault,
                Chime::Fault,
                Chime::Fault,
                Chime::Fault
            ]
        );
    }

    #[test]
    fn a_fault_still_there_in_the_next_recording_chimes_again() {
        use FaultKind::*;
        let mut cues = ChimeCues::new();
        let f = fault(LowSpace, FaultTarget::Storage);
        let reports = [started(), f.clone(), stopped(), started(), f];
        assert_eq!(
            chimes(&mut cues, &reports),
            [
                Chime::Start,
                Chime::Fault,
                Chime::Stop,
                Chime::Start,
                Chime::Fault
            ]
        );
    }
}
