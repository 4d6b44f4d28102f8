//! recbox: firmware of a meeting-room recording box.
//!
//! The SFU forwards every participant's RTP to the mixer, the mixer sends one mixed
//! stream over the media link to the recorder, and the recorder writes a fragmented
//! MP4, an index and an HLS playlist, sending every fault and periodic stats back on
//! the same link. See `README.md` and `docs/design/overview.md`.

pub mod appliance;
pub mod audio;
pub mod bench;
pub mod config;
pub mod decoder;
pub mod demo;
pub mod duration;
pub mod encoder;
pub mod ingest;
pub mod link;
pub mod media;
pub mod mixer;
pub mod panel;
pub mod path_component;
pub mod recorder;
pub mod sfu;
pub mod size;
pub mod storage;
pub mod synth;
pub mod systemd;
#[cfg(test)]
mod test_log;
pub mod web;
