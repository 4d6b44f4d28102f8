//! RTP payload formats: RTP payloads in, codec frames out.

pub mod h264;
pub mod opus;
