//! The front panel: a status LED (and an optional red fault LED) showing what the
//! box is doing, and one button to start, stop, or safely stop for the disk to be
//! pulled.
//!
//! - [`status`]: the panel state folded from the mixer's reports and the recording's
//!   lifecycle (sans-IO), with its precedence table;
//! - [`pattern`]: each state's LED pattern as a function of time (sans-IO);
//! - [`button`]: debouncing and gestures (sans-IO);
//! - [`backend`]: GPIO (`rppal`), simulated, or none;
//! - [`service`]: the tokio task that runs them: [`Panel`] is its handle.

pub(crate) mod backend;
pub(crate) mod button;
pub(crate) mod pattern;
pub(crate) mod service;
pub mod status;

pub use backend::{open, PanelBackend, PanelIo, PanelPins, SimulatedPanel, SimulatedPanelHandle};
pub(crate) use service::{Panel, PanelCommand, PanelTiming};
pub use status::{Lifecycle, PanelState};
