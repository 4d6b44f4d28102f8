//! Media formats: H.264 bitstream helpers, the fragmented MP4 box writer/reader and
//! uncompressed pictures.

pub mod codec;
pub mod h264;
pub mod mp4;
pub mod picture;
