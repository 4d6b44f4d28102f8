//! Whether the roles are alive, for the systemd watchdog: the main loop pings only
//! while this says so, so a wedged process is restarted. Sans-IO: the mixer's
//! reports and the time are passed in.
//!
//! While recording, the mixer is alive while the media it hands to the link keeps
//! growing (the engine produces frames at a steady pace whatever the participants
//! do), and a recorder in this process is alive while the link to it is not
//! unreachable for long (the link pings it every second). A recorder on another
//! machine may well be unreachable: that is reported to the meeting, not a reason
//! to restart this process.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::link::frame::FaultKind;
use crate::mixer::service::MixerReport;
use crate::sfu::Notice;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Wedged {
    #[error("the mixer has handed no media to the recorder link for {0:?}")]
    MixerStalled(Duration),
    #[error("the recorder in this process has not answered the link for {0:?}")]
    RecorderUnresponsive(Duration),
}

#[derive(Debug)]
struct Run {
    media_frames: u64,
    progressed_at: Instant,
    unreachable_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Liveness {
    mixer_limit: Duration,
    /// `None`: the recorder is elsewhere.
    recorder_limit: Option<Duration>,
    run: Option<Run>,
}

impl Liveness {
    pub fn new(mixer_limit: Duration, recorder_limit: Option<Duration>) -> Self {
        Self {
            mixer_limit,
            recorder_limit,
            run: None,
        }
    }

    /// A recording run began (the engine is starting).
    pub fn run_started(&mut self, now: Instant) {
        self.run = Some(Run {
            media_frames: 0,
            progressed_at: now,
            unreachable_since: None,
        });
    }

    pub fn run_ended(&mut self) {
        self.run = None;
    }

    pub fn on_report(&mut self, report: &MixerReport, now: Instant) {
        let Some(run) = &mut self.run else {
            return;
        };
        match report {
            MixerReport::Output {
                video_frames,
                audio_frames,
            } => {
                let total = video_frames + audio_frames;
                if total > run.media_frames {
                    run.media_frames = total;
                    run.progressed_at = now;
                }
            }
            MixerReport::Relayed(Notice::Fault(f)) if f.kind == FaultKind::RecorderUnreachable => {
                run.unreachable_since.get_or_insert(now);
            }
            MixerReport::Relayed(Notice::Cleared {
                kind: FaultKind::RecorderUnreachable,
                ..
            }) => run.unreachable_since = None,
            _ => {}
        }
    }

    pub fn check(&self, now: Instant) -> Result<(), Wedged> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let stalled = now.saturating_duration_since(run.progressed_at);
        if stalled > self.mixer_limit {
            return Err(Wedged::MixerStalled(stalled));
        }
        if let (Some(limit), Some(since)) = (self.recorder_limit, run.unreachable_since) {
            let down = now.saturating_duration_since(since);
            if down > limit {
                return Err(Wedged::RecorderUnresponsive(down));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{text, Fault, FaultTarget};

    const S: Duration = Duration::from_secs(1);

    fn output(frames: u64) -> MixerReport {
        MixerReport::Output {
            video_frames: frames,
            audio_frames: frames,
        }
    }

    fn unreachable() -> MixerReport {
        MixerReport::Relayed(Notice::Fault(Fault {
            recording: text("r"),
            kind: FaultKind::RecorderUnreachable,
            target: FaultTarget::Recorder,
            detail: text(""),
            at: 0,
        }))
    }

    fn reachable() -> MixerReport {
        MixerReport::Relayed(Notice::Cleared {
            kind: FaultKind::RecorderUnreachable,
            target: FaultTarget::Recorder,
            at: 0,
        })
    }

    #[test]
    fn idle_is_alive() {
        let l = Liveness::new(10 * S, Some(20 * S));
        assert_eq!(l.check(Instant::now() + 1000 * S), Ok(()));
    }

    #[test]
    fn a_mixer_without_output_is_wedged() {
        let t0 = Instant::now();
        let mut l = Liveness::new(10 * S, None);
        l.run_started(t0);
        assert_eq!(l.check(t0 + 10 * S), Ok(()), "starting up");
        l.on_report(&output(30), t0 + 5 * S);
        l.on_report(&output(60), t0 + 6 * S);
        assert_eq!(l.check(t0 + 16 * S), Ok(()));
        // Reports keep coming, but nothing grows.
        for t in 7..20 {
            l.on_report(&output(60), t0 + t * S);
        }
        assert_eq!(l.check(t0 + 17 * S), Err(Wedged::MixerStalled(11 * S)));
        l.on_report(&output(61), t0 + 20 * S);
        assert_eq!(l.check(t0 + 21 * S), Ok(()));
        l.run_ended();
        assert_eq!(l.check(t0 + 100 * S), Ok(()));
    }

    #[test]
    fn a_local_recorder_unreachable_for_long_is_wedged() {
        let t0 = Instant::now();
        let mut l = Liveness::new(1000 * S, Some(20 * S));
        l.run_started(t0);
        l.on_report(&unreachable(), t0 + S);
        l.on_report(&unreachable(), t0 + 5 * S);
        assert_eq!(l.check(t0 + 21 * S), Ok(()));
        assert_eq!(
            l.check(t0 + 22 * S),
            Err(Wedged::RecorderUnresponsive(21 * S))
        );
        l.on_report(&reachable(), t0 + 23 * S);
        assert_eq!(l.check(t0 + 100 * S), Ok(()));
    }

    #[test]
    fn a_remote_recorder_may_be_unreachable() {
        let t0 = Instant::now();
        let mut l = Liveness::new(1000 * S, None);
        l.run_started(t0);
        l.on_report(&unreachable(), t0);
        assert_eq!(l.check(t0 + 500 * S), Ok(()));
    }
}
