//! A moving test pattern encoded to H.264 by openh264, or to VP8 or VP9 by libvpx:
//! a solid background in the participant's colour with a white square that sweeps
//! across it.

use thiserror::Error;

use super::vpx::{VpxCodec, VpxConfig, VpxEncoder, VpxError};
use crate::encoder::{EncodedVideo, EncoderConfig, EncoderError, EncoderKind, SoftwareEncoder};
use crate::media::codec::Codec;
use crate::media::picture::Picture;

/// The codec a synthetic participant's video is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatternCodec {
    /// openh264, packetization mode 1 on RTP.
    #[default]
    H264,
    /// libvpx: what browsers send by default.
    Vp8,
    /// libvpx: a codec the box does not decode, to see what it does with one.
    Vp9,
}

impl PatternCodec {
    /// The codec as an SFU names it.
    pub(crate) fn codec(self) -> Codec {
        match self {
            PatternCodec::H264 => Codec::H264,
            PatternCodec::Vp8 => Codec::Vp8,
            PatternCodec::Vp9 => Codec::from_name("vp9"),
        }
    }
}

#[derive(Debug, Error)]
pub enum PatternError {
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Vpx(#[from] VpxError),
}

#[derive(Debug, Clone, Copy)]
pub struct PatternSpec {
    pub width: u16,
    pub height: u16,
    pub fps: u16,
    /// Frames between keyframes.
    pub gop: u32,
    pub bitrate_bps: u32,
    /// Background colour (R, G, B).
    pub rgb: [u8; 3],
    pub codec: PatternCodec,
}

impl Default for PatternSpec {
    fn default() -> Self {
        Self {
            width: 320,
            height: 240,
            fps: 30,
            gop: 60,
            bitrate_bps: 500_000,
            rgb: super::PALETTE[0],
            codec: PatternCodec::H264,
        }
    }
}

impl PatternSpec {
    /// The software encoder's settings for this pattern.
    fn encoder_config(&self) -> EncoderConfig {
        EncoderConfig {
            width: u32::from(self.width),
            height: u32::from(self.height),
            fps: u32::from(self.fps),
            bitrate_bps: self.bitrate_bps,
            gop_frames: self.gop.max(1),
            kind: EncoderKind::Software,
        }
    }

    /// Checks what the encoder would refuse, without making one.
    pub(crate) fn validate(&self) -> Result<(), PatternError> {
        Ok(self.encoder_config().validate()?)
    }
}

/// The encoder of a pattern, of its codec.
enum PatternEncoder {
    /// Boxed: openh264's state is kilobytes, libvpx's a pointer.
    H264(Box<SoftwareEncoder>),
    Vpx(VpxEncoder),
}

pub struct PatternSource {
    spec: PatternSpec,
    encoder: PatternEncoder,
    frame_no: u64,
    yuv: [u8; 3],
    picture: Picture,
    force_keyframe: bool,
}

impl PatternSource {
    pub fn new(spec: PatternSpec) -> Result<Self, PatternError> {
        let config = spec.encoder_config();
        config.validate()?;
        let vpx = |codec| VpxConfig {
            codec,
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            bitrate_bps: spec.bitrate_bps,
        };
        let encoder = match spec.codec {
            PatternCodec::H264 => PatternEncoder::H264(Box::new(SoftwareEncoder::new(&config)?)),
            PatternCodec::Vp8 => PatternEncoder::Vpx(VpxEncoder::new(vpx(VpxCodec::Vp8))?),
            PatternCodec::Vp9 => PatternEncoder::Vpx(VpxEncoder::new(vpx(VpxCodec::Vp9))?),
        };
        let (w, h) = (usize::from(spec.width), usize::from(spec.height));
        let yuv = rgb_to_yuv(spec.rgb);
        Ok(Self {
            spec,
            encoder,
            frame_no: 0,
            yuv,
            picture: Picture::filled(w, h, yuv).expect("size checked by the encoder"),
            force_keyframe: false,
        })
    }

    /// Makes the next frame a keyframe (answer to a keyframe request).
    pub fn force_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Encodes the next frame of the pattern; `pts` in 90 kHz units since the first.
    pub fn next_frame(&mut self) -> Result<EncodedVideo, PatternError> {
        self.next_frame_with(|_, _| {})
    }

