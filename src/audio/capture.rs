//! The room microphone: audio captured on the box, converted to the mixer's 20 ms
//! frames of 48 kHz stereo and stamped with when it was captured, on a thread of its
//! own. A microphone that fails or is missing is logged, the mix goes on without it,
//! and it is opened again when it can be.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::convert::{remix, PcmFormat, Resampler};
use super::device::CaptureDevice;
use super::DeviceError;
use crate::ingest::depacketize::opus::CLOCK_RATE;
use crate::mixer::audio_encoder::{CHANNELS, FRAME_LEN};
use crate::mixer::engine::LocalFrame;

/// How long one read waits for audio: also how soon a stop is noticed.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// A device that gives nothing for this long has failed (a wedged driver).
const STALL: Duration = Duration::from_secs(2);

/// Captured audio in the device's format in, the mixer's frames out (sans-IO).
#[derive(Debug)]
pub struct FrameAssembler {
    channels: u16,
    resampler: Resampler,
    /// 48 kHz stereo samples not yet in a frame.
    pending: Vec<i16>,
}

impl FrameAssembler {
    pub fn new(format: PcmFormat) -> Self {
        Self {
            channels: format.channels,
            resampler: Resampler::new(format.rate, CLOCK_RATE, CHANNELS as u16),
            pending: Vec::with_capacity(2 * FRAME_LEN),
        }
    }

    /// Takes samples the device had captured by `at` and gives every whole frame they
    /// complete, each stamped with when its last sample was captured.
    pub fn push(&mut self, samples: &[i16], at: Instant) -> Vec<LocalFrame> {
        let stereo = remix(samples, self.channels, CHANNELS as u16);
        self.pending.extend(self.resampler.push(&stereo));
        let whole = self.pending.len() / FRAME_LEN;
        let mut frames = Vec::with_capacity(whole);
        for k in 1..=whole {
            // Samples captured after this frame's last one.
            let after = (self.pending.len() - k * FRAME_LEN) / CHANNELS;
            let captured = at
                .checked_sub(Duration::from_secs_f64(
                    after as f64 / f64::from(CLOCK_RATE),
                ))
                .unwrap_or(at);
            let pcm = self.pending[(k - 1) * FRAME_LEN..k * FRAME_LEN].to_vec();
            frames.push(LocalFrame {
                pcm,
                captured,
                first: false,
            });
        }
        self.pending.drain(..whole * FRAME_LEN);
        frames
    }
}

/// Opens the capture device again after it failed or was missing.
type Reopen = Box<dyn FnMut() -> Result<Box<dyn CaptureDevice>, DeviceError> + Send>;

/// A capture device, ready to start.
pub struct Microphone {
    name: String,
    device: Option<Box<dyn CaptureDevice>>,
    /// How to open the device again, and how often to try; `None`: a device that
    /// fails is gone for good.
    reopen: Option<(Reopen, Duration)>,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone")
            .field("device", &self.name)
            .field("open", &self.device.is_some())
            .field("reopens", &self.reopen.is_some())
            .finish()
    }
}

impl Microphone {
    /// The ALSA capture PCM `device` (e.g. `hw:1,0`, `plughw:CARD=Mic`). One that is
    /// missing or cannot be opened is logged as a warning, the box records without
    /// it, and it is tried again every [`REOPEN`] (a USB microphone plugged in
    /// later, or pulled and put back). A build without ALSA logs that and gives
    /// `None`.
    pub fn open(device: &str) -> Option<Self> {
        let first = match super::open_capture(device) {
            Err(e @ DeviceError::NoAlsa) => {
                warn!(device, "no room microphone, recording without it: {e}");
                return None;
            }
            Err(e) => {
                warn!(
                    device,
                    "no room microphone, recording without it until it can be opened: {e}"
                );
                None
            }
            Ok(d) => Some(d),
        };
        let name = device.to_owned();
        Some(Self::reopening(
            device,
            first,
            move || super::open_capture(&name),
            REOPEN,
        ))
    }

    /// A device used until it fails.
    pub fn new(device: Box<dyn CaptureDevice>) -> Self {
        Self {
            name: device.name().to_owned(),
            device: Some(device),
            reopen: None,
        }
    }

    /// `device` if it is open already, else opened by `reopen`, which is also called
    /// every `retry` after the device failed, until it opens again.
    pub fn reopening(
        name: &str,
        device: Option<Box<dyn CaptureDevice>>,
        reopen: impl FnMut() -> Result<Box<dyn CaptureDevice>, DeviceError> + Send + 'static,
        retry: Duration,
    ) -> Self {
        Self {
            name: name.to_owned(),
            device,
            reopen: Some((Box::new(reopen), retry)),
        }
    }

