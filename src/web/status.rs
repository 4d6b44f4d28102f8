//! What the status page shows, folded from the appliance's events and the panel's
//! state (sans-IO): recording state, the LED's state, participants, recorded
//! duration and bytes, free space, the faults that apply with their text, and the
//! last notices the meeting was told.

use std::collections::VecDeque;

use serde::Serialize;

use crate::appliance::{Event, RecordingState};
use crate::link::frame::{FaultKind, FaultTarget, UnixMillis};
use crate::mixer::service::MixerReport;
use crate::mixer::status::RecordingStatus;
use crate::panel::PanelState;
use crate::sfu::notice::{fault_text, Announcement, Audience};
use crate::sfu::Notice;

/// Notices kept for the page.
pub const NOTICES_KEPT: usize = 20;

/// A fault that applies now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultView {
    pub kind: FaultKind,
    /// What the meeting was told.
    pub text: String,
    pub target: Option<FaultTarget>,
    /// The recorder's detail (the OS error, the path), when it sent one.
    pub detail: Option<String>,
    pub at: Option<UnixMillis>,
}

/// One notice the meeting was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeView {
    pub at: UnixMillis,
    /// The fault kind, or `cleared`.
    pub kind: String,
    pub text: String,
}

/// The page's status, as `/api/status` and every server-sent event carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// `idle`, `joining`, `recording`, `stopping` or `waiting`.
    pub state: &'static str,
    /// Why it is waiting (the last run's failure).
    pub reason: Option<String>,
    /// The recording run's id.
    pub recording: Option<String>,
    /// What the front panel's LED shows.
    pub panel: &'static str,
    pub participants: usize,
    /// From the recorder's latest stats.
    pub duration_ms: Option<u64>,
    pub bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub faults: Vec<FaultView>,
    /// Newest first.
    pub notices: Vec<NoticeView>,
    /// The last safe stop: `ok`, or why the storage could not be synced.
    pub synced: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BoxStatus {
    state: RecordingState,
    recording: Option<String>,
    panel: PanelState,
    run: RecordingStatus,
    /// The latest fault notice of each kind (for its detail).
    told: Vec<FaultView>,
    notices: VecDeque<NoticeView>,
    /// Read from the storage while no stats come.
    free_bytes: Option<u64>,
    synced: Option<Result<(), String>>,
}

impl Default for BoxStatus {
    fn default() -> Self {
        Self {
            state: RecordingState::Idle,
            recording: None,
            panel: PanelState::Ready,
            run: RecordingStatus::default(),
            told: Vec::new(),
            notices: VecDeque::new(),
            free_bytes: None,
            synced: None,
        }
    }
}

