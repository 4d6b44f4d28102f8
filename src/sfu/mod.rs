//! The SFU side of the mixer: the [`SfuAdapter`] it talks to the SFU through, the
//! JSON-over-WebSocket control channel that implements it, and a simulated SFU that
//! sends real RTP for tests and demos.

pub(crate) mod adapter;
pub(crate) mod channel;
pub mod control;
pub mod janus;
pub mod notice;
pub(crate) mod roster;
#[cfg(feature = "lab")]
pub mod sim;
pub mod webhook;
pub(crate) mod ws_adapter;

pub use adapter::SfuAdapter;
pub use notice::{Announcement, Notice};
pub use roster::{Roster, RosterEvent};
pub use ws_adapter::WsSfuAdapter;
