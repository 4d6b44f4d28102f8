//! Decoders of participants' media.

pub(crate) mod h264;
pub mod opus;
