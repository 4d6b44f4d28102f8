//! Mixing the participants' audio into one stream, sans-IO.
//!
//! Everything sits on the mixer's common timeline: `i64` sample positions at 48 kHz
//! (the caller maps each participant's RTP time onto it). Sources push decoded
//! stereo samples at their positions; [`AudioMixer::mix`] sums what every source has
//! for the next 20 ms and takes it out. Missing samples are silence; samples for
//! positions already mixed, or too far ahead, are dropped and counted.
//!
//! The sum goes through a limiter instead of being clipped: the gain falls smoothly
//! over a short lookahead before a peak so that no sample exceeds -1 dBFS and the
//! waveform keeps its shape, then recovers slowly. Below the threshold the gain is
//! exactly 1 and the mix is the sample-exact sum.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use thiserror::Error;
use tracing::debug;

use super::audio_encoder::{CHANNELS, FRAME_LEN, FRAME_SAMPLES};
use crate::audio::convert::round_to_i16;
use crate::ingest::depacketize::opus::CLOCK_RATE;

/// Samples per channel a source may run ahead of the mix by default (2 s).
pub const DEFAULT_MAX_AHEAD: usize = 2 * CLOCK_RATE as usize;

/// Limiter threshold, -1 dBFS: 32767 * 10^(-1/20).
pub const LIMIT: f32 = 29_204.0;

/// Samples over which the limiter's gain falls before a peak (1 ms).
const LOOKAHEAD: usize = 48;

/// Time constant of the gain's recovery after a peak; slow enough not to modulate
/// the waveform of the lowest voices.
const RELEASE_SECONDS: f32 = 0.1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixerError {
    #[error("no such source in the mix")]
    UnknownSource,
    #[error("{0} samples are not whole stereo (interleaved) sample pairs")]
    NotStereo(usize),
    #[error("the frame at {at} is already mixed (the next one starts at {next})")]
    AlreadyMixed { at: i64, next: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixerConfig {
    /// Samples per channel a source may run ahead of the next frame to mix; further
    /// ones are dropped, bounding each source's buffer.
    pub max_ahead: usize,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            max_ahead: DEFAULT_MAX_AHEAD,
        }
    }
}

/// What became of one source's samples. Samples count per channel (one stereo pair
/// is one sample).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Went into the mix.
    pub mixed: u64,
    /// Arrived for positions already mixed (or skipped by [`AudioMixer::mix`]).
    pub late: u64,
    /// Arrived more than [`MixerConfig::max_ahead`] ahead of the mix.
    pub overflowed: u64,
    /// Mixed frames the source had no sample for.
    pub silent_frames: u64,
}

/// 20 ms of the mix: stereo interleaved samples for positions `[at, at + 960)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixedFrame {
    pub at: i64,
    pub pcm: [i16; FRAME_LEN],
}

#[derive(Debug, Default)]
struct Source {
    /// Samples from the next position to mix on; `None` where nothing arrived.
    pending: VecDeque<Option<[i16; CHANNELS]>>,
    stats: SourceStats,
}

impl Source {
    /// Drops the first `n` pending positions, counting the samples among them as late.
    fn skip(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        let dropped = self.pending.drain(..n).flatten().count();
        self.stats.late += dropped as u64;
    }
}

/// Mixes any number of sources identified by `Id` (a participant index, an SSRC).
#[derive(Debug)]
pub struct AudioMixer<Id> {
    config: MixerConfig,
    /// First timeline position not mixed yet.
    next: i64,
    sources: HashMap<Id, Source>,
    limiter: Limiter,
}

impl<Id: Copy + Eq + Hash + std::fmt::Debug> AudioMixer<Id> {
    /// A mixer whose first frame starts at timeline position `start`.
    pub fn new(start: i64, config: MixerConfig) -> Self {
        Self {
            config,
            next: start,
            sources: HashMap::new(),
            limiter: Limiter::new(),
        }
    }

    #[cfg(test)]
    /// Position of the next frame [`Self::mix`] can produce.
    pub fn next_frame_at(&self) -> i64 {
        self.next
    }

    /// Adds a source; false if it is already in the mix.
    pub fn add_source(&mut self, id: Id) -> bool {
        if self.sources.contains_key(&id) {
            return false;
        }
        self.sources.insert(id, Source::default());
        true
    }

    /// Takes a source out of the mix at once, pending samples included, and returns
    /// its final statistics.
    pub fn remove_source(&mut self, id: Id) -> Option<SourceStats> {
        self.sources.remove(&id).map(|s| s.stats)
    }