    /// Captures on a thread of its own and hands every frame to `sink`, until `sink`
    /// returns false, the returned [`Capturing`] is dropped, or the device fails
    /// for good.
    pub fn start(self, sink: impl FnMut(LocalFrame) -> bool + Send + 'static) -> Capturing {
        let stop = Arc::new(AtomicBool::new(false));
        // The thread logs where its creator does.
        let log = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name("microphone".into())
            .spawn({
                let stop = stop.clone();
                move || tracing::dispatcher::with_default(&log, || self.capture(&stop, sink))
            })
            .expect("spawning the microphone thread");
        Capturing {
            stop,
            thread: Some(thread),
        }
    }

    fn capture(mut self, stop: &AtomicBool, mut sink: impl FnMut(LocalFrame) -> bool) {
        let mut device = self.device.take();
        while !stop.load(Ordering::Relaxed) {
            let Some(open) = device.take() else {
                let Some((reopen, retry)) = self.reopen.as_mut() else {
                    return;
                };
                if !sleep_unless(stop, *retry) {
                    return;
                }
                match reopen() {
                    Ok(d) => {
                        info!(device = %self.name, "room microphone is back in the mix");
                        device = Some(d);
                    }
                    Err(e) => debug!(device = %self.name, "room microphone still unavailable: {e}"),
                }
                continue;
            };
            match capture_from(open, stop, &mut sink) {
                Ok(()) => return,
                Err(e) => {
                    let again = self
                        .reopen
                        .as_ref()
                        .map(|(_, retry)| format!("; trying again every {retry:?}"))
                        .unwrap_or_default();
                    warn!(device = %self.name, "room microphone failed, the mix goes on without it{again}: {e}");
                }
            }
        }
    }
}

/// How often a failed or missing microphone is tried again.
pub const REOPEN: Duration = Duration::from_secs(5);

/// Sleeps `d` in short steps; false if `stop` was set meanwhile.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(READ_TIMEOUT));
    }
}

