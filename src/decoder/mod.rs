//! Decoders of participants' media.

pub(crate) mod h264;
pub mod opus;
pub mod video;
pub mod vp8;