    #[cfg(test)]
    pub fn stats(&self, id: Id) -> Option<SourceStats> {
        self.sources.get(&id).map(|s| s.stats)
    }

    /// Places decoded stereo interleaved samples of source `id` at timeline position
    /// `at`; a later push for the same positions replaces them.
    pub fn push(&mut self, id: Id, at: i64, pcm: &[i16]) -> Result<(), MixerError> {
        if pcm.len() % CHANNELS != 0 {
            return Err(MixerError::NotStereo(pcm.len()));
        }
        let source = self.sources.get_mut(&id).ok_or(MixerError::UnknownSource)?;
        let n = (pcm.len() / CHANNELS) as i64;
        let end = at.saturating_add(n);
        let horizon = self.next.saturating_add(self.config.max_ahead as i64);
        // Saturating: timestamps mapped from the network can be anywhere.
        let late = end.min(self.next).saturating_sub(at).clamp(0, n);
        let overflowed = end.saturating_sub(at.max(horizon)).clamp(0, n);
        if late > 0 || overflowed > 0 {
            debug!(
                ?id,
                at,
                late,
                overflowed,
                next = self.next,
                "audio outside the mix window"
            );
            source.stats.late += late as u64;
            source.stats.overflowed += overflowed as u64;
        }
        let (lo, hi) = (at.max(self.next), end.min(horizon));
        if lo >= hi {
            return Ok(());
        }
        let offset = (lo - self.next) as usize;
        let count = (hi - lo) as usize;
        if source.pending.len() < offset + count {
            source.pending.resize(offset + count, None);
        }
        let first = (lo - at) as usize * CHANNELS;
        let samples = pcm[first..first + count * CHANNELS].chunks_exact(CHANNELS);
        for (slot, pair) in source.pending.range_mut(offset..).zip(samples) {
            *slot = Some([pair[0], pair[1]]);
        }
        Ok(())
    }

    /// Mixes the frame covering `[at, at + 960)`. Positions between the previous frame
    /// and `at` are skipped (their samples count as late); `at` before the end of the
    /// previous frame is an error, as those samples are gone.
    pub fn mix(&mut self, at: i64) -> Result<MixedFrame, MixerError> {
        if at < self.next {
            return Err(MixerError::AlreadyMixed {
                at,
                next: self.next,
            });
        }
        if at > self.next {
            let gap = usize::try_from(at.abs_diff(self.next)).unwrap_or(usize::MAX);
            self.sources.values_mut().for_each(|s| s.skip(gap));
            self.next = at;
        }
        // f32 holds the sum of up to 512 full-scale sources exactly.
        let mut sum = [[0.0f32; CHANNELS]; FRAME_SAMPLES + LOOKAHEAD];
        for source in self.sources.values_mut() {
            let mut mixed = 0;
            // The samples just after the frame only steer the limiter; they stay pending.
            for (i, pair) in source.pending.iter().take(sum.len()).enumerate() {
                if let Some(pair) = pair {
                    sum[i][0] += f32::from(pair[0]);
                    sum[i][1] += f32::from(pair[1]);
                    mixed += u64::from(i < FRAME_SAMPLES);
                }
            }
            source.stats.mixed += mixed;
            source.stats.silent_frames += u64::from(mixed == 0);
            let n = FRAME_SAMPLES.min(source.pending.len());
            source.pending.drain(..n);
        }
        let pcm = self.limiter.apply(&sum);
        self.next = self.next.saturating_add(FRAME_SAMPLES as i64);
        Ok(MixedFrame { at, pcm })
    }
}

/// Gain that brings `peak` down to the limit, 1 below it.
fn required_gain(pair: &[f32; CHANNELS]) -> f32 {
    let peak = pair[0].abs().max(pair[1].abs());
    if peak > LIMIT {
        LIMIT / peak
    } else {
        1.0
    }
}

/// Lookahead limiter on the summed frame, one gain for both channels so the stereo
/// image holds.
///
/// For each sample the gain must not exceed `r = LIMIT / peak` there. Taking the
/// minimum of `r` over the next `LOOKAHEAD` samples and averaging that over the last
/// `LOOKAHEAD` samples gives a gain that ramps down smoothly before a peak and yet
/// is at most `r` everywhere (every averaged minimum covers the sample). A slow
/// release then keeps the gain from following the waveform back up between peaks.
#[derive(Debug)]
struct Limiter {
    /// `r` of the previous frame's last samples, whose windows reach into this frame.
    tail: [f32; LOOKAHEAD],
    gain: f32,
    release: f32,
}

