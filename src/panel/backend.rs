//! Where the panel's LEDs and button are: GPIO pins of the board (`rppal`), a
//! simulated panel for hosts and tests, or none at all.

use rppal::gpio::{Gpio, InputPin, Level, OutputPin};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::pattern::Leds;
use super::status::PanelState;

/// Which panel the box has (`[panel] backend` of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelBackend {
    /// LEDs and button on GPIO pins (Raspberry Pi class boards).
    Gpio,
    /// No hardware: the state is logged, and the button pressed through a channel.
    Simulated,
    /// No panel.
    None,
}

/// The panel's pins, BCM GPIO numbers, from the board file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelPins {
    pub led: u8,
    /// An optional second (red) LED for trouble.
    pub fault_led: Option<u8>,
    pub button: u8,
    /// The LEDs light when their pin is low (wired to the supply, sunk by the pin).
    pub led_active_low: bool,
    /// The button pulls its pin low when pressed (to ground, with the internal
    /// pull-up); otherwise it drives it high (with the internal pull-down).
    pub button_active_low: bool,
}

#[derive(Debug, Error)]
pub enum PanelError {
    #[error("cannot open the GPIO peripheral (is this a Raspberry Pi class board?): {0}")]
    Gpio(#[source] rppal::gpio::Error),
    #[error("GPIO {pin} for the {what}: {source}")]
    Pin {
        pin: u8,
        what: &'static str,
        #[source]
        source: rppal::gpio::Error,
    },
}

/// The panel's hardware, as the panel task drives it. GPIO reads and writes are
/// register accesses that cannot fail once the pins are open.
pub trait PanelIo: Send {
    fn set_leds(&mut self, leds: Leds);
    /// Whether the button is held down now (raw, not debounced).
    fn button_pressed(&mut self) -> bool;
    /// The panel now shows `state` (for displays beside the LEDs).
    fn show(&mut self, _state: PanelState) {}
}

/// The panel `backend` names, and for a simulated one the handle that presses its
/// button. A GPIO panel that cannot be opened (not a Pi, pins in use, no
/// permission) is logged and replaced by the simulated one, never fatal.
pub fn open(
    backend: PanelBackend,
    pins: &PanelPins,
) -> (Box<dyn PanelIo>, Option<SimulatedPanelHandle>) {
    let simulated = || {
        let (panel, handle) = SimulatedPanel::new();
        (Box::new(panel) as Box<dyn PanelIo>, Some(handle))
    };
    match backend {
        PanelBackend::Gpio => match GpioPanel::open(pins) {
            Ok(panel) => {
                info!(
                    led = pins.led,
                    fault_led = ?pins.fault_led,
                    button = pins.button,
                    "front panel on GPIO"
                );
                (Box::new(panel), None)
            }
            Err(e) => {
                warn!("front panel: {e}; using the simulated panel (its state is logged)");
                simulated()
            }
        },
        PanelBackend::Simulated => simulated(),
        PanelBackend::None => (Box::new(NoPanel), None),
    }
}

/// No panel: nothing lit, never pressed.
pub struct NoPanel;

impl PanelIo for NoPanel {
    fn set_leds(&mut self, _leds: Leds) {}
    fn button_pressed(&mut self) -> bool {
        false
    }
}

pub struct GpioPanel {
    led: OutputPin,
    fault_led: Option<OutputPin>,
    button: InputPin,
    pins: PanelPins,
}

impl GpioPanel {
    pub fn open(pins: &PanelPins) -> Result<Self, PanelError> {
        let gpio = Gpio::new().map_err(PanelError::Gpio)?;
        let take = |pin, what| {
            gpio.get(pin)
                .map_err(|source| PanelError::Pin { pin, what, source })
        };
        let off = drive(false, pins.led_active_low);
        let led = take(pins.led, "status LED")?.into_output();
        let fault_led = match pins.fault_led {
            Some(pin) => Some(take(pin, "fault LED")?.into_output()),
            None => None,
        };
        let button = take(pins.button, "button")?;
        let button = if pins.button_active_low {
            button.into_input_pullup()
        } else {
            button.into_input_pulldown()
        };
        let mut panel = Self {
            led,
            fault_led,
            button,
            pins: *pins,
        };
        panel.led.write(off);
        if let Some(led) = &mut panel.fault_led {
            led.write(off);
        }
        Ok(panel)
    }
}

impl PanelIo for GpioPanel {
    fn set_leds(&mut self, leds: Leds) {
        self.led.write(drive(leds.status, self.pins.led_active_low));
        if let Some(led) = &mut self.fault_led {
            led.write(drive(leds.fault, self.pins.led_active_low));
        }
    }

