//! A participant's video decoder, of the format its stream is in.

use thiserror::Error;

use super::h264::{H264DecodeError, H264Decoder};
use super::vp8::{Vp8DecodeError, Vp8Decoder};
use crate::media::codec::VideoFormat;
use crate::media::picture::Picture;

#[derive(Debug, Error)]
pub(crate) enum VideoDecodeError {
    #[error(transparent)]
    H264(#[from] H264DecodeError),
    #[error(transparent)]
    Vp8(#[from] Vp8DecodeError),
}

pub(crate) enum VideoDecoder {
    H264(H264Decoder),
    Vp8(Vp8Decoder),
}

impl VideoDecoder {
    pub(crate) fn new(format: VideoFormat) -> Result<Self, VideoDecodeError> {
        Ok(match format {
            VideoFormat::H264 => Self::H264(H264Decoder::new()?),
            VideoFormat::Vp8 => Self::Vp8(Vp8Decoder::new()?),
        })
    }

    /// Decodes one frame; on error, ask the sender for a keyframe.
    pub(crate) fn decode(&mut self, frame: &[u8]) -> Result<Option<Picture>, VideoDecodeError> {
        Ok(match self {
            Self::H264(d) => d.decode(frame)?,
            Self::Vp8(d) => d.decode(frame)?,
        })
    }

    /// Gives back a picture this decoder made, once it is no longer shown.
    pub(crate) fn recycle(&mut self, picture: Picture) {
        match self {
            Self::H264(d) => d.recycle(picture),
            Self::Vp8(d) => d.recycle(picture),
        }
    }
}
