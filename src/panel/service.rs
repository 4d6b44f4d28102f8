//! The panel as a running task: status in (mixer reports, the recording's lifecycle,
//! storage events), the state shown on the LEDs at their patterns' pace, the button
//! sampled and its gestures sent out as commands.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tracing::{debug, info};

use super::backend::PanelIo;
use super::button::{Button, ButtonTiming, Gesture};
use super::pattern::{describe, Indicator, Leds};
use super::status::{Lifecycle, PanelState, PanelStatus};
use crate::mixer::service::MixerReport;
use crate::storage::health::HealthEvent;

#[derive(Debug, Clone, Copy)]
pub struct PanelTiming {
    pub button: ButtonTiming,
    /// How often the button is sampled and the LEDs set: finer than the shortest
    /// step of a pattern (100 ms) and than the debounce.
    pub tick: Duration,
    /// How long a storage fault may go without the spool taking over before it shows
    /// as a fault.
    pub failover_grace: Duration,
}

impl Default for PanelTiming {
    fn default() -> Self {
        Self {
            button: ButtonTiming::default(),
            tick: Duration::from_millis(10),
            failover_grace: Duration::from_secs(2),
        }
    }
}

/// What the button asks of the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelCommand {
    /// Short press: start a recording, or stop the one that runs.
    StartStop,
    /// Long press: stop, close and sync everything, release the disk for removal.
    SafeStop,
}

// A few a second at most: boxing the report would buy nothing.
#[allow(clippy::large_enum_variant)]
enum PanelInput {
    Report(MixerReport),
    Lifecycle(Lifecycle),
    Storage(HealthEvent),
}

/// Handle on a running panel; cheap to clone. The panel's task ends (its LEDs dark)
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Panel {
    inputs: mpsc::UnboundedSender<PanelInput>,
    state: watch::Receiver<PanelState>,
}

impl Panel {
    /// Runs the panel on `io` (see [`super::backend::open`]); gestures go to
    /// `commands`. Needs a tokio runtime.
    pub fn spawn(
        io: Box<dyn PanelIo>,
        timing: PanelTiming,
        commands: mpsc::UnboundedSender<PanelCommand>,
    ) -> Self {
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(PanelState::Ready);
        tokio::spawn(run(io, timing, inputs, commands, state_tx));
        Self {
            inputs: inputs_tx,
            state,
        }
    }

    /// Everything the mixer reports, as it comes.
    pub fn report(&self, report: &MixerReport) {
        let _ = self.inputs.send(PanelInput::Report(report.clone()));
    }

    /// The storage monitor's events, for while no recording runs.
    pub fn storage(&self, event: &HealthEvent) {
        let _ = self.inputs.send(PanelInput::Storage(event.clone()));
    }

    pub fn lifecycle(&self, lifecycle: Lifecycle) {
        let _ = self.inputs.send(PanelInput::Lifecycle(lifecycle));
    }

    /// The state shown now.
    pub fn state(&self) -> PanelState {
        *self.state.borrow()
    }

    /// The shown state, to wait on its changes.
    pub fn watch(&self) -> watch::Receiver<PanelState> {
        self.state.clone()
    }
}

async fn run(
    mut io: Box<dyn PanelIo>,
    config: PanelTiming,
    mut inputs: mpsc::UnboundedReceiver<PanelInput>,
    commands: mpsc::UnboundedSender<PanelCommand>,
    state_tx: watch::Sender<PanelState>,
) {
    let now = Instant::now().into_std();
    let mut status = PanelStatus::new(config.failover_grace);
    let mut button = Button::new(config.button, io.button_pressed(), now);
    let mut indicator = Indicator::new(status.state(now), now);
    announce(&mut *io, &status, indicator.state(), &state_tx);
    let mut leds = indicator.leds(now);
    io.set_leds(leds);
    let mut tick = interval(config.tick);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            input = inputs.recv() => {
                let now = Instant::now().into_std();
                match input {
                    Some(PanelInput::Report(report)) => status.on_report(&report, now),
                    Some(PanelInput::Lifecycle(lifecycle)) => status.on_lifecycle(lifecycle),
                    Some(PanelInput::Storage(event)) => status.on_storage(&event, now),
                    None => break,
                }
            }
            _ = tick.tick() => {
                let now = Instant::now().into_std();
                if let Some(gesture) = button.sample(io.button_pressed(), now) {
                    let command = match gesture {
                        Gesture::Short => PanelCommand::StartStop,
                        Gesture::Long => PanelCommand::SafeStop,
                    };
                    info!(?command, "front panel button");
                    if commands.send(command).is_err() {
                        debug!(?command, "nobody takes the panel's commands");
                    }
                }
            }
        }
        let now = Instant::now().into_std();
        if indicator.show(status.state(now), now) {
            announce(&mut *io, &status, indicator.state(), &state_tx);
        }
        let now_leds = indicator.leds(now);
        if now_leds != leds {
            leds = now_leds;
            io.set_leds(leds);
        }
    }
    io.set_leds(Leds::default());
}

