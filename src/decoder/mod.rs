//! Decoders of participants' media.

pub mod h264;
pub mod opus;