impl Limiter {
    fn new() -> Self {
        Self {
            tail: [1.0; LOOKAHEAD],
            gain: 1.0,
            release: 1.0 - (-1.0 / (RELEASE_SECONDS * CLOCK_RATE as f32)).exp(),
        }
    }

    /// `sum` is the frame followed by the `LOOKAHEAD` samples after it as far as known.
    fn apply(&mut self, sum: &[[f32; CHANNELS]; FRAME_SAMPLES + LOOKAHEAD]) -> [i16; FRAME_LEN] {
        // r over the previous tail, the frame and the lookahead.
        let mut r = [1.0f32; SPAN];
        r[..LOOKAHEAD].copy_from_slice(&self.tail);
        for (g, pair) in r[LOOKAHEAD..].iter_mut().zip(sum) {
            *g = required_gain(pair);
        }
        // held[k]: minimum of r over [k, k + LOOKAHEAD], for frame positions k - LOOKAHEAD.
        let held = window_minima(&r);
        let mut out = [0i16; FRAME_LEN];
        // A running sum in f64, so 960 steps of rounding cannot lift the average above
        // the minima it averages.
        let width = (LOOKAHEAD + 1) as f64;
        let mut window: f64 = held[..LOOKAHEAD].iter().copied().map(f64::from).sum();
        for (i, (pair, out)) in sum.iter().zip(out.chunks_exact_mut(CHANNELS)).enumerate() {
            window += f64::from(held[i + LOOKAHEAD]);
            let smoothed = (window / width) as f32;
            window -= f64::from(held[i]);
            self.gain = smoothed.min(self.gain + (1.0 - self.gain) * self.release);
            for (o, &x) in out.iter_mut().zip(pair) {
                // The gain keeps every sample well inside the range anyway.
                *o = round_to_i16(x * self.gain);
            }
        }
        self.tail
            .copy_from_slice(&r[FRAME_SAMPLES..FRAME_SAMPLES + LOOKAHEAD]);
        out
    }
}

/// Values the limiter computes its gain over: the previous tail, the frame and the
/// lookahead.
const SPAN: usize = LOOKAHEAD + FRAME_SAMPLES + LOOKAHEAD;