impl BoxStatus {
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::State(state) => self.state = state.clone(),
            Event::Recording(id) => {
                self.recording = Some(id.clone());
                self.run = RecordingStatus::default();
                self.told.clear();
                self.synced = None;
            }
            Event::Mixer(report) => self.on_report(report),
            Event::Synced(result) => self.synced = Some(result.clone()),
            // The page shows the idle storage's health through the panel's state.
            Event::Storage(_) => {}
        }
    }

    fn on_report(&mut self, report: &MixerReport) {
        self.run.update(report);
        let MixerReport::Relayed(notice) = report else {
            return;
        };
        if let Notice::Fault(f) = notice {
            self.told.retain(|t| t.kind != f.kind);
            self.told.push(FaultView {
                kind: f.kind,
                text: fault_text(f.kind).to_owned(),
                target: Some(f.target),
                detail: (!f.detail.is_empty()).then(|| f.detail.to_string()),
                at: Some(f.at),
            });
        }
        let told = Announcement::new(notice);
        if told.to == Audience::Terminals {
            if self.notices.len() == NOTICES_KEPT {
                self.notices.pop_back();
            }
            self.notices.push_front(NoticeView {
                at: told.at,
                kind: told.kind,
                text: told.text,
            });
        }
    }

    pub fn on_panel(&mut self, panel: PanelState) {
        self.panel = panel;
    }

    /// Free space read from the storage (used while the recorder sends no stats).
    pub fn on_free_space(&mut self, free_bytes: u64) {
        self.free_bytes = Some(free_bytes);
    }

    pub fn view(&self) -> StatusView {
        let (state, reason) = match &self.state {
            RecordingState::Idle => ("idle", None),
            RecordingState::Joining => ("joining", None),
            RecordingState::Recording => ("recording", None),
            RecordingState::Stopping => ("stopping", None),
            RecordingState::Waiting { reason } => ("waiting", Some(reason.clone())),
        };
        let running = matches!(
            self.state,
            RecordingState::Recording | RecordingState::Stopping
        );
        let stats = self.run.stats.filter(|_| running);
        StatusView {
            state,
            reason,
            recording: self.recording.clone(),
            panel: self.panel.name(),
            participants: if running { self.run.participants } else { 0 },
            duration_ms: stats.map(|s| s.duration_ms),
            bytes: stats.map(|s| s.file_bytes + s.index_bytes),
            free_bytes: stats.map(|s| s.free_bytes).or(self.free_bytes),
            faults: self
                .run
                .faults
                .iter()
                .map(|&kind| {
                    self.told
                        .iter()
                        .find(|t| t.kind == kind)
                        .cloned()
                        .unwrap_or_else(|| FaultView {
                            kind,
                            text: fault_text(kind).to_owned(),
                            target: None,
                            detail: None,
                            at: None,
                        })
                })
                .collect(),
            notices: self.notices.iter().cloned().collect(),
            synced: self.synced.as_ref().map(|r| match r {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::link::frame::{text, Fault, Stats};
    use crate::mixer::status::tests::{cleared, fault};

    fn mixer(report: MixerReport) -> Event {
        Event::Mixer(Arc::new(report))
    }

    #[test]
    fn a_recording_with_a_fault_and_its_end() {
        let mut s = BoxStatus::default();
        assert_eq!(s.view().state, "idle");
        assert_eq!(s.view().panel, "ready");
        s.on_free_space(5 << 30);
        s.on_event(&Event::Recording("rec-1".into()));
        s.on_event(&Event::State(RecordingState::Recording));
        s.on_panel(PanelState::Recording);
        s.on_event(&mixer(MixerReport::Participants(3)));
        s.on_event(&mixer(MixerReport::Relayed(Notice::Stats {
            stats: Stats {
                file_bytes: 1000,
                index_bytes: 24,
                duration_ms: 4000,
                free_bytes: 1 << 30,
                at: 1,
            },
            faults: vec![],
        })));
        s.on_event(&mixer(MixerReport::Relayed(Notice::Fault(Fault {
            recording: text("rec-1"),
            kind: FaultKind::DiskFull,
            target: FaultTarget::Storage,
            detail: text("ENOSPC on /srv/recbox"),
            at: 2,
        }))));
        s.on_event(&mixer(fault(FaultKind::Failover)));
        s.on_panel(PanelState::Spooling);
        let v = s.view();
        assert_eq!(
            (v.state, v.panel, v.participants),
            ("recording", "spooling", 3)
        );
        assert_eq!(
            (v.duration_ms, v.bytes, v.free_bytes),
            (Some(4000), Some(1024), Some(1 << 30))
        );
        let kinds: Vec<_> = v.faults.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FaultKind::DiskFull, FaultKind::Failover]);
        assert_eq!(v.faults[0].detail.as_deref(), Some("ENOSPC on /srv/recbox"));
        assert!(
            v.faults[0].text.contains("disk is full"),
            "{:?}",
            v.faults[0]
        );
        assert_eq!(v.notices.len(), 2, "stats are not notices");
        assert_eq!(v.notices[0].kind, "failover", "newest first");

        s.on_event(&mixer(cleared(FaultKind::DiskFull)));
        s.on_event(&mixer(fault(FaultKind::Recovered)));
        assert!(s.view().faults.is_empty());
        assert_eq!(s.view().notices[1].kind, "cleared");

        s.on_event(&Event::State(RecordingState::Idle));
        s.on_event(&Event::Synced(Ok(())));
        let v = s.view();
        assert_eq!((v.state, v.participants, v.bytes), ("idle", 0, None));
        assert_eq!(v.free_bytes, Some(5 << 30), "the storage's own reading");
        assert_eq!(v.synced.as_deref(), Some("ok"));
    }

    #[test]
    fn notices_are_bounded_and_a_new_recording_starts_clean() {
        let mut s = BoxStatus::default();
        for _ in 0..NOTICES_KEPT + 5 {
            s.on_event(&mixer(fault(FaultKind::LowSpace)));
        }
        assert_eq!(s.view().notices.len(), NOTICES_KEPT);
        assert_eq!(s.view().faults.len(), 1);
        s.on_event(&Event::Recording("rec-2".into()));
        assert!(s.view().faults.is_empty());
        assert_eq!(s.view().recording.as_deref(), Some("rec-2"));
    }

    #[test]
    fn a_waiting_box_says_why() {
        let mut s = BoxStatus::default();
        s.on_event(&Event::State(RecordingState::Waiting {
            reason: "no SFU".into(),
        }));
        let v = s.view();
        assert_eq!((v.state, v.reason.as_deref()), ("waiting", Some("no SFU")));
    }
}