    fn button_pressed(&mut self) -> bool {
        pressed(self.button.read(), self.pins.button_active_low)
    }
}

/// The pin level that lights (or darkens) an LED.
fn drive(lit: bool, active_low: bool) -> Level {
    if lit != active_low {
        Level::High
    } else {
        Level::Low
    }
}

/// Whether a button pin at `level` is pressed.
fn pressed(level: Level, active_low: bool) -> bool {
    (level == Level::Low) == active_low
}

/// A panel without hardware: the LEDs and shown state go to a
/// [`SimulatedPanelHandle`], which also presses the button.
pub struct SimulatedPanel {
    presses: mpsc::UnboundedReceiver<bool>,
    pressed: bool,
    leds: watch::Sender<Leds>,
    shown: mpsc::UnboundedSender<PanelState>,
}

/// The other side of a [`SimulatedPanel`].
pub struct SimulatedPanelHandle {
    presses: mpsc::UnboundedSender<bool>,
    leds: watch::Receiver<Leds>,
    shown: mpsc::UnboundedReceiver<PanelState>,
}

impl SimulatedPanel {
    pub fn new() -> (Self, SimulatedPanelHandle) {
        let (presses_tx, presses) = mpsc::unbounded_channel();
        let (leds, leds_rx) = watch::channel(Leds::default());
        let (shown, shown_rx) = mpsc::unbounded_channel();
        let panel = Self {
            presses,
            pressed: false,
            leds,
            shown,
        };
        let handle = SimulatedPanelHandle {
            presses: presses_tx,
            leds: leds_rx,
            shown: shown_rx,
        };
        (panel, handle)
    }
}

impl PanelIo for SimulatedPanel {
    fn set_leds(&mut self, leds: Leds) {
        self.leds.send_replace(leds);
    }

    fn button_pressed(&mut self) -> bool {
        while let Ok(level) = self.presses.try_recv() {
            self.pressed = level;
        }
        self.pressed
    }

    fn show(&mut self, state: PanelState) {
        let _ = self.shown.send(state);
    }
}

impl SimulatedPanelHandle {
    /// Holds the button down (until [`Self::release`]).
    pub fn press(&self) {
        let _ = self.presses.send(true);
    }

    pub fn release(&self) {
        let _ = self.presses.send(false);
    }

    /// What the LEDs show now.
    pub fn leds(&self) -> Leds {
        *self.leds.borrow()
    }

    /// The next state the panel showed, in order, every one of them; `None` once the
    /// panel task has ended and all were taken.
    pub async fn next_shown(&mut self) -> Option<PanelState> {
        self.shown.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_levels_follow_the_wiring() {
        assert_eq!(drive(true, false), Level::High);
        assert_eq!(drive(false, false), Level::Low);
        assert_eq!(drive(true, true), Level::Low);
        assert_eq!(drive(false, true), Level::High);
        assert!(pressed(Level::Low, true));
        assert!(!pressed(Level::High, true));
        assert!(pressed(Level::High, false));
        assert!(!pressed(Level::Low, false));
    }

    fn pins() -> PanelPins {
        PanelPins {
            led: 17,
            fault_led: Some(22),
            button: 27,
            led_active_low: false,
            button_active_low: true,
        }
    }

    #[test]
    fn gpio_off_a_pi_is_a_clear_error_and_the_panel_is_simulated() {
        let on_a_pi = std::fs::read_to_string("/proc/device-tree/compatible")
            .is_ok_and(|c| c.contains("raspberrypi"));
        if on_a_pi {
            eprintln!("SKIPPED: this is a Raspberry Pi");
            return;
        }
        let e = GpioPanel::open(&pins()).err().expect("no GPIO here");
        assert!(e.to_string().contains("Raspberry Pi"), "{e}");
        // Never fatal: the simulated panel, pressed through its handle.
        let (mut panel, handle) = open(PanelBackend::Gpio, &pins());
        panel.set_leds(Leds {
            status: true,
            fault: false,
        });
        assert!(!panel.button_pressed());
        handle.expect("a simulated panel in its place").press();
        assert!(panel.button_pressed());
    }

    #[test]
    fn simulated_panel_takes_presses_and_shows_leds() {
        let (mut panel, mut handle) = SimulatedPanel::new();
        assert!(!panel.button_pressed());
        handle.press();
        assert!(panel.button_pressed());
        assert!(panel.button_pressed(), "held until released");
        handle.release();
        handle.press();
        handle.release();
        assert!(!panel.button_pressed(), "the last level counts");
        let leds = Leds {
            status: true,
            fault: true,
        };
        panel.set_leds(leds);
        assert_eq!(handle.leds(), leds);
        panel.show(PanelState::Spooling);
        drop(panel);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(handle.next_shown()), Some(PanelState::Spooling));
        assert_eq!(rt.block_on(handle.next_shown()), None);
    }

    #[test]
    fn no_panel_is_never_pressed() {
        let (mut panel, handle) = open(PanelBackend::None, &pins());
        assert!(handle.is_none());
        panel.set_leds(Leds::default());
        assert!(!panel.button_pressed());
    }
}
