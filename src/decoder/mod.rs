//! Decoders of participants' media.

pub mod opus;