/// Tells the log, the backend and the watchers what the panel shows now.
fn announce(
    io: &mut dyn PanelIo,
    status: &PanelStatus,
    state: PanelState,
    state_tx: &watch::Sender<PanelState>,
) {
    let faults: Vec<String> = status.faults().map(|k| format!("{k:?}")).collect();
    info!(
        faults = %faults.join(","),
        failure = status.failure().unwrap_or(""),
        "front panel: {}",
        describe(state)
    );
    io.show(state);
    state_tx.send_replace(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::FaultKind;
    use crate::mixer::link::LinkReport;
    use crate::mixer::status::tests::{cleared, fault};
    use crate::panel::backend::{SimulatedPanel, SimulatedPanelHandle};
    use tokio::time::sleep;

    fn spawn() -> (
        Panel,
        SimulatedPanelHandle,
        mpsc::UnboundedReceiver<PanelCommand>,
    ) {
        let (io, handle) = SimulatedPanel::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let panel = Panel::spawn(Box::new(io), PanelTiming::default(), tx);
        (panel, handle, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn short_press_is_start_stop_on_release() {
        let (_panel, sim, mut commands) = spawn();
        sleep(Duration::from_millis(100)).await;
        sim.press();
        sleep(Duration::from_millis(300)).await;
        assert!(commands.try_recv().is_err(), "nothing while held");
        sim.release();
        assert_eq!(commands.recv().await, Some(PanelCommand::StartStop));
    }

    #[tokio::test(start_paused = true)]
    async fn long_press_is_safe_stop_while_still_held() {
        let (_panel, sim, mut commands) = spawn();
        sleep(Duration::from_millis(100)).await;
        sim.press();
        let pressed = Instant::now();
        assert_eq!(commands.recv().await, Some(PanelCommand::SafeStop));
        let held = pressed.elapsed();
        assert!(
            held >= Duration::from_secs(3) && held < Duration::from_millis(3100),
            "{held:?}"
        );
        sleep(Duration::from_secs(2)).await;
        sim.release();
        sleep(Duration::from_secs(1)).await;
        assert!(commands.try_recv().is_err(), "its release is no gesture");
    }

    #[tokio::test(start_paused = true)]
    async fn shows_every_state_and_its_pattern() {
        let (panel, mut sim, _commands) = spawn();
        assert_eq!(sim.next_shown().await, Some(PanelState::Ready));
        panel.lifecycle(Lifecycle::Starting);
        assert_eq!(sim.next_shown().await, Some(PanelState::Starting));
        panel.report(&MixerReport::Link(LinkReport::Started {
            path: "/r/seg".into(),
        }));
        assert_eq!(sim.next_shown().await, Some(PanelState::Recording));
        assert_eq!(panel.state(), PanelState::Recording);
        sleep(Duration::from_millis(500)).await;
        assert!(sim.leds().status, "steady while recording");

        panel.report(&fault(FaultKind::DiskFull));
        assert_eq!(sim.next_shown().await, Some(PanelState::Warning));
        panel.report(&fault(FaultKind::Failover));
        assert_eq!(sim.next_shown().await, Some(PanelState::Spooling));
        panel.report(&fault(FaultKind::RecorderUnreachable));
        assert_eq!(sim.next_shown().await, Some(PanelState::Fault));
        // Fast blink on the status LED, the fault LED steady.
        let mut seen = Vec::new();
        for _ in 0..8 {
            sleep(Duration::from_millis(125)).await;
            seen.push(sim.leds());
        }
        assert!(seen.iter().all(|l| l.fault), "{seen:?}");
        assert!(
            seen.iter().any(|l| l.status) && seen.iter().any(|l| !l.status),
            "{seen:?}"
        );
        panel.report(&cleared(FaultKind::RecorderUnreachable));
        assert_eq!(sim.next_shown().await, Some(PanelState::Spooling));
        panel.report(&cleared(FaultKind::DiskFull));
        panel.report(&fault(FaultKind::Recovered));
        assert_eq!(sim.next_shown().await, Some(PanelState::Recording));
        panel.lifecycle(Lifecycle::Stopping);
        assert_eq!(sim.next_shown().await, Some(PanelState::Stopping));
        panel.lifecycle(Lifecycle::EjectSafe);
        assert_eq!(sim.next_shown().await, Some(PanelState::EjectSafe));

        // The last handle gone: the task ends dark.
        drop(panel);
        assert_eq!(sim.next_shown().await, None);
        assert_eq!(sim.leds(), Leds::default());
    }

    #[tokio::test(start_paused = true)]
    async fn an_uncovered_storage_fault_turns_into_a_fault_after_the_grace() {
        let (panel, mut sim, _commands) = spawn();
        assert_eq!(sim.next_shown().await, Some(PanelState::Ready));
        panel.lifecycle(Lifecycle::Starting);
        assert_eq!(sim.next_shown().await, Some(PanelState::Starting));
        panel.report(&fault(FaultKind::ReadOnly));
        assert_eq!(sim.next_shown().await, Some(PanelState::Warning));
        let since = Instant::now();
        // No input comes: the task's own ticks find the grace over.
        assert_eq!(sim.next_shown().await, Some(PanelState::Fault));
        let after = since.elapsed();
        assert!(
            after >= Duration::from_secs(2) && after < Duration::from_millis(2100),
            "{after:?}"
        );
    }
}
