//! A moving test pattern encoded to H.264 by openh264: a solid background in the
//! participant's colour with a white square that sweeps across it.

use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video size {width}x{height} must be even and non-zero")]
    BadSize { width: u16, height: u16 },
    #[error("frame rate must be 1..=120, got {0}")]
    BadRate(u16),
    #[error("H.264 encoder: {0}")]
    Encoder(#[from] openh264::Error),
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
        }
    }
}

impl PatternSpec {
    /// Checks what the encoder would refuse, without making one.
    pub fn validate(&self) -> Result<(), VideoError> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 {
            return Err(VideoError::BadSize {
                width: w,
                height: h,
            });
        }
        if !(1..=120).contains(&self.fps) {
            return Err(VideoError::BadRate(self.fps));
        }
        Ok(())
    }
}

/// One encoded access unit in Annex B form.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Presentation time in 90 kHz units since the first frame.
    pub pts: i64,
}

pub struct PatternSource {
    spec: PatternSpec,
    encoder: Encoder,
    frame_no: u64,
    yuv: [u8; 3],
    planes: Vec<u8>,
}

impl PatternSource {
    pub fn new(spec: PatternSpec) -> Result<Self, VideoError> {
        spec.validate()?;
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(spec.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(f32::from(spec.fps)))
            .rate_control_mode(RateControlMode::Bufferbased)
            // Every input frame must come out: the recorder counts them.
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(spec.gop.max(1)));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        let (w, h) = (usize::from(spec.width), usize::from(spec.height));
        Ok(Self {
            spec,
            encoder,
            frame_no: 0,
            yuv: rgb_to_yuv(spec.rgb),
            planes: vec![0; w * h * 3 / 2],
        })
    }

    pub fn spec(&self) -> &PatternSpec {
        &self.spec
    }

    /// Makes the next frame a keyframe (answer to a keyframe request).
    pub fn force_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Encodes the next frame of the pattern.
    pub fn next_frame(&mut self) -> Result<EncodedFrame, VideoError> {
        self.draw();
        let (w, h) = (usize::from(self.spec.width), usize::from(self.spec.height));
        let (y, uv) = self.planes.split_at(w * h);
        let (u, v) = uv.split_at(w * h / 4);
        let src = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let stream = self.encoder.encode(&src)?;
        let keyframe = matches!(stream.frame_type(), openh264::encoder::FrameType::IDR);
        let data = stream.to_vec();
        let pts = (self.frame_no * 90_000 / u64::from(self.spec.fps)) as i64;
        self.frame_no += 1;
        Ok(EncodedFrame {
            data,
            keyframe,
            pts,
        })
    }

    /// Background in the participant's colour; a white square sweeping left to right
    /// once every two seconds, so motion is visible and the encoder has real work.
    fn draw(&mut self) {
        let (w, h) = (usize::from(self.spec.width), usize::from(self.spec.height));
        let [yc, uc, vc] = self.yuv;
        let (y, uv) = self.planes.split_at_mut(w * h);
        y.fill(yc);
        let (u, v) = uv.split_at_mut(w * h / 4);
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
    fn odd_size_is_refused() {
        let spec = PatternSpec {
            width: 321,
            ..PatternSpec::default()
        };
        assert!(matches!(
            PatternSource::new(spec),
            Err(VideoError::BadSize { .. })
        ));
    }
}
