//! The box's sound card through alsa-lib (feature `alsa`): the chime speaker and the
//! room microphone.
//!
//! A device is opened non-blocking (a busy card must not hang the box) and set up
//! with what it offers nearest to 48 kHz stereo, in the first of S16, S32 and FLOAT it
//! takes; [`convert`](super::convert) bridges the rest. Waits go through `poll`, so a
//! device that stops moving is noticed instead of blocking a thread forever.

use std::time::{Duration, Instant};

use ::alsa::pcm::{Access, Format, HwParams, IoFormat, State, PCM};
use ::alsa::{Direction, ValueOr};
use tracing::info;

use super::convert::{remix, PcmFormat, Resampler, Sample};
use super::device::{CaptureDevice, Speaker};
use super::DeviceError;
use crate::ingest::depacketize::opus::CLOCK_RATE;

/// Device buffer asked for: room for a busy machine's scheduling delays.
const BUFFER_US: u32 = 200_000;
const PERIOD_US: u32 = 20_000;
/// How long a chime may take beyond its own length before the device counts as stuck.
const PLAY_SLACK: Duration = Duration::from_secs(2);
/// One poll of the device while playing: how often the deadline is checked.
const POLL_MS: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleType {
    S16,
    S32,
    F32,
}

/// The sample formats tried, in order of preference.
const SAMPLE_TYPES: [(SampleType, Format); 3] = [
    (SampleType::S16, Format::s16()),
    (SampleType::S32, Format::s32()),
    (SampleType::F32, Format::float()),
];

/// An open, configured PCM.
struct Stream {
    pcm: PCM,
    device: String,
    format: PcmFormat,
    sample: SampleType,
    /// Frames the device buffers: a read takes up to this many.
    buffer_frames: usize,
}

impl Stream {
    fn open(device: &str, direction: Direction) -> Result<Self, DeviceError> {
        if device.is_empty() || device.contains('\0') {
            return Err(DeviceError::BadName(device.to_owned()));
        }
        let err = |op| {
            move |source| DeviceError::Alsa {
                device: device.to_owned(),
                op,
                source,
            }
        };
        let pcm = PCM::new(device, direction, true).map_err(err("open"))?;
        let (format, sample, buffer_frames) = {
            let hw = HwParams::any(&pcm).map_err(err("hardware parameters"))?;
            hw.set_access(Access::RWInterleaved)
                .map_err(err("interleaved access"))?;
            let (sample, f) = SAMPLE_TYPES
                .into_iter()
                .find(|&(_, f)| hw.test_format(f).is_ok())
                .ok_or_else(|| DeviceError::NoSampleFormat(device.to_owned()))?;
            hw.set_format(f).map_err(err("sample format"))?;
            let channels = hw.set_channels_near(2).map_err(err("channels"))?;
            let rate = hw
                .set_rate_near(CLOCK_RATE, ValueOr::Nearest)
                .map_err(err("rate"))?;
            hw.set_buffer_time_near(BUFFER_US, ValueOr::Nearest)
                .map_err(err("buffer time"))?;
            hw.set_period_time_near(PERIOD_US, ValueOr::Nearest)
                .map_err(err("period time"))?;
            pcm.hw_params(&hw).map_err(err("set hardware parameters"))?;
            let buffer = hw.get_buffer_size().map_err(err("buffer size"))?;
            let format = PcmFormat {
                rate,
                channels: u16::try_from(channels).unwrap_or(u16::MAX),
            };
            (format, sample, usize::try_from(buffer).unwrap_or(1).max(1))
        };
        info!(
            device,
            ?direction,
            rate = format.rate,
            channels = format.channels,
            ?sample,
            buffer_frames,
            "ALSA device open"
        );
        Ok(Self {
            pcm,
            device: device.to_owned(),
            format,
            sample,
            buffer_frames,
        })
    }

