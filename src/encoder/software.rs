//! The software H.264 encoder (openh264, compiled from source): the default on
//! hosts and the fallback on the box.

use openh264::encoder::{
    BitRate, Encoder, EncoderConfig as Openh264Config, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

use super::{EncodedVideo, EncoderConfig, EncoderError, VideoEncoder};
use crate::media::picture::Picture;

/// The name software encoders report.
pub(crate) const NAME: &str = "openh264";

pub(crate) struct SoftwareEncoder {
    config: EncoderConfig,
    encoder: Encoder,
}

impl SoftwareEncoder {
    /// An encoder for `config`'s size, rate, bitrate and GOP (its `kind` is ignored).
    pub(crate) fn new(config: &EncoderConfig) -> Result<Self, EncoderError> {
        config.validate()?;
        let settings = Openh264Config::new()
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.fps as f32))
            .rate_control_mode(RateControlMode::Bufferbased)
            // Every input frame must come out: the recorder counts them.
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.gop_frames))
            // Keyframes come when the caller's schedule (fragments) or a request
            // wants them; an IDR of its own on a scene change would begin a group
            // of pictures that begins no fragment, and the detection costs a pass
            // over every picture.
            .scene_change_detect(false);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), settings)?;
        Ok(Self {
            config: config.clone(),
            encoder,
        })
    }

    /// Encodes one picture at once: software has no pipeline latency.
    /// Keyframes are IDRs that begin with SPS and PPS.
    pub(crate) fn encode_now(
        &mut self,
        picture: &Picture,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<EncodedVideo, EncoderError> {
        self.config.check_picture(picture)?;
        if force_keyframe {
            self.encoder.force_intra_frame();
        }
        let (w, h) = (picture.width(), picture.height());
        let src = YUVSlices::new(
            (picture.y(), picture.u(), picture.v()),
            (w, h),
            (w, w / 2, w / 2),
        );
        let stream = self.encoder.encode(&src)?;
        Ok(EncodedVideo {
            keyframe: matches!(stream.frame_type(), FrameType::IDR),
            data: stream.to_vec(),
            pts,
        })
    }
}

impl VideoEncoder for SoftwareEncoder {
    fn name(&self) -> &str {
        NAME
    }

    fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<Vec<EncodedVideo>, EncoderError> {
        Ok(vec![self.encode_now(picture, pts, force_keyframe)?])
    }

    fn flush(&mut self) -> Result<Vec<EncodedVideo>, EncoderError> {
        Ok(Vec::new())
    }
}

/// Checks shared by the tests of every encoder: decodability, keyframes, SPS/PPS.
#[cfg(test)]
pub(crate) mod check {
    use super::*;
    use crate::media::h264::{nal_type, nal_units, parameter_sets, NAL_IDR};
    use openh264::decoder::Decoder;
    use openh264::formats::YUVSource;

    pub fn config(gop: u32) -> EncoderConfig {
        EncoderConfig {
            width: 160,
            height: 96,
            fps: 30,
            bitrate_bps: 300_000,
            gop_frames: gop,
            kind: super::super::EncoderKind::Software,
        }
    }

    /// A picture that differs from frame to frame, so P frames carry data.
    pub fn picture(config: &EncoderConfig, n: usize) -> Picture {
        let (w, h) = (config.width as usize, config.height as usize);
        let mut p = Picture::filled(w, h, [80, 100, 150]).unwrap();
        let (y, _, _) = p.planes_mut();
        for (i, px) in y.iter_mut().enumerate() {
            *px = ((i % w + n * 3) % 200 + 16) as u8 ^ ((i / w) as u8 & 8);
        }
        p
    }

    /// Encodes `frames` pictures, forcing keyframes at the indices in `forced`, and
    /// flushes; returns what came out.
    pub fn run(
        encoder: &mut dyn VideoEncoder,
        config: &EncoderConfig,
        frames: usize,
        forced: &[usize],
    ) -> Vec<EncodedVideo> {
        let mut out = Vec::new();
        for n in 0..frames {
            let pic = picture(config, n);
            out.extend(
                encoder
                    .encode(&pic, n as i64 * 3000, forced.contains(&n))
                    .unwrap(),
            );
        }
        out.extend(encoder.flush().unwrap());
        out
    }

    /// Every frame came out once, in order, decodes at the configured size; keyframes
    /// are IDRs with SPS and PPS, exactly at `keys`.
    pub fn assert_stream(config: &EncoderConfig, out: &[EncodedVideo], keys: &[usize]) {
        let pts: Vec<i64> = out.iter().map(|f| f.pts).collect();
        let want: Vec<i64> = (0..out.len() as i64).map(|n| n * 3000).collect();
        assert_eq!(pts, want, "every frame once, in order");
        let got_keys: Vec<usize> = (0..out.len()).filter(|&i| out[i].keyframe).collect();
        assert_eq!(got_keys, keys);
        let mut decoder = Decoder::new().unwrap();
        for (i, frame) in out.iter().enumerate() {
            let (sps, pps) = parameter_sets(&frame.data);
            let idr = nal_units(&frame.data).any(|n| nal_type(n) == NAL_IDR);
            assert_eq!(idr, frame.keyframe, "frame {i}");
            if frame.keyframe {
                assert!(sps.is_some() && pps.is_some(), "keyframe {i} has SPS/PPS");
            }
            let yuv = decoder
                .decode(&frame.data)
                .unwrap()
                .unwrap_or_else(|| panic!("frame {i} decodes to a picture"));
            assert_eq!(
                yuv.dimensions(),
                (config.width as usize, config.height as usize)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check::*;
    use super::*;

    #[test]
    fn keyframes_every_gop_and_on_request() {
        let config = config(10);
        let mut encoder = SoftwareEncoder::new(&config).unwrap();
        let out = run(&mut encoder, &config, 25, &[13]);
        // A forced IDR starts a new GOP.
        assert_stream(&config, &out, &[0, 10, 13, 23]);
    }

    #[test]
    fn wrong_picture_size_is_refused() {
        let config = config(10);
        let mut encoder = SoftwareEncoder::new(&config).unwrap();
        let pic = Picture::filled(64, 64, [0; 3]).unwrap();
        assert!(matches!(
            encoder.encode(&pic, 0, false),
            Err(EncoderError::PictureSize { got_width: 64, .. })
        ));
    }
}
