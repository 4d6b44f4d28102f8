//! The video codec of a participant's stream, as the SFU names it (the SDP name:
//! `h264`, `vp8`, `vp9`, `av1`), and the formats among them that the box decodes.

use serde::{Deserialize, Serialize};

use crate::link::frame::{text, Text};

/// A video codec as the SFU announced it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Codec {
    /// What the simulated SFU sends, and the default when none is named.
    #[default]
    H264,
    Vp8,
    /// Any other codec, by its name: the box cannot decode it.
    #[serde(untagged)]
    Other(Text<16>),
}

/// A video format the box depacketizes and decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFormat {
    /// RFC 6184, packetization mode 1; openh264.
    H264,
    /// RFC 7741; libvpx.
    Vp8,
}

impl Codec {
    /// The codec of an SDP name, in any case.
    pub(crate) fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "h264" => Codec::H264,
            "vp8" => Codec::Vp8,
            other => Codec::Other(text(other)),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Codec::H264 => "h264",
            Codec::Vp8 => "vp8",
            Codec::Other(name) => name,
        }
    }

    /// How the box decodes it; `None` when it cannot.
    pub(crate) fn format(&self) -> Option<VideoFormat> {
        match self {
            Codec::H264 => Some(VideoFormat::H264),
            Codec::Vp8 => Some(VideoFormat::Vp8),
            Codec::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_h264_and_vp8_decode() {
        for (name, codec) in [
            ("H264", Codec::H264),
            ("vp8", Codec::Vp8),
            ("VP9", Codec::Other(text("vp9"))),
        ] {
            assert_eq!(Codec::from_name(name), codec);
            let json = serde_json::to_string(&codec).unwrap();
            assert_eq!(json, format!("\"{}\"", name.to_ascii_lowercase()));
            assert_eq!(serde_json::from_str::<Codec>(&json).unwrap(), codec);
        }
        assert_eq!(Codec::Vp8.format(), Some(VideoFormat::Vp8));
        assert_eq!(Codec::from_name("av1").format(), None);
        assert_eq!(Codec::from_name("av1").name(), "av1");
    }
}
