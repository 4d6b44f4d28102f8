//! The numbers of the V4L2 kernel interface that the encoder logic decides on
//! (from `linux/videodev2.h` and `linux/v4l2-controls.h`). They are stable ABI, so
//! the logic needs no generated bindings and builds on every host.

use std::fmt;

/// `V4L2_CAP_*` capability bits.
pub(crate) const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
pub(crate) const CAP_VIDEO_M2M: u32 = 0x0000_8000;
pub(crate) const CAP_STREAMING: u32 = 0x0400_0000;

/// `V4L2_BUF_FLAG_*` buffer flags.
pub(crate) const BUF_FLAG_KEYFRAME: u32 = 0x0000_0008;
pub(crate) const BUF_FLAG_ERROR: u32 = 0x0000_0040;
pub(crate) const BUF_FLAG_LAST: u32 = 0x0010_0000;

const CID_CODEC_BASE: u32 = 0x0099_0000 | 0x900;
pub(crate) const CID_GOP_SIZE: u32 = CID_CODEC_BASE + 203;
pub(crate) const CID_BITRATE: u32 = CID_CODEC_BASE + 207;
pub(crate) const CID_HEADER_MODE: u32 = CID_CODEC_BASE + 216;
pub(crate) const CID_REPEAT_SEQ_HEADER: u32 = CID_CODEC_BASE + 226;
pub(crate) const CID_FORCE_KEY_FRAME: u32 = CID_CODEC_BASE + 229;
pub(crate) const CID_H264_I_PERIOD: u32 = CID_CODEC_BASE + 358;
pub(crate) const CID_H264_LEVEL: u32 = CID_CODEC_BASE + 359;
pub(crate) const CID_H264_PROFILE: u32 = CID_CODEC_BASE + 363;
pub(crate) const CID_PREPEND_SPSPPS_TO_IDR: u32 = CID_CODEC_BASE + 644;

/// `V4L2_MPEG_VIDEO_HEADER_MODE_JOINED_WITH_1ST_FRAME`.
pub(crate) const HEADER_MODE_JOINED: i64 = 1;

/// `V4L2_MPEG_VIDEO_H264_PROFILE_*` menu indices.
pub(crate) const PROFILE_BASELINE: i64 = 0;
pub(crate) const PROFILE_CONSTRAINED_BASELINE: i64 = 1;
pub(crate) const PROFILE_MAIN: i64 = 2;
pub(crate) const PROFILE_HIGH: i64 = 4;

/// A pixel format code, e.g. `YU12`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FourCc(pub [u8; 4]);

impl FourCc {
    /// Planar I420 (`V4L2_PIX_FMT_YUV420`).
    pub(crate) const YU12: Self = Self(*b"YU12");
    /// Y plane then interleaved CbCr (`V4L2_PIX_FMT_NV12`).
    pub(crate) const NV12: Self = Self(*b"NV12");
    /// H.264 with start codes (`V4L2_PIX_FMT_H264`).
    pub(crate) const H264: Self = Self(*b"H264");

    /// The code as the kernel stores it (little-endian).
    pub(crate) fn to_u32(self) -> u32 {
        u32::from_le_bytes(self.0)
    }

    pub(crate) fn from_u32(code: u32) -> Self {
        Self(code.to_le_bytes())
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_matches_the_kernel_codes() {
        // v4l2_fourcc('Y','U','1','2') and ('H','2','6','4').
        assert_eq!(FourCc::YU12.to_u32(), 0x3231_5559);
        assert_eq!(FourCc::H264.to_u32(), 0x3436_3248);
        assert_eq!(FourCc::from_u32(0x3231_564e), FourCc::NV12);
        assert_eq!(FourCc::NV12.to_string(), "NV12");
    }
}