/// `held[k]`, the minimum of `r[k..=k + LOOKAHEAD]`, for every window, in three
/// passes whatever the window's width (van Herk, Gil and Werman): in blocks as wide
/// as a window, the minima from each block's start and to each block's end; a window
/// spans at most two blocks, so its minimum is the one to the end of its first block
/// with the one from the start of the next.
fn window_minima(r: &[f32; SPAN]) -> [f32; LOOKAHEAD + FRAME_SAMPLES] {
    const WIDTH: usize = LOOKAHEAD + 1;
    let (mut from_start, mut to_end) = ([0.0f32; SPAN], [0.0f32; SPAN]);
    for ((block, from_start), to_end) in r
        .chunks(WIDTH)
        .zip(from_start.chunks_mut(WIDTH))
        .zip(to_end.chunks_mut(WIDTH))
    {
        let mut m = f32::INFINITY;
        for (v, out) in block.iter().zip(from_start.iter_mut()) {
            m = m.min(*v);
            *out = m;
        }
        let mut m = f32::INFINITY;
        for (v, out) in block.iter().zip(to_end.iter_mut()).rev() {
            m = m.min(*v);
            *out = m;
        }
    }
    let mut held = [0.0f32; LOOKAHEAD + FRAME_SAMPLES];
    for (k, h) in held.iter_mut().enumerate() {
        *h = to_end[k].min(from_start[k + LOOKAHEAD]);
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::tone::tone_power;
    use proptest::prelude::*;

    const F: i64 = FRAME_SAMPLES as i64;

    fn mixer() -> AudioMixer<u32> {
        AudioMixer::new(0, MixerConfig::default())
    }

    /// `n` stereo pairs of constant `(left, right)`.
    fn constant(n: usize, left: i16, right: i16) -> Vec<i16> {
        [left, right].repeat(n)
    }

    /// `n` stereo pairs of a sine starting at timeline position `at`.
    fn sine(at: i64, n: usize, freq: f32, amplitude: f32) -> Vec<i16> {
        (0..n as i64)
            .flat_map(|i| {
                let t = (at + i) as f32 / CLOCK_RATE as f32;
                let s = (amplitude * 32767.0 * (std::f32::consts::TAU * freq * t).sin()) as i16;
                [s, s]
            })
            .collect()
    }

    fn left(frame: &MixedFrame) -> Vec<i16> {
        frame.pcm.iter().step_by(CHANNELS).copied().collect()
    }

    #[test]
    fn sources_are_summed_by_timeline_position() {
        let mut m = mixer();
        m.add_source(1);
        m.add_source(2);
        m.push(1, 0, &constant(960, 100, -100)).unwrap();
        // Source 2 starts half a frame later, in two pushes out of order.
        m.push(2, 960, &constant(480, 7, 9)).unwrap();
        m.push(2, 480, &constant(480, 1000, 2000)).unwrap();
        let a = m.mix(0).unwrap();
        assert_eq!(a.at, 0);
        assert_eq!(a.pcm[..960], constant(480, 100, -100)[..]);
        assert_eq!(a.pcm[960..], constant(480, 1100, 1900)[..]);
        let b = m.mix(F).unwrap();
        assert_eq!(b.at, F);
        assert_eq!(b.pcm[..960], constant(480, 7, 9)[..]);
        assert!(b.pcm[960..].iter().all(|&s| s == 0));
        assert_eq!(m.next_frame_at(), 2 * F);
        let one = m.stats(1).unwrap();
        assert_eq!((one.mixed, one.silent_frames), (960, 1));
        let two = m.stats(2).unwrap();
        assert_eq!((two.mixed, two.silent_frames, two.late), (960, 0, 0));
    }

    #[test]
    fn gaps_are_silence() {
        let mut m = mixer();
        m.add_source(1);
        m.push(1, 0, &constant(480, 5, 5)).unwrap();
        m.push(1, 3 * F + 480, &constant(480, 6, 6)).unwrap();
        let frames: Vec<_> = (0..4).map(|n| m.mix(n * F).unwrap()).collect();
        assert_eq!(frames[0].pcm[..960], constant(480, 5, 5)[..]);
        assert!(frames[0].pcm[960..].iter().all(|&s| s == 0));
        assert!(frames[1].pcm.iter().chain(&frames[2].pcm).all(|&s| s == 0));
        assert!(frames[3].pcm[..960].iter().all(|&s| s == 0));
        assert_eq!(frames[3].pcm[960..], constant(480, 6, 6)[..]);
        let stats = m.stats(1).unwrap();
        assert_eq!((stats.mixed, stats.silent_frames), (960, 2));
        // With no source at all the mix is silence too.
        let mut empty = mixer();
        assert_eq!(empty.mix(0).unwrap().pcm, [0; FRAME_LEN]);
    }

    #[test]
    fn late_and_far_ahead_samples_are_dropped_and_counted() {
        let mut m = AudioMixer::new(
            10 * F,
            MixerConfig {
                max_ahead: 4 * FRAME_SAMPLES,
            },
        );
        m.add_source(1u32);
        m.mix(10 * F).unwrap();
        // Half of this is for positions already mixed.
        m.push(1, 11 * F - 480, &constant(960, 3, 3)).unwrap();
        // 100 samples of this run past the 4 frames the source may be ahead.
        m.push(1, 15 * F - 860, &constant(960, 4, 4)).unwrap();
        let stats = m.stats(1).unwrap();
        assert_eq!((stats.late, stats.overflowed), (480, 100));
        let frame = m.mix(11 * F).unwrap();
        assert_eq!(frame.pcm[..960], constant(480, 3, 3)[..]);
        // Skipping a frame drops what was pending for it as late.
        m.mix(15 * F).unwrap();
        assert_eq!(m.stats(1).unwrap().late, 480 + 860);
        assert_eq!(
            m.mix(13 * F),
            Err(MixerError::AlreadyMixed {
                at: 13 * F,
                next: 16 * F
            })
        );
    }

    #[test]
    fn a_source_that_leaves_stops_contributing_at_once() {
        let mut m = mixer();
        for id in [1, 2] {
            assert!(m.add_source(id));
            m.push(id, 0, &constant(3 * FRAME_SAMPLES, 10 * id as i16, 0))
                .unwrap();
        }
        assert!(!m.add_source(1));
        assert!(m.mix(0).unwrap().pcm.iter().step_by(2).all(|&s| s == 30));
        let last = m.remove_source(2).unwrap();
        assert_eq!(last.mixed, 960);
        assert!(m.mix(F).unwrap().pcm.iter().step_by(2).all(|&s| s == 10));
        assert_eq!(
            m.push(2, 2 * F, &constant(10, 1, 1)),
            Err(MixerError::UnknownSource)
        );
        assert_eq!(m.remove_source(2), None);
        assert_eq!(m.push(1, 2 * F, &[1, 2, 3]), Err(MixerError::NotStereo(3)));
    }

    #[test]
    fn positions_at_the_ends_of_the_timeline_are_only_counted() {
        let mut m = mixer();
        m.add_source(1);
        m.push(1, i64::MIN, &constant(10, 1, 1)).unwrap();
        m.push(1, i64::MAX - 20, &constant(10, 1, 1)).unwrap();
        let stats = m.stats(1).unwrap();
        assert_eq!((stats.late, stats.overflowed), (10, 10));
        assert_eq!(m.mix(i64::MAX - F).unwrap().pcm, [0; FRAME_LEN]);
    }

    #[test]
    fn a_moderate_source_passes_sample_exact() {
        let mut m = mixer();
        m.add_source(7);
        for n in 0..10 {
            let at = n * F;
            let pcm = sine(at, FRAME_SAMPLES, 440.0, 0.3);
            m.push(7, at, &pcm).unwrap();
            assert_eq!(m.mix(at).unwrap().pcm[..], pcm[..]);
        }
    }

    /// True when the limiter flattened the waveform: three equal samples near the limit.
    fn has_flat_top(samples: &[i16]) -> bool {
        samples
            .windows(3)
            .any(|w| w[0] == w[1] && w[1] == w[2] && f32::from(w[0].unsigned_abs()) > 0.9 * LIMIT)
    }

    #[test]
    fn sixteen_full_scale_sources_in_phase_are_limited_not_clipped() {
        let mut m = mixer();
        let mut out = Vec::new();
        for id in 0..16 {
            m.add_source(id);
        }
        for n in 0..10 {
            let at = n * F;
            let pcm = sine(at, FRAME_SAMPLES, 440.0, 1.0);
            for id in 0..16 {
                m.push(id, at, &pcm).unwrap();
            }
            out.extend(left(&m.mix(at).unwrap()));
        }
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            f32::from(peak) <= LIMIT + 1.0 && f32::from(peak) > 0.95 * LIMIT,
            "peak {peak}"
        );
        assert!(!has_flat_top(&out));
        // Still a clean tone: its power is that of a sine at the limit.
        let expected = (LIMIT / 32768.0).powi(2);
        let p = tone_power(&out[FRAME_SAMPLES..], CLOCK_RATE, 440.0);
        assert!((p - expected).abs() < 0.05 * expected, "power {p}");
    }

    /// What [`window_minima`] computes, window by window.
    fn window_minima_directly(r: &[f32; SPAN]) -> Vec<f32> {
        (0..LOOKAHEAD + FRAME_SAMPLES)
            .map(|k| {
                r[k..=k + LOOKAHEAD]
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, f32::min)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn window_minima_are_each_window_s_minimum(
            values in proptest::collection::vec(0.001f32..=1.0, SPAN),
            ones in proptest::collection::vec(any::<bool>(), SPAN),
        ) {
            // Runs of 1.0 (no peak) between peaks, as the limiter sees them.
            let mut r = [1.0f32; SPAN];
            for ((r, v), one) in r.iter_mut().zip(values).zip(ones) {
                if !one {
                    *r = v;
                }
            }
            prop_assert_eq!(window_minima(&r).to_vec(), window_minima_directly(&r));
        }

        #[test]
        fn the_mix_never_saturates_nor_flattens(
            levels in proptest::collection::vec(0.0f32..=1.0, 1..=16),
            freq in 200.0f32..2000.0,
            starts in proptest::collection::vec(0i64..(3 * F), 16),
        ) {
            let mut m = mixer();
            let mut out = Vec::new();
            for id in 0..levels.len() as u32 {
                m.add_source(id);
            }
            for n in 0..5 {
                let at = n * F;
                for (id, (&level, &start)) in levels.iter().zip(&starts).enumerate() {
                    // Sources join at random positions, in phase.
                    let from = at.max(start);
                    let len = (at + F - from) as usize;
                    m.push(id as u32, from, &sine(from, len, freq, level)).unwrap();
                }
                let frame = m.mix(at).unwrap();
                prop_assert!(frame.pcm.iter().all(|s| s.unsigned_abs() < 32767));
                prop_assert!(frame.pcm.iter().all(|&s| f32::from(s.unsigned_abs()) <= LIMIT + 1.0));
                out.extend(left(&frame));
            }
            prop_assert!(!has_flat_top(&out));
        }
    }
}
