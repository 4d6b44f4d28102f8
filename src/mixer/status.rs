//! A recording as the mixer's reports show it: participants, the latest stats and
//! the faults that still apply. Progress lines and the service status are drawn
//! from it.

use super::service::MixerReport;
use crate::link::frame::{FaultKind, Stats};
use crate::sfu::notice::track_active;
use crate::sfu::Notice;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingStatus {
    pub participants: usize,
    pub stats: Option<Stats>,
    /// Faults that apply now, in the order they came.
    pub faults: Vec<FaultKind>,
}

impl RecordingStatus {
    pub fn update(&mut self, report: &MixerReport) {
        match report {
            MixerReport::Participants(n) => self.participants = *n,
            MixerReport::Output { .. } => {}
            MixerReport::Relayed(notice) => {
                track_active(&mut self.faults, notice);
                if let Notice::Stats { stats, .. } = notice {
                    self.stats = Some(*stats);
                }
            }
            MixerReport::Link(_) => {}
        }
    }

    /// `none`, or the faults' names: `disk_full, failover`.
    pub fn faults_text(&self) -> String {
        if self.faults.is_empty() {
            return "none".into();
        }
        let names: Vec<String> = self
            .faults
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{k:?}"))
            })
            .collect();
        names.join(", ")
    }

    /// `0:05:00 recorded, 37.5 MB, 9000 MB free`, once stats came.
    pub fn recorded_text(&self) -> Option<String> {
        self.stats.map(|s| {
            let secs = s.duration_ms / 1000;
            format!(
                "{}:{:02}:{:02} recorded, {:.1} MB, {} MB free",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                (s.file_bytes + s.index_bytes) as f64 / 1e6,
                s.free_bytes >> 20
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::link::frame::{text, Fault, FaultTarget};

    /// The recorder's fault of the storage, as the mixer relayed it.
    pub(crate) fn fault(kind: FaultKind) -> MixerReport {
        MixerReport::Relayed(Notice::Fault(Fault {
            recording: text("rec-1"),
            kind,
            target: FaultTarget::Storage,
            detail: text(""),
            at: 0,
        }))
    }

    /// Its end, as the mixer relayed it.
    pub(crate) fn cleared(kind: FaultKind) -> MixerReport {
        MixerReport::Relayed(Notice::Cleared {
            kind,
            target: FaultTarget::Storage,
            at: 0,
        })
    }

    #[test]
    fn follows_faults_and_stats() {
        let mut s = RecordingStatus::default();
        assert_eq!(s.faults_text(), "none");
        assert_eq!(s.recorded_text(), None);
        s.update(&MixerReport::Participants(2));
        s.update(&fault(FaultKind::DiskFull));
        s.update(&fault(FaultKind::Failover));
        s.update(&fault(FaultKind::DiskFull));
        s.update(&fault(FaultKind::MediaDropped));
        assert_eq!(s.faults, [FaultKind::DiskFull, FaultKind::Failover]);
        assert_eq!(s.faults_text(), "disk_full, failover");
        s.update(&MixerReport::Relayed(Notice::Cleared {
            kind: FaultKind::DiskFull,
            target: FaultTarget::Storage,
            at: 2,
        }));
        s.update(&fault(FaultKind::Recovered));
        assert!(s.faults.is_empty());
        s.update(&MixerReport::Relayed(Notice::Stats {
            stats: Stats {
                file_bytes: 37_000_000,
                index_bytes: 500_000,
                duration_ms: 300_500,
                free_bytes: 9000 << 20,
                at: 3,
            },
            faults: vec![FaultKind::LowSpace],
        }));
        assert_eq!(s.faults, [FaultKind::LowSpace]);
        assert_eq!(
            s.recorded_text().unwrap(),
            "0:05:00 recorded, 37.5 MB, 9000 MB free"
        );
        assert_eq!(s.participants, 2);
    }
}
