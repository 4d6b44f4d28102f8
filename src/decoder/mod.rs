//! Decoders of participants' media.

pub mod h264;
pub mod opus;
pub mod video;
pub mod vp8;