    /// Like [`next_frame`](Self::next_frame), with `overlay` drawn over the pattern
    /// first; it gets the frame number (from 0) and the picture.
    pub(crate) fn next_frame_with(
        &mut self,
        overlay: impl FnOnce(u64, &mut Picture),
    ) -> Result<EncodedVideo, PatternError> {
        self.draw();
        overlay(self.frame_no, &mut self.picture);
        let pts = (self.frame_no * 90_000 / u64::from(self.spec.fps)) as i64;
        let force = std::mem::take(&mut self.force_keyframe);
        let frame = match &mut self.encoder {
            PatternEncoder::H264(e) => e.encode_now(&self.picture, pts, force)?,
            PatternEncoder::Vpx(e) => {
                // libvpx places no keyframes itself: every GOP's first is asked for.
                let due = self.frame_no % u64::from(self.spec.gop.max(1)) == 0;
                e.encode(&self.picture, pts, force || due)?
            }
        };
        self.frame_no += 1;
        Ok(frame)
    }

    /// Background in the participant's colour; a white square sweeping left to right
    /// once every two seconds, so motion is visible and the encoder has real work.
    fn draw(&mut self) {
        let (w, h) = (usize::from(self.spec.width), usize::from(self.spec.height));
        let [yc, uc, vc] = self.yuv;
        let (y, u, v) = self.picture.planes_mut();
        y.fill(yc);
        u.fill(uc);
        v.fill(vc);
        let side = (h / 6).max(2) & !1;
        let period = u64::from(self.spec.fps) * 2;
        let x0 = (((self.frame_no % period) as usize * (w - side)) / period as usize) & !1;
        let y0 = ((h - side) / 2) & !1;
        for row in y0..y0 + side {
            y[row * w + x0..row * w + x0 + side].fill(235);
        }
        for row in y0 / 2..(y0 + side) / 2 {
            u[row * w / 2 + x0 / 2..row * w / 2 + (x0 + side) / 2].fill(128);
            v[row * w / 2 + x0 / 2..row * w / 2 + (x0 + side) / 2].fill(128);
        }
    }
}

/// BT.601 limited-range conversion, as decoders assume for untagged H.264.
pub fn rgb_to_yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
    let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
    let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
    [y.round() as u8, u.round() as u8, v.round() as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_is_keyframe_and_gop_is_respected() {
        let mut src = PatternSource::new(PatternSpec {
            gop: 5,
            ..PatternSpec::default()
        })
        .unwrap();
        let frames: Vec<_> = (0..11).map(|_| src.next_frame().unwrap()).collect();
        let keys: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.keyframe)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(keys, vec![0, 5, 10]);
        assert!(frames.iter().all(|f| f.data.starts_with(&[0, 0, 0, 1])));
        assert_eq!(frames[3].pts, 3 * 3000);
    }

    #[test]
    fn forced_keyframe() {
        let mut src = PatternSource::new(PatternSpec::default()).unwrap();
        src.next_frame().unwrap();
        assert!(!src.next_frame().unwrap().keyframe);
        src.force_keyframe();
        assert!(src.next_frame().unwrap().keyframe);
    }

    #[test]
    fn vp8_and_vp9_patterns_keep_the_gop_and_answer_keyframe_requests() {
        for codec in [PatternCodec::Vp8, PatternCodec::Vp9] {
            let mut src = PatternSource::new(PatternSpec {
                width: 160,
                height: 120,
                gop: 4,
                codec,
                ..PatternSpec::default()
            })
            .unwrap();
            let mut keys = Vec::new();
            for i in 0..10 {
                if i == 6 {
                    src.force_keyframe();
                }
                let f = src.next_frame().unwrap();
                assert_eq!(f.pts, i * 3000);
                if f.keyframe {
                    keys.push(i);
                }
            }
            assert_eq!(keys, [0, 4, 6, 8], "{codec:?}");
        }
    }

    #[test]
    fn odd_size_is_refused() {
        let spec = PatternSpec {
            width: 321,
            ..PatternSpec::default()
        };
        assert!(matches!(
            PatternSource::new(spec),
            Err(PatternError::Encoder(EncoderError::BadConfig(_)))
        ));
        let vp8 = PatternSpec {
            codec: PatternCodec::Vp8,
            ..spec
        };
        assert!(matches!(
            PatternSource::new(vp8),
            Err(PatternError::Encoder(EncoderError::BadConfig(_)))
        ));
    }
}
