//! Janus (the VideoRoom plugin, Janus 1.x) as the meeting's SFU: the mixer joins
//! the room over the Janus WebSocket API, follows its publishers, has Janus
//! `rtp_forward` each one to the ingest and tells the terminals about the
//! recording through TextRoom announcements.

pub(crate) mod adapter;
pub mod protocol;
pub mod session;

pub(crate) use adapter::{JanusAdapter, JanusConfig, JanusError};