    fn error(&self, op: &'static str) -> impl Fn(::alsa::Error) -> DeviceError + '_ {
        move |source| DeviceError::Alsa {
            device: self.device.clone(),
            op,
            source,
        }
    }

    fn stalled(&self, waited: Duration) -> DeviceError {
        DeviceError::Stalled {
            device: self.device.clone(),
            waited,
        }
    }

    /// Writes every sample, then waits until the device has played them.
    fn play<S: Sample + IoFormat>(&self, samples: &[i16]) -> Result<(), DeviceError> {
        let ch = usize::from(self.format.channels.max(1));
        let buf: Vec<S> = samples.iter().map(|&s| S::from_i16(s)).collect();
        let frames = buf.len() / ch;
        let budget =
            Duration::from_secs_f64(frames as f64 / f64::from(self.format.rate)) + PLAY_SLACK;
        let deadline = Instant::now() + budget;
        if self.pcm.state() != State::Prepared {
            self.pcm.prepare().map_err(self.error("prepare"))?;
        }
        {
            let io = self.pcm.io_checked::<S>().map_err(self.error("write"))?;
            let mut done = 0;
            while done < frames {
                if Instant::now() >= deadline {
                    return Err(self.stalled(budget));
                }
                match io.writei(&buf[done * ch..frames * ch]) {
                    Ok(n) => done += n,
                    Err(e) if e.errno() == libc::EAGAIN => {
                        if let Err(e) = self.pcm.wait(Some(POLL_MS)) {
                            self.pcm.try_recover(e, true).map_err(self.error("wait"))?;
                        }
                    }
                    // An underrun (the machine was busy) restarts the stream; anything
                    // else (the card is gone) is an error.
                    Err(e) => self.pcm.try_recover(e, true).map_err(self.error("write"))?,
                }
            }
        }
        match self.pcm.drain() {
            Ok(()) => Ok(()),
            // Non-blocking: draining goes on by itself, until the state says it is done.
            Err(e) if e.errno() == libc::EAGAIN => {
                while self.pcm.state() == State::Draining {
                    if Instant::now() >= deadline {
                        let _ = self.pcm.drop();
                        return Err(self.stalled(budget));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            }
            Err(e) => Err(self.error("drain")(e)),
        }
    }

    /// What the device has captured, up to a buffer's worth, converted to i16. Called
    /// once the device is ready to be read.
    fn read<S: Sample + IoFormat>(&self) -> Result<Vec<i16>, DeviceError> {
        let ch = usize::from(self.format.channels.max(1));
        let io = self.pcm.io_checked::<S>().map_err(self.error("read"))?;
        let mut buf = vec![S::default(); self.buffer_frames * ch];
        match io.readi(&mut buf) {
            Ok(n) => Ok(buf[..n * ch].iter().map(|s| s.to_i16()).collect()),
            Err(e) if e.errno() == libc::EAGAIN => Ok(Vec::new()),
            Err(e) => {
                if e.errno() == libc::EPIPE {
                    info!(device = %self.device, "microphone overrun: captured audio was lost (the machine was busy)");
                }
                self.pcm.try_recover(e, true).map_err(self.error("read"))?;
                Ok(Vec::new())
            }
        }
    }
}

/// The chime speaker: an ALSA playback PCM.
pub struct AlsaSpeaker {
    stream: Stream,
}

impl AlsaSpeaker {
    pub fn open(device: &str) -> Result<Self, DeviceError> {
        Ok(Self {
            stream: Stream::open(device, Direction::Playback)?,
        })
    }

    pub fn format(&self) -> PcmFormat {
        self.stream.format
    }
}

impl Speaker for AlsaSpeaker {
    fn name(&self) -> &str {
        &self.stream.device
    }

    fn play(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        let format = self.stream.format;
        let mut resampler = Resampler::new(CLOCK_RATE, format.rate, 1);
        let mut mono = resampler.push(pcm);
        // A chime ends in silence: one more silent sample lets the last one out.
        mono.extend(resampler.push(&[0]));
        let samples = remix(&mono, 1, format.channels);
        match self.stream.sample {
            SampleType::S16 => self.stream.play::<i16>(&samples),
            SampleType::S32 => self.stream.play::<i32>(&samples),
            SampleType::F32 => self.stream.play::<f32>(&samples),
        }
    }
}

/// The room microphone: an ALSA capture PCM.
pub struct AlsaCapture {
    stream: Stream,
}

impl AlsaCapture {
    pub fn open(device: &str) -> Result<Self, DeviceError> {
        Ok(Self {
            stream: Stream::open(device, Direction::Capture)?,
        })
    }
}

impl CaptureDevice for AlsaCapture {
    fn name(&self) -> &str {
        &self.stream.device
    }

    fn format(&self) -> PcmFormat {
        self.stream.format
    }

    fn read(&mut self, timeout: Duration) -> Result<Vec<i16>, DeviceError> {
        let s = &self.stream;
        if s.pcm.state() == State::Prepared {
            s.pcm.start().map_err(s.error("start"))?;
        }
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        match s.pcm.wait(Some(ms)) {
            Ok(true) => {}
            Ok(false) => return Ok(Vec::new()),
            Err(e) => {
                s.pcm.try_recover(e, true).map_err(s.error("wait"))?;
                return Ok(Vec::new());
            }
        }
        match s.sample {
            SampleType::S16 => s.read::<i16>(),
            SampleType::S32 => s.read::<i32>(),
            SampleType::F32 => s.read::<f32>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{Chime, ChimePlayer, Microphone};
    use crate::test_log::logged;

    #[test]
    fn a_missing_device_is_logged_once_and_not_fatal() {
        for device in ["recbox_no_such_device", "hw:7,0", "plughw:CARD=NoSuchCard"] {
            let (player, log) = logged(|| ChimePlayer::open(device));
            assert!(!player.is_enabled(), "{device}");
            assert!(!player.play(Chime::Fault));
            assert_eq!(log.matches("WARN").count(), 1, "{log}");
            assert!(log.contains("no chimes") && log.contains(device), "{log}");

            // Kept, to be tried again: the microphone may be plugged in later.
            let (microphone, log) = logged(|| Microphone::open(device));
            assert!(microphone.is_some(), "{device}");
            assert_eq!(log.matches("WARN").count(), 1, "{log}");
            assert!(
                log.contains("no room microphone, recording without it until it can be opened"),
                "{log}"
            );
            assert!(log.contains(device), "{log}");
        }
    }

    #[test]
    fn a_name_alsa_cannot_take_is_refused() {
        for bad in ["", "hw:0\0evil"] {
            let e = AlsaSpeaker::open(bad).err().expect("refused");
            assert!(matches!(e, DeviceError::BadName(_)), "{e}");
        }
    }
}
