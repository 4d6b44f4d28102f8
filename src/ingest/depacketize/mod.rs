//! RTP payload formats: RTP payloads in, codec frames out.

mod gate;
pub mod h264;
pub mod opus;
pub mod vp8;

/// Largest video frame reassembled: the media link's default frame limit, which a
/// frame of the mix must fit in too.
const MAX_FRAME: usize = crate::link::codec::DEFAULT_MAX_FRAME;

/// One reassembled video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Extended RTP timestamp (90 kHz).
    pub(crate) ts: i64,
    /// H.264: Annex B. VP8: the frame as the decoder takes it.
    pub data: Vec<u8>,
    /// Decoding can start here (H.264: an IDR slice; VP8: a key frame).
    pub keyframe: bool,
}
