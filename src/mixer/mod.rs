//! The mixer role: every participant's audio mixed and video composited, both
//! encoded and sent over the media link to the recorder, whose faults and stats go
//! back to the SFU.

pub(crate) mod audio_encoder;
pub(crate) mod audio_mixer;
pub(crate) mod compositor;
pub mod engine;
pub(crate) mod frame_clock;
pub mod layout;
pub mod link;
pub(crate) mod scale;
pub mod service;
pub(crate) mod status;
pub(crate) mod timeline;
pub mod tone;
pub mod uplink;
