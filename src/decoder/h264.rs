//! H.264 decoding of one participant's video with openh264, one Annex B access unit
//! at a time, into [`Picture`]s.
//!
//! After any error the decoder waits for a keyframe: a picture predicted from a lost
//! or corrupt reference would only show garbage. Until an access unit with an IDR
//! slice arrives, others are refused with [`H264DecodeError::AwaitingKeyframe`];
//! every error therefore means "request a keyframe" to the caller.

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use thiserror::Error;

use crate::media::h264::{is_annex_b, nal_type, nal_units, NAL_IDR};
use crate::media::picture::{Picture, PictureError};

#[derive(Debug, Error)]
pub enum H264DecodeError {
    #[error("H.264 decoder could not be created: {0}")]
    Create(#[source] openh264::Error),
    #[error("access unit is not Annex B; wait for the next keyframe")]
    NotAnnexB,
    #[error("corrupt access unit, wait for the next keyframe: {0}")]
    Corrupt(#[source] openh264::Error),
    #[error("decoded picture is unusable, wait for the next keyframe: {0}")]
    BadPicture(#[from] PictureError),
    #[error("waiting for a keyframe after an error or before the first one")]
    AwaitingKeyframe,
}

/// Pictures given back and kept for the next decodes.
const MAX_SPARE: usize = 4;

pub struct H264Decoder {
    decoder: Decoder,
    awaiting_keyframe: bool,
    /// Size of the last picture, to notice and log resolution changes.
    size: Option<(usize, usize)>,
    /// Pictures done with, whose buffers the next pictures are decoded into.
    spare: Vec<Picture>,
}

impl H264Decoder {
    pub fn new() -> Result<Self, H264DecodeError> {
        Ok(Self {
            decoder: Decoder::new().map_err(H264DecodeError::Create)?,
            // A stream joined mid-GOP cannot be decoded before its next keyframe.
            awaiting_keyframe: true,
            size: None,
            spare: Vec::new(),
        })
    }

    /// Gives back a picture this decoder made, once it is no longer shown: the
    /// next picture reuses its memory instead of allocating.
    pub fn recycle(&mut self, picture: Picture) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(picture);
        }
    }

    #[cfg(test)]
    /// True until an access unit with an IDR slice has been decoded after the start
    /// or the last error.
    pub fn awaiting_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    #[cfg(test)]
    /// Size of the last decoded picture.
    pub fn size(&self) -> Option<(usize, usize)> {
        self.size
    }

    /// Decodes one access unit. `Ok(None)` when it gave no picture (e.g. parameter
    /// sets only). On error, ask the sender for a keyframe.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<Picture>, H264DecodeError> {
        let result = self.decode_unit(access_unit);
        if let Err(e) = &result {
            if !self.awaiting_keyframe {
                tracing::debug!(error = %e, "H.264 decoding stopped until the next keyframe");
            }
            self.awaiting_keyframe = true;
        }
        result
    }

    fn decode_unit(&mut self, au: &[u8]) -> Result<Option<Picture>, H264DecodeError> {
        if !is_annex_b(au) {
            return Err(H264DecodeError::NotAnnexB);
        }
        let keyframe = nal_units(au).any(|nal| nal_type(nal) == NAL_IDR);
        if self.awaiting_keyframe && !keyframe {
            return Err(H264DecodeError::AwaitingKeyframe);
        }
        let Some(yuv) = self.decoder.decode(au).map_err(H264DecodeError::Corrupt)? else {
            return Ok(None);
        };
        // I420 needs even sizes; a cropped odd size loses its last row or column.
        let (width, height) = yuv.dimensions();
        let (width, height) = (width & !1, height & !1);
        let planes = (yuv.y(), yuv.u(), yuv.v());
        let picture = match self.spare.pop() {
            Some(mut p) => p
                .copy_strided(width, height, planes, yuv.strides())
                .map(|()| p)?,
            None => Picture::from_strided(width, height, planes, yuv.strides())?,
        };
        if keyframe {
            self.awaiting_keyframe = false;
        }
        if self.size != Some((width, height)) {
            tracing::debug!(width, height, "H.264 picture size");
            self.size = Some((width, height));
        }
        Ok(Some(picture))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::EncodedVideo;
    use crate::synth::video::rgb_to_yuv;
    use crate::synth::{PatternSource, PatternSpec, PALETTE};

    fn encode(spec: PatternSpec, frames: usize) -> Vec<EncodedVideo> {
        let mut source = PatternSource::new(spec).unwrap();
        (0..frames).map(|_| source.next_frame().unwrap()).collect()
    }

    fn assert_near(got: [u8; 3], want: [u8; 3]) {
        let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 6);
        assert!(close, "{got:?} is not near {want:?}");
    }

