//! Whether the box records, decided from commands (the panel's button, start-up)
//! and from how each recording run ends. Sans-IO: time is passed in, and what to do
//! comes out as [`Action`]s for the shell.
//!
//! A run joins the meeting at the SFU and records until it is stopped or fails (the
//! SFU unreachable or gone, the engine failing). While recording is wanted, a failed
//! run is followed by another after a back-off, so the box joins again once the
//! meeting is back; the back-off starts over after a run that lasted.

use std::time::{Duration, Instant};

/// What the panel (or anything else) can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    /// Start when not recording, stop when recording (or trying to).
    Toggle,
    /// Stop, then flush the storage to disk so it can be pulled.
    SafeStop,
}

/// What the box is doing about recording, for the panel and the service status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingState {
    /// Not recording, as asked.
    Idle,
    /// Joining the meeting at the SFU.
    Joining,
    /// In the meeting and recording.
    Recording,
    /// Closing the recording.
    Stopping,
    /// Recording is wanted but the last run failed; another is tried soon.
    Waiting { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a recording run.
    Launch,
    /// Ask the running recording to stop.
    Stop,
    /// Flush the recording storage to disk.
    Sync,
}

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// It was asked to stop and did.
    Stopped,
    /// It failed: the mixer's error, or the task's panic.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug, Clone, Copy)]
enum Run {
    Joining,
    Recording { since: Instant },
    Stopping,
}

/// First wait before another run after a failure; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that recorded this long was no flapping: the back-off starts over.
const STABLE_RUN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Controller {
    wanted: bool,
    run: Option<Run>,
    retry: Option<(Instant, String)>,
    backoff: Duration,
    sync_after_stop: bool,
    shutting_down: bool,
}

impl Controller {
    /// Records from the start when `autostart`.
    pub fn new(autostart: bool) -> (Self, Vec<Action>) {
        let mut c = Self {
            wanted: false,
            run: None,
            retry: None,
            backoff: MIN_BACKOFF,
            sync_after_stop: false,
            shutting_down: false,
        };
        let actions = if autostart { c.start() } else { Vec::new() };
        (c, actions)
    }

    pub fn state(&self) -> RecordingState {
        match (self.run, &self.retry) {
            (Some(Run::Joining), _) => RecordingState::Joining,
            (Some(Run::Recording { .. }), _) => RecordingState::Recording,
            (Some(Run::Stopping), _) => RecordingState::Stopping,
            (None, Some((_, reason))) => RecordingState::Waiting {
                reason: reason.clone(),
            },
            (None, None) => RecordingState::Idle,
        }
    }

    pub fn command(&mut self, command: Command) -> Vec<Action> {
        if self.shutting_down {
            return Vec::new();
        }
        match command {
            Command::Start => self.start(),
            Command::Stop => self.stop(),
            Command::Toggle if self.wanted => self.stop(),
            Command::Toggle => self.start(),
            Command::SafeStop => {
                let mut actions = self.stop();
                if self.run.is_none() {
                    actions.push(Action::Sync);
                } else {
                    self.sync_after_stop = true;
                }
                actions
            }
        }
    }

    /// The run joined the meeting.
    pub fn joined(&mut self, now: Instant) {
        if let Some(Run::Joining) = self.run {
            self.run = Some(Run::Recording { since: now });
        }
    }

    /// The run ended.
    pub fn ended(&mut self, ended: Ended, now: Instant) -> Vec<Action> {
        let Some(run) = self.run.take() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if std::mem::take(&mut self.sync_after_stop) {
            actions.push(Action::Sync);
        }
        if !self.wanted {
            return actions;
        }
        match ended {
            // Stopped, and wanted again meanwhile.
            Ended::Stopped => actions.extend(self.launch()),
            Ended::Failed(reason) => {
                let lasted = matches!(run, Run::Recording { since } if now - since >= STABLE_RUN);
                if lasted {
                    self.backoff = MIN_BACKOFF;
                }
                // What waits for the retry is told why, in words.
                self.retry = Some((now + self.backoff, reason.to_string()));
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        actions
    }

    /// When [`Self::poll`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.retry.as_ref().map(|(at, _)| *at)
    }

    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        match &self.retry {
            Some((at, _)) if *at <= now => {
                self.retry = None;
                self.launch()
            }
            _ => Vec::new(),
        }
    }

