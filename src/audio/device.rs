//! What the box's audio threads play to and capture from: the traits behind which
//! ALSA ([`super::alsa`]) and the simulated devices of the tests sit.

use std::time::Duration;

use super::convert::PcmFormat;
use super::DeviceError;

/// Where chimes are played.
pub trait Speaker: Send {
    /// The device, for logs.
    fn name(&self) -> &str;
    /// Plays 48 kHz mono samples to the end.
    fn play(&mut self, pcm: &[i16]) -> Result<(), DeviceError>;
}

/// Where captured audio comes from.
pub trait CaptureDevice: Send {
    /// The device, for logs.
    fn name(&self) -> &str;
    /// What [`read`](Self::read) gives: interleaved i16 at this rate and channel count.
    fn format(&self) -> PcmFormat;
    /// Waits up to `timeout` for captured audio and returns what there is, possibly
    /// nothing.
    fn read(&mut self, timeout: Duration) -> Result<Vec<i16>, DeviceError>;
}
