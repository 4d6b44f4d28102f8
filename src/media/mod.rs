//! Media formats: H.264 bitstream helpers and the fragmented MP4 box writer/reader.

pub mod h264;
pub mod mp4;
