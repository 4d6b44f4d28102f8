//! The mixer role: every participant's audio mixed and video composited, both
//! encoded and sent over the media link to the recorder, whose faults and stats go
//! back to the SFU.

pub mod audio_encoder;
pub mod audio_mixer;
pub mod compositor;
pub mod engine;
pub mod frame_clock;
pub mod layout;
pub mod link;
pub mod scale;
pub mod service;
pub mod status;
pub mod timeline;
pub mod tone;
pub mod uplink;
