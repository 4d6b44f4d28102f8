//! Local audio on the box: a chime on its speaker when a recording starts, stops or
//! meets a fault, and the room microphone as one more input of the mix.
//!
//! What decides and computes is plain code built everywhere: the chimes ([`chime`]),
//! when to play them ([`cue`]), sample conversion ([`convert`]), and captured audio
//! cut into the mixer's 20 ms frames ([`capture::FrameAssembler`]). Playing and
//! capturing run on threads of their own behind traits ([`device::Speaker`],
//! [`device::CaptureDevice`]); the ALSA devices (`alsa`) need the cargo feature
//! `alsa`, which links libasound. A sound card that is missing or fails is logged and
//! the box carries on without it, as it does when built without the feature.

#[cfg(feature = "alsa")]
pub mod alsa;
pub(crate) mod capture;
pub mod chime;
pub mod convert;
pub(crate) mod cue;
pub(crate) mod device;
pub mod playback;

use std::time::Duration;

use thiserror::Error;

pub use capture::{Capturing, Microphone};
pub use chime::Chime;
pub(crate) use cue::ChimeCues;
pub use device::{CaptureDevice, Speaker};
pub use playback::ChimePlayer;

/// The ALSA device the box plays its chimes on unless configured otherwise.
pub const DEFAULT_SPEAKER: &str = "default";

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("built without the alsa feature")]
    NoAlsa,
    #[cfg(feature = "alsa")]
    #[error("ALSA device {device:?}: {op}: {source}")]
    Alsa {
        device: String,
        op: &'static str,
        source: ::alsa::Error,
    },
    #[error("{0:?} is not an ALSA device name")]
    BadName(String),
    #[error(
        "ALSA device {0:?} offers none of the sample formats recbox converts (S16, S32, FLOAT)"
    )]
    NoSampleFormat(String),
    #[error("ALSA device {device:?} did not take or give audio for {waited:?}")]
    Stalled { device: String, waited: Duration },
    #[error("simulated device: {0}")]
    Simulated(String),
}

/// Opens the ALSA capture device `device` (the room microphone).
fn open_capture(device: &str) -> Result<Box<dyn CaptureDevice>, DeviceError> {
    #[cfg(feature = "alsa")]
    return Ok(Box::new(alsa::AlsaCapture::open(device)?));
    #[cfg(not(feature = "alsa"))]
    {
        let _ = device;
        Err(DeviceError::NoAlsa)
    }
}

/// Opens the ALSA playback device `device` (the chime speaker).
fn open_speaker(device: &str) -> Result<Box<dyn Speaker>, DeviceError> {
    #[cfg(feature = "alsa")]
    return Ok(Box::new(alsa::AlsaSpeaker::open(device)?));
    #[cfg(not(feature = "alsa"))]
    {
        let _ = device;
        Err(DeviceError::NoAlsa)
    }
}
