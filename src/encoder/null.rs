//! An encoder that does no work per picture, for the lab: it stands in for the
//! box's hardware encoder when measuring what the CPU pays for everything else
//! (receiving, decoding, mixing, compositing, recording).
//!
//! The media link and the recorder still need a valid H.264 stream, so at open one
//! group of pictures of a plain black picture is encoded once with openh264; every
//! picture given afterwards is checked for its size and answered with a copy of the
//! next access unit of that group (an IDR when a keyframe is asked for or the group
//! is over). The recording shows a black picture.

use super::{EncodedVideo, EncoderConfig, EncoderError, SoftwareEncoder, VideoEncoder};
use crate::media::picture::Picture;

/// The name the null encoder reports.
const NAME: &str = "none (no encoding)";

/// Black in BT.601 limited range.
const BLACK: [u8; 3] = [16, 128, 128];

pub(crate) struct NullEncoder {
    config: EncoderConfig,
    /// One group of pictures, the IDR first.
    gop: Vec<Vec<u8>>,
    /// The access unit the next picture gets.
    next: usize,
}

impl NullEncoder {
    pub(crate) fn new(config: &EncoderConfig) -> Result<Self, EncoderError> {
        config.validate()?;
        let mut software = SoftwareEncoder::new(config)?;
        let black = Picture::filled(config.width as usize, config.height as usize, BLACK)
            .map_err(|e| EncoderError::BadConfig(e.to_string()))?;
        let gop = (0..config.gop_frames)
            .map(|n| {
                software
                    .encode_now(&black, 0, n == 0)
                    .map(|encoded| encoded.data)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config: config.clone(),
            gop,
            next: 0,
        })
    }
}

impl VideoEncoder for NullEncoder {
    fn name(&self) -> &str {
        NAME
    }

    fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<Vec<EncodedVideo>, EncoderError> {
        self.config.check_picture(picture)?;
        if force_keyframe || self.next == self.gop.len() {
            self.next = 0;
        }
        let data = self.gop[self.next].clone();
        let keyframe = self.next == 0;
        self.next += 1;
        Ok(vec![EncodedVideo {
            data,
            keyframe,
            pts,
        }])
    }

    fn flush(&mut self) -> Result<Vec<EncodedVideo>, EncoderError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::super::software::check::{assert_stream, config, run};
    use super::*;

    #[test]
    fn a_valid_stream_with_keyframes_every_gop_and_on_request() {
        let config = config(10);
        let mut encoder = NullEncoder::new(&config).unwrap();
        let out = run(&mut encoder, &config, 25, &[13]);
        assert_stream(&config, &out, &[0, 10, 13, 23]);
    }

    #[test]
    fn wrong_picture_size_is_refused() {
        let mut encoder = NullEncoder::new(&config(10)).unwrap();
        let pic = Picture::filled(64, 64, [0; 3]).unwrap();
        assert!(matches!(
            encoder.encode(&pic, 0, false),
            Err(EncoderError::PictureSize { got_width: 64, .. })
        ));
    }
}
