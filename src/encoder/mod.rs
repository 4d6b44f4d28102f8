//! H.264 encoders behind one trait: openh264 in software (the host default) and
//! the box's V4L2 memory-to-memory hardware encoder, chosen by configuration with
//! a logged fallback to software when the hardware cannot be used.

#[cfg(feature = "lab")]
pub mod null;
pub mod software;
#[cfg(any(feature = "v4l2", test))]
pub(crate) mod v4l2;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::media::picture::Picture;

pub(crate) use software::SoftwareEncoder;
#[cfg(any(feature = "v4l2", test))]
pub use v4l2::HardwareError;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("encoder configuration: {0}")]
    BadConfig(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("picture is {got_width}x{got_height}, the encoder was opened for {width}x{height}")]
    PictureSize {
        width: u32,
        height: u32,
        got_width: usize,
        got_height: usize,
    },
    #[error("openh264: {0}")]
    Software(#[from] openh264::Error),
    #[cfg(any(feature = "v4l2", test))]
    #[error("V4L2 encoder: {0}")]
    V4l2(#[from] HardwareError),
}

/// One encoded access unit in Annex B form; keyframes carry SPS and PPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideo {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// The presentation time given with the picture (90 kHz units by convention).
    pub pts: i64,
}

/// Which encoder [`open`] should use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EncoderKind {
    /// The hardware encoder when there is a usable one, else software.
    #[default]
    Auto,
    Software,
    /// The V4L2 encoder at `device`, or the first usable one; software if none works
    /// (with a warning, since it was asked for).
    V4l2 {
        device: Option<PathBuf>,
    },
    /// No encoding at all (the lab's stand-in for a hardware encoder, to measure
    /// what the CPU pays for the rest): see [`null`].
    #[cfg(feature = "lab")]
    Null,
}

impl FromStr for EncoderKind {
    type Err = EncoderError;

    /// `auto`, `software`, `v4l2` or `v4l2:/dev/videoN`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "software" => Ok(Self::Software),
            "v4l2" => Ok(Self::V4l2 { device: None }),
            #[cfg(feature = "lab")]
            "none" => Ok(Self::Null),
            _ => match s.strip_prefix("v4l2:") {
                Some(path) if !path.is_empty() => Ok(Self::V4l2 {
                    device: Some(PathBuf::from(path)),
                }),
                _ => Err(EncoderError::BadConfig(format!(
                    "unknown encoder {s:?} (auto, software, v4l2 or v4l2:/dev/videoN)"
                ))),
            },
        }
    }
}

impl fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Software => f.write_str("software"),
            Self::V4l2 { device: None } => f.write_str("v4l2"),
            Self::V4l2 { device: Some(p) } => write!(f, "v4l2:{}", p.display()),
            #[cfg(feature = "lab")]
            Self::Null => f.write_str("none"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: u32,
    pub(crate) bitrate_bps: u32,
    /// Frames from one keyframe to the next: the recorder cuts one fragment per GOP,
    /// so this is the fragment duration in frames.
    pub(crate) gop_frames: u32,
    pub(crate) kind: EncoderKind,
}

impl EncoderConfig {
    /// Refuses what no encoder can do, before any is opened.
    pub(crate) fn validate(&self) -> Result<(), EncoderError> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 {
            return Err(EncoderError::BadConfig(format!(
                "size {w}x{h} must be even and non-zero"
            )));
        }
        if !(1..=120).contains(&self.fps) {
            return Err(EncoderError::BadConfig(format!(
                "frame rate must be 1..=120, got {}",
                self.fps
            )));
        }
        if self.bitrate_bps == 0 || self.gop_frames == 0 {
            return Err(EncoderError::BadConfig(
                "bitrate and GOP length must be non-zero".into(),
            ));
        }
        Ok(())
    }

    fn check_picture(&self, picture: &Picture) -> Result<(), EncoderError> {
        if (picture.width(), picture.height()) != (self.width as usize, self.height as usize) {
            return Err(EncoderError::PictureSize {
                width: self.width,
                height: self.height,
                got_width: picture.width(),
                got_height: picture.height(),
            });
        }
        Ok(())
    }
}

/// An H.264 encoder. Hardware pipelines hold frames for a while, so `encode` gives
/// back whatever has come out so far (possibly nothing, possibly earlier frames) in
/// order, and `flush` everything still inside.
pub trait VideoEncoder: Send {
    /// What is encoding, for logs.
    fn name(&self) -> &str;

    /// Takes one picture of the configured size; `force_keyframe` makes it an IDR
    /// (answer to a keyframe request).
    fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<Vec<EncodedVideo>, EncoderError>;