/// A microphone capturing; dropping it ends the capture.
#[derive(Debug)]
pub struct Capturing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capturing {
    /// False once capture has ended (the device failed for good, or the sink wanted
    /// no more).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Captures from one opened device until `stop`, the sink wants no more (`Ok`), or
/// the device fails (`Err`). Its first frame is marked as such: the timeline places
/// it by the clock, not after whatever an earlier device gave.
fn capture_from(
    mut device: Box<dyn CaptureDevice>,
    stop: &AtomicBool,
    sink: &mut impl FnMut(LocalFrame) -> bool,
) -> Result<(), DeviceError> {
    let format = device.format();
    info!(
        device = device.name(),
        rate = format.rate,
        channels = format.channels,
        "room microphone captures"
    );
    let mut frames = FrameAssembler::new(format);
    let mut heard = Instant::now();
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let samples = device.read(READ_TIMEOUT)?;
        let now = Instant::now();
        if samples.is_empty() {
            if now.duration_since(heard) >= STALL {
                return Err(DeviceError::Stalled {
                    device: device.name().to_owned(),
                    waited: STALL,
                });
            }
            continue;
        }
        heard = now;
        for mut frame in frames.push(&samples, now) {
            frame.first = std::mem::take(&mut first);
            if !sink(frame) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
/// A capture device that gives prepared audio, for tests: `chunks` one read each,
/// then an error as an unplugged device would give.
#[derive(Debug, Clone)]
pub struct SimulatedCapture {
    format: PcmFormat,
    chunks: std::collections::VecDeque<Vec<i16>>,
}

#[cfg(test)]
impl SimulatedCapture {
    pub fn new(format: PcmFormat, chunks: impl IntoIterator<Item = Vec<i16>>) -> Self {
        Self {
            format,
            chunks: chunks.into_iter().collect(),
        }
    }
}

#[cfg(test)]
impl CaptureDevice for SimulatedCapture {
    fn name(&self) -> &str {
        "simulated"
    }

    fn format(&self) -> PcmFormat {
        self.format
    }

    fn read(&mut self, _timeout: Duration) -> Result<Vec<i16>, DeviceError> {
        self.chunks
            .pop_front()
            .ok_or_else(|| DeviceError::Simulated("the microphone is gone".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::tone::tone_power;
    use crate::test_log::{logged, wait_until};
    use std::sync::Mutex;

    const MS: Duration = Duration::from_millis(1);

    fn sine(rate: u32, channels: u16, freq: f32, n: usize) -> Vec<i16> {
        (0..n)
            .flat_map(|i| {
                let s = 12_000.0 * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin();
                std::iter::repeat_n(s as i16, usize::from(channels))
            })
            .collect()
    }

    #[test]
    fn frames_are_stamped_by_their_last_sample() {
        let mut a = FrameAssembler::new(PcmFormat {
            rate: 48_000,
            channels: 2,
        });
        let t0 = Instant::now() + Duration::from_secs(1);
        // 50 ms captured by t0: two frames and 10 ms left over.
        let frames = a.push(&vec![1; 2 * 2400], t0);
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|f| f.pcm.len() == FRAME_LEN));
        assert_eq!(frames[0].captured, t0 - 30 * MS);
        assert_eq!(frames[1].captured, t0 - 10 * MS);
        // 15 ms more by t0 + 15 ms completes the third frame 5 ms before then.
        let frames = a.push(&vec![1; 2 * 720], t0 + 15 * MS);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].captured, t0 + 10 * MS);
    }

    #[test]
    fn mono_at_another_rate_becomes_48_khz_stereo() {
        let mut a = FrameAssembler::new(PcmFormat {
            rate: 44_100,
            channels: 1,
        });
        let input = sine(44_100, 1, 1000.0, 44_100);
        let now = Instant::now();
        let frames: Vec<LocalFrame> = input.chunks(441).flat_map(|c| a.push(c, now)).collect();
        assert_eq!(frames.len(), 49, "a second, less the sample held back");
        let pcm: Vec<i16> = frames.iter().flat_map(|f| f.pcm.clone()).collect();
        let (left, right): (Vec<i16>, Vec<i16>) = pcm.chunks(2).map(|p| (p[0], p[1])).unzip();
        assert_eq!(left, right);
        assert!(tone_power(&left, 48_000, 1000.0) > 0.1);
    }

    #[test]
    fn captures_until_the_device_fails_and_says_so() {
        let format = PcmFormat {
            rate: 16_000,
            channels: 1,
        };
        // 100 ms in reads of 10 ms, then the device is gone.
        let chunks = sine(16_000, 1, 440.0, 1600)
            .chunks(160)
            .map(<[i16]>::to_vec)
            .collect::<Vec<_>>();
        let device = SimulatedCapture::new(format, chunks);
        let got = Arc::new(Mutex::new(Vec::new()));
        let ((), log) = logged(|| {
            let capturing = Microphone::new(Box::new(device)).start({
                let got = got.clone();
                move |frame| {
                    got.lock().unwrap().push(frame);
                    true
                }
            });
            wait_until(|| !capturing.is_running());
        });
        // 100 ms at 48 kHz, less the sample the resampler holds back: 4 whole frames.
        assert_eq!(got.lock().unwrap().len(), 4);
        assert_eq!(log.matches("WARN").count(), 1, "{log}");
        assert!(
            log.contains("room microphone failed, the mix goes on without it"),
            "{log}"
        );
        assert!(log.contains("the microphone is gone"), "{log}");
    }

    #[test]
    fn a_microphone_missing_then_failing_is_opened_again_each_time() {
        let format = PcmFormat {
            rate: 48_000,
            channels: 2,
        };
        // Missing at the start, then twice a device that gives three frames and fails.
        let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reopen = {
            let opens = opens.clone();
            move || -> Result<Box<dyn CaptureDevice>, DeviceError> {
                match opens.fetch_add(1, Ordering::Relaxed) {
                    0 => Err(DeviceError::Simulated("not plugged in".into())),
                    _ => Ok(Box::new(SimulatedCapture::new(
                        format,
                        std::iter::repeat_n(vec![5; FRAME_LEN], 3),
                    ))),
                }
            }
        };
        let got = Arc::new(Mutex::new(Vec::new()));
        let ((), log) = logged(|| {
            let mic = Microphone::reopening("usb mic", None, reopen, MS);
            let capturing = mic.start({
                let got = got.clone();
                move |frame| {
                    got.lock().unwrap().push(frame.first);
                    true
                }
            });
            wait_until(|| got.lock().unwrap().len() >= 6);
            drop(capturing);
        });
        let firsts = got.lock().unwrap()[..6].to_vec();
        assert_eq!(
            firsts,
            [true, false, false, true, false, false],
            "each capture marks its first frame"
        );
        assert!(opens.load(Ordering::Relaxed) >= 3);
        assert!(log.contains("room microphone is back in the mix"), "{log}");
        assert!(
            log.contains("room microphone failed, the mix goes on without it; trying again"),
            "{log}"
        );
    }

    #[test]
    fn a_sink_that_wants_no_more_ends_the_capture() {
        let format = PcmFormat {
            rate: 48_000,
            channels: 2,
        };
        let device = SimulatedCapture::new(format, std::iter::repeat_n(vec![0; FRAME_LEN], 100));
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let capturing = Microphone::new(Box::new(device)).start({
            let taken = taken.clone();
            move |_| taken.fetch_add(1, Ordering::Relaxed) < 2
        });
        wait_until(|| !capturing.is_running());
        assert_eq!(taken.load(Ordering::Relaxed), 3);
    }

    #[cfg(not(feature = "alsa"))]
    #[test]
    fn without_alsa_opening_a_microphone_says_so_and_carries_on() {
        let (mic, log) = logged(|| Microphone::open("hw:1,0"));
        assert!(mic.is_none());
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("built without the alsa feature"), "{log}");
    }
}
