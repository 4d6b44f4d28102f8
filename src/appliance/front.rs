//! The box's front: the panel's LEDs and the speaker's chimes follow what the
//! appliance does, and the panel's button gestures become its commands.
//!
//! On a host the panel is simulated: its state is logged, and `SIGUSR1` gives it a
//! short press (start or stop), `SIGUSR2` a long one (safe stop), so the button can
//! be tried from a shell with `kill`.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Command, Event, Handle, RecordingState};
use crate::audio::{ChimeCues, ChimePlayer};
use crate::config::Config;
use crate::panel::{
    self, Lifecycle, Panel, PanelCommand, PanelIo, PanelState, PanelTiming, SimulatedPanelHandle,
};

/// What the front is made of.
pub struct Front {
    pub panel: Box<dyn PanelIo>,
    pub timing: PanelTiming,
    pub chimes: ChimePlayer,
    /// The simulated panel's button, pressed on `SIGUSR1`/`SIGUSR2`.
    pub button: Option<SimulatedPanelHandle>,
}

impl Front {
    /// The panel and speaker of the configuration; missing hardware is logged by
    /// their backends and never fatal.
    pub fn open(config: &Config) -> Self {
        let (panel, button) = panel::open(config.panel.backend, &config.panel.pins());
        let chimes = match config.audio.chime {
            true => ChimePlayer::open(&config.audio.playback),
            false => ChimePlayer::silent(),
        };
        Self {
            panel,
            timing: config.panel.timing(),
            chimes,
            button,
        }
    }

    /// Follows `handle`'s events until the appliance ends.
    pub fn spawn(self, handle: &Handle) -> JoinHandle<()> {
        self.spawn_watched(handle).0
    }

    /// As [`Front::spawn`], and the state the panel shows, to follow it (the web page).
    pub fn spawn_watched(self, handle: &Handle) -> (JoinHandle<()>, watch::Receiver<PanelState>) {
        let events = handle.subscribe();
        let commands = handle.commands();
        let (gestures_tx, gestures) = mpsc::unbounded_channel();
        let panel = Panel::spawn(self.panel, self.timing, gestures_tx);
        let state = panel.watch();
        let front = Parts {
            chimes: self.chimes,
            button: self.button,
            timing: self.timing,
        };
        (
            tokio::spawn(front.run(panel, gestures, events, commands)),
            state,
        )
    }
}

/// What the front's task runs besides the panel.
struct Parts {
    chimes: ChimePlayer,
    button: Option<SimulatedPanelHandle>,
    timing: PanelTiming,
}

impl Parts {
    async fn run(
        self,
        panel: Panel,
        mut gestures: mpsc::UnboundedReceiver<PanelCommand>,
        mut events: broadcast::Receiver<Event>,
        commands: mpsc::UnboundedSender<Command>,
    ) {
        let chimes = self.chimes;
        let mut cues = ChimeCues::new();
        let mut signals = self.button.map(Arc::new).map(|button| {
            let short = signal(SignalKind::user_defined1());
            let long = signal(SignalKind::user_defined2());
            match (short, long) {
                (Ok(short), Ok(long)) => Some((button, short, long)),
                (Err(e), _) | (_, Err(e)) => {
                    warn!("simulated panel: no button signals: {e}");
                    None
                }
            }
        });
        let long_press = self.timing.button.long + self.timing.tick * 2;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::Mixer(report)) => {
                        panel.report(&report);
                        if let Some(chime) = cues.on_report(&report) {
                            chimes.play(chime);
                        }
                    }
                    Ok(Event::State(state)) => {
                        if let Some(lifecycle) = lifecycle(&state) {
                            panel.lifecycle(lifecycle);
                        }
                    }
                    Ok(Event::Synced(synced)) => panel.lifecycle(match synced {
                        Ok(()) => Lifecycle::EjectSafe,
                        Err(e) => Lifecycle::Failed(format!("the disk could not be synced: {e}")),
                    }),
                    Ok(Event::Storage(event)) => panel.storage(&event),
                    Ok(Event::Recording(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "front panel fell behind the box's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(gesture) = gestures.recv() => {
                    let command = match gesture {
                        PanelCommand::StartStop => Command::Toggle,
                        PanelCommand::SafeStop => Command::SafeStop,
                    };
                    if commands.send(command).is_err() {
                        break;
                    }
                }
                Some(hold) = press_signal(signals.as_mut().and_then(Option::as_mut), long_press) => {
                    if let Some((button, ..)) = signals.as_ref().and_then(Option::as_ref) {
                        info!(?hold, state = %panel.state(), "simulated panel: button pressed");
                        tokio::spawn(hold_button(Arc::clone(button), hold));
                    }
                }
            }
        }
        // The stop chime plays to its end, off the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(chimes)).await;
    }
}

/// The panel's view of the appliance's recording state.
fn lifecycle(state: &RecordingState) -> Option<Lifecycle> {
    match state {
        RecordingState::Joining => Some(Lifecycle::Starting),
        // The recorder's `Started` (a report) is what the panel counts as recording.
        RecordingState::Recording => None,
        RecordingState::Stopping => Some(Lifecycle::Stopping),
        RecordingState::Idle => Some(Lifecycle::Stopped),
        RecordingState::Waiting { reason } => Some(Lifecycle::Failed(reason.clone())),
    }
}

/// How long the next signalled press holds the button down.
async fn press_signal(
    signals: Option<&mut (Arc<SimulatedPanelHandle>, Signal, Signal)>,
    long_press: Duration,
) -> Option<Duration> {
    let Some((_, short, long)) = signals else {
        return std::future::pending().await;
    };
    tokio::select! {
        Some(()) = short.recv() => Some(Duration::from_millis(200)),
        Some(()) = long.recv() => Some(long_press),
        else => None,
    }
}

/// Presses the simulated button for `hold`; the panel's own debouncing and gesture
/// timing decide what it was, as for a real button.
async fn hold_button(button: Arc<SimulatedPanelHandle>, hold: Duration) {
    button.press();
    tokio::time::sleep(hold).await;
    button.release();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recording_state_has_its_panel_lifecycle() {
        assert_eq!(
            lifecycle(&RecordingState::Joining),
            Some(Lifecycle::Starting)
        );
        assert_eq!(lifecycle(&RecordingState::Recording), None);
        assert_eq!(
            lifecycle(&RecordingState::Stopping),
            Some(Lifecycle::Stopping)
        );
        assert_eq!(lifecycle(&RecordingState::Idle), Some(Lifecycle::Stopped));
        assert_eq!(
            lifecycle(&RecordingState::Waiting {
                reason: "no SFU".into()
            }),
            Some(Lifecycle::Failed("no SFU".into()))
        );
    }
}