    /// The process is stopping: the recording is closed and nothing new starts.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let actions = self.stop();
        self.shutting_down = true;
        actions
    }

    /// Shut down and no run left.
    pub fn is_done(&self) -> bool {
        self.shutting_down && self.run.is_none()
    }

    fn start(&mut self) -> Vec<Action> {
        self.wanted = true;
        self.sync_after_stop = false;
        match self.run {
            // Launched again when the stop completes.
            Some(_) => Vec::new(),
            None => {
                self.retry = None;
                self.launch()
            }
        }
    }

    fn stop(&mut self) -> Vec<Action> {
        self.wanted = false;
        self.retry = None;
        match self.run {
            Some(Run::Joining | Run::Recording { .. }) => {
                self.run = Some(Run::Stopping);
                vec![Action::Stop]
            }
            Some(Run::Stopping) | None => Vec::new(),
        }
    }

    fn launch(&mut self) -> Vec<Action> {
        self.run = Some(Run::Joining);
        vec![Action::Launch]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(c: &mut Controller, now: Instant) -> Vec<Action> {
        c.ended(Ended::Failed("SFU gone".into()), now)
    }

    #[test]
    fn autostart_records_at_once_and_toggle_stops() {
        let t0 = Instant::now();
        let (mut c, actions) = Controller::new(true);
        assert_eq!(actions, [Action::Launch]);
        assert_eq!(c.state(), RecordingState::Joining);
        c.joined(t0);
        assert_eq!(c.state(), RecordingState::Recording);
        assert_eq!(c.command(Command::Toggle), [Action::Stop]);
        assert_eq!(c.state(), RecordingState::Stopping);
        // Pressed again while stopping: no second stop.
        assert!(c.command(Command::Stop).is_empty());
        assert!(c.ended(Ended::Stopped, t0).is_empty());
        assert_eq!(c.state(), RecordingState::Idle);
        assert_eq!(c.command(Command::Toggle), [Action::Launch]);
    }

    #[test]
    fn without_autostart_it_waits_for_a_command() {
        let (mut c, actions) = Controller::new(false);
        assert!(actions.is_empty());
        assert_eq!(c.state(), RecordingState::Idle);
        assert!(c.command(Command::Stop).is_empty());
        assert_eq!(c.command(Command::Start), [Action::Launch]);
        assert!(c.command(Command::Start).is_empty(), "already running");
    }

    #[test]
    fn started_again_while_stopping_records_once_stopped() {
        let t0 = Instant::now();
        let (mut c, _) = Controller::new(true);
        c.joined(t0);
        c.command(Command::Stop);
        assert!(c.command(Command::Start).is_empty());
        assert_eq!(c.ended(Ended::Stopped, t0), [Action::Launch]);
        assert_eq!(c.state(), RecordingState::Joining);
    }

    #[test]
    fn a_failed_run_is_retried_with_growing_back_off() {
        let t0 = Instant::now();
        let (mut c, _) = Controller::new(true);
        assert!(failed(&mut c, t0).is_empty());
        assert_eq!(
            c.state(),
            RecordingState::Waiting {
                reason: "SFU gone".into()
            }
        );
        assert_eq!(c.next_deadline(), Some(t0 + MIN_BACKOFF));
        assert!(c.poll(t0).is_empty());
        assert_eq!(c.poll(t0 + MIN_BACKOFF), [Action::Launch]);
        assert_eq!(c.next_deadline(), None);
        failed(&mut c, t0);
        assert_eq!(c.next_deadline(), Some(t0 + 2 * MIN_BACKOFF));
        let mut now = t0;
        for _ in 0..10 {
            now = c.next_deadline().unwrap();
            c.poll(now);
            failed(&mut c, now);
        }
        assert_eq!(c.next_deadline(), Some(now + MAX_BACKOFF));
        // A run that recorded a while: quick retry again.
        c.poll(now + MAX_BACKOFF);
        c.joined(now + MAX_BACKOFF);
        let later = now + MAX_BACKOFF + STABLE_RUN;
        failed(&mut c, later);
        assert_eq!(c.next_deadline(), Some(later + MIN_BACKOFF));
    }

    #[test]
    fn stopping_cancels_a_retry() {
        let t0 = Instant::now();
        let (mut c, _) = Controller::new(true);
        failed(&mut c, t0);
        assert!(c.command(Command::Toggle).is_empty());
        assert_eq!(c.state(), RecordingState::Idle);
        assert_eq!(c.next_deadline(), None);
        assert!(c.poll(t0 + MAX_BACKOFF).is_empty());
    }

    #[test]
    fn a_run_that_fails_while_not_wanted_is_not_retried() {
        let t0 = Instant::now();
        let (mut c, _) = Controller::new(true);
        c.command(Command::Stop);
        assert!(failed(&mut c, t0).is_empty());
        assert_eq!(c.state(), RecordingState::Idle);
    }

    #[test]
    fn safe_stop_syncs_after_the_recording_is_closed() {
        let t0 = Instant::now();
        let (mut c, _) = Controller::new(true);
        c.joined(t0);
        assert_eq!(c.command(Command::SafeStop), [Action::Stop]);
        assert_eq!(c.ended(Ended::Stopped, t0), [Action::Sync]);
        assert_eq!(c.state(), RecordingState::Idle);
        // Not recording: at once.
        assert_eq!(c.command(Command::SafeStop), [Action::Sync]);
        // A start in between cancels the sync: the disk is in use again.
        c.command(Command::Start);
        c.command(Command::SafeStop);
        c.command(Command::Start);
        assert_eq!(c.ended(Ended::Stopped, t0), [Action::Launch]);
    }

    #[test]
    fn shutdown_stops_and_refuses_new_starts() {
        let t0 = Instant::now();
        let (mut c, _) = Controller::new(true);
        c.joined(t0);
        assert_eq!(c.shutdown(), [Action::Stop]);
        assert!(!c.is_done());
        assert!(c.command(Command::Start).is_empty());
        assert!(c.ended(Ended::Stopped, t0).is_empty());
        assert!(c.is_done());
        let (mut idle, _) = Controller::new(false);
        assert!(idle.shutdown().is_empty());
        assert!(idle.is_done());
    }
}
