//! recbox: firmware of a meeting-room recording box.
//!
//! The SFU forwards every participant's RTP to the mixer, the mixer sends one mixed
//! stream over the media link to the recorder, and the recorder writes a fragmented
//! MP4, an index and an HLS playlist, sending every fault and periodic stats back on
//! the same link. See `README.md` and `docs/design/overview.md`.
//!
//! The lab (feature `lab`, on by default) is what runs the box on a development
//! machine without its hardware or a real SFU: [`demo`], [`bench`], [`testbed`],
//! [`synth`] and the simulated SFU [`sfu::sim`]. Nothing the box itself runs uses
//! it, and its release build leaves it out.

pub mod appliance;
pub mod audio;
#[cfg(feature = "lab")]
pub mod bench;
pub mod config;
pub mod decoder;
#[cfg(feature = "lab")]
pub mod demo;
pub mod duration;
pub mod encoder;
pub mod ingest;
pub mod libav;
pub mod link;
pub mod media;
pub mod mixer;
pub mod panel;
pub mod path_component;
pub mod recorder;
pub mod sfu;
pub mod size;
pub mod storage;
#[cfg(feature = "lab")]
pub mod synth;
pub mod systemd;
#[cfg(test)]
mod test_log;
#[cfg(feature = "lab")]
pub mod testbed;
pub mod web;