    /// Everything given to `encode` that has not come out yet. The encoder takes
    /// further pictures afterwards.
    fn flush(&mut self) -> Result<Vec<EncodedVideo>, EncoderError>;
}

/// Opens the configured encoder. A hardware encoder that cannot be used is not an
/// error: the software one takes over and the reason is logged (as a warning when
/// V4L2 was asked for explicitly).
pub(crate) fn open(config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, EncoderError> {
    config.validate()?;
    let device = match &config.kind {
        EncoderKind::Software => return software_encoder(config),
        #[cfg(feature = "lab")]
        EncoderKind::Null => return Ok(Box::new(null::NullEncoder::new(config)?)),
        EncoderKind::Auto => None,
        EncoderKind::V4l2 { device } => device.as_deref(),
    };
    match hardware_encoder(config, device) {
        Ok(encoder) => {
            tracing::info!(encoder = encoder.name(), "hardware H.264 encoder");
            Ok(encoder)
        }
        Err(reason) => {
            if config.kind == EncoderKind::Auto {
                tracing::info!(%reason, "no hardware H.264 encoder, using software");
            } else {
                tracing::warn!(kind = %config.kind, %reason, "V4L2 encoder unusable, falling back to software");
            }
            software_encoder(config)
        }
    }
}

#[cfg(feature = "v4l2")]
fn hardware_encoder(
    config: &EncoderConfig,
    device: Option<&std::path::Path>,
) -> Result<Box<dyn VideoEncoder>, EncoderError> {
    v4l2::open(config, device)
}

/// Without the `v4l2` feature there is no device layer.
#[cfg(not(feature = "v4l2"))]
fn hardware_encoder(
    _config: &EncoderConfig,
    _device: Option<&std::path::Path>,
) -> Result<Box<dyn VideoEncoder>, EncoderError> {
    Err(EncoderError::Unsupported(
        "built without the v4l2 feature".into(),
    ))
}

fn software_encoder(config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, EncoderError> {
    Ok(Box::new(SoftwareEncoder::new(config)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::logged;

    #[test]
    fn kinds_parse_and_print() {
        for (text, kind) in [
            ("auto", EncoderKind::Auto),
            ("software", EncoderKind::Software),
            ("v4l2", EncoderKind::V4l2 { device: None }),
            (
                "v4l2:/dev/video11",
                EncoderKind::V4l2 {
                    device: Some("/dev/video11".into()),
                },
            ),
        ] {
            assert_eq!(text.parse::<EncoderKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), text);
        }
        #[cfg(feature = "lab")]
        assert_eq!("none".parse::<EncoderKind>().unwrap(), EncoderKind::Null);
        for bad in ["", "v4l2:", "hardware", "V4L2"] {
            assert!(bad.parse::<EncoderKind>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let good = config(EncoderKind::Software);
        assert!(good.validate().is_ok());
        for bad in [
            EncoderConfig {
                width: 321,
                ..good.clone()
            },
            EncoderConfig {
                fps: 0,
                ..good.clone()
            },
            EncoderConfig {
                gop_frames: 0,
                ..good.clone()
            },
        ] {
            assert!(matches!(open(&bad), Err(EncoderError::BadConfig(_))));
        }
    }

    fn config(kind: EncoderKind) -> EncoderConfig {
        EncoderConfig {
            kind,
            ..software::check::config(30)
        }
    }

    #[test]
    fn explicit_v4l2_without_a_device_falls_back_to_software_with_a_warning() {
        let kind = EncoderKind::V4l2 {
            device: Some("/nonexistent/video99".into()),
        };
        let (encoder, log) = logged(|| open(&config(kind)).unwrap());
        assert_eq!(encoder.name(), software::NAME);
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("falling back to software"), "{log}");
        // The reason says what went wrong: the missing feature, or the missing device.
        let reason = if cfg!(feature = "v4l2") {
            "/nonexistent/video99"
        } else {
            "built without the v4l2 feature"
        };
        assert!(log.contains(reason), "{log}");
    }

    #[test]
    fn auto_falls_back_quietly_and_software_is_software() {
        // Hosts running the tests have no H.264 m2m encoder.
        let (encoder, log) = logged(|| open(&config(EncoderKind::Auto)).unwrap());
        assert_eq!(encoder.name(), software::NAME);
        assert!(log.contains("INFO") && !log.contains("WARN"), "{log}");
        let encoder = open(&config(EncoderKind::Software)).unwrap();
        assert_eq!(encoder.name(), software::NAME);
    }
}