    #[test]
    fn pattern_round_trips_in_colour_and_size() {
        let spec = PatternSpec {
            width: 320,
            height: 180,
            rgb: PALETTE[3],
            ..PatternSpec::default()
        };
        let mut decoder = H264Decoder::new().unwrap();
        for frame in encode(spec, 5) {
            let picture = decoder.decode(&frame.data).unwrap().unwrap();
            assert_eq!((picture.width(), picture.height()), (320, 180));
            // Away from the white square, which sweeps along the middle.
            assert_near(picture.pixel(8, 8), rgb_to_yuv(PALETTE[3]));
            assert_near(picture.pixel(300, 170), rgb_to_yuv(PALETTE[3]));
        }
        assert_eq!(decoder.size(), Some((320, 180)));
        assert!(!decoder.awaiting_keyframe());
    }

    #[test]
    fn recycled_pictures_are_decoded_into() {
        let spec = PatternSpec {
            width: 160,
            height: 120,
            rgb: PALETTE[2],
            ..PatternSpec::default()
        };
        let frames = encode(spec, 3);
        let mut decoder = H264Decoder::new().unwrap();
        let first = decoder.decode(&frames[0].data).unwrap().unwrap();
        let buffer = first.y().as_ptr();
        decoder.recycle(first);
        let second = decoder.decode(&frames[1].data).unwrap().unwrap();
        assert_eq!(second.y().as_ptr(), buffer, "the recycled buffer is used");
        assert_eq!((second.width(), second.height()), (160, 120));
        assert_near(second.pixel(4, 4), rgb_to_yuv(PALETTE[2]));
        // A recycled picture of another size is made to fit.
        decoder.recycle(Picture::filled(64, 64, [0; 3]).unwrap());
        let third = decoder.decode(&frames[2].data).unwrap().unwrap();
        assert_eq!((third.width(), third.height()), (160, 120));
        assert_near(third.pixel(150, 110), rgb_to_yuv(PALETTE[2]));
    }

    #[test]
    fn resolution_change_at_a_keyframe() {
        let small = PatternSpec {
            width: 160,
            height: 120,
            ..PatternSpec::default()
        };
        let large = PatternSpec {
            width: 352,
            height: 288,
            rgb: PALETTE[5],
            ..PatternSpec::default()
        };
        let mut decoder = H264Decoder::new().unwrap();
        for (spec, frames) in [(small, encode(small, 3)), (large, encode(large, 3))] {
            for frame in frames {
                let picture = decoder.decode(&frame.data).unwrap().unwrap();
                let size = (usize::from(spec.width), usize::from(spec.height));
                assert_eq!((picture.width(), picture.height()), size);
                assert_near(picture.pixel(4, 4), rgb_to_yuv(spec.rgb));
            }
        }
    }

    #[test]
    fn corrupt_input_waits_for_the_next_keyframe() {
        let frames = encode(
            PatternSpec {
                gop: 4,
                ..PatternSpec::default()
            },
            6,
        );
        let mut decoder = H264Decoder::new().unwrap();
        // Joined mid-GOP: nothing decodes before a keyframe.
        assert!(matches!(
            decoder.decode(&frames[1].data),
            Err(H264DecodeError::AwaitingKeyframe)
        ));
        assert!(decoder.decode(&frames[0].data).unwrap().is_some());
        assert!(matches!(
            decoder.decode(b"not h264"),
            Err(H264DecodeError::NotAnnexB)
        ));
        assert!(decoder.awaiting_keyframe());
        assert!(matches!(
            decoder.decode(&frames[1].data),
            Err(H264DecodeError::AwaitingKeyframe)
        ));
        assert!(decoder.decode(&frames[4].data).unwrap().is_some());
        assert!(decoder.decode(&frames[5].data).unwrap().is_some());
    }

    #[test]
    fn garbage_never_panics() {
        let frames = encode(PatternSpec::default(), 2);
        let mut decoder = H264Decoder::new().unwrap();
        decoder.decode(&frames[0].data).unwrap();
        // Flipped bytes in a real keyframe, and noise behind a start code with an IDR
        // header: errors or pictures, never a panic.
        let mut seed = 1u64;
        for round in 0..40 {
            let mut au = frames[0].data.clone();
            for _ in 0..8 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = 5 + (seed >> 33) as usize % (au.len() - 5);
                au[i] ^= (seed >> 20) as u8 | 1;
            }
            if round % 2 == 1 {
                au = [&[0, 0, 0, 1, 0x65][..], &crate::synth::filler(seed, 200)].concat();
            }
            let _ = decoder.decode(&au);
        }
        // And it recovers at a clean keyframe.
        assert!(decoder.decode(&frames[0].data).unwrap().is_some());
    }
}
