//! Decoders of participants' media.

pub mod h264;
