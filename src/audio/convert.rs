//! Between what a sound card offers and what recbox works in (48 kHz, i16): sample
//! types, channel counts and rates, sans-IO.
//!
//! Simple on purpose: a chime and a room microphone need no studio resampler, so rates
//! are converted by linear interpolation and channels by copying or averaging.

/// Interleaved PCM as a device delivers or takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub rate: u32,
    pub channels: u16,
}

/// A sample type a device may use, converted to and from i16.
pub trait Sample: Copy + Default {
    fn to_i16(self) -> i16;
    fn from_i16(sample: i16) -> Self;
}

impl Sample for i16 {
    fn to_i16(self) -> i16 {
        self
    }
    fn from_i16(sample: i16) -> Self {
        sample
    }
}

impl Sample for i32 {
    fn to_i16(self) -> i16 {
        (self >> 16) as i16
    }
    fn from_i16(sample: i16) -> Self {
        i32::from(sample) << 16
    }
}

/// `v.round() as i16`: rounded half away from zero, clipped to the i16 range, NaN as
/// 0. `f32::round` is a call into libm on x86-64 (one instruction on the box's ARM),
/// and this runs once a sample of every participant and of the mix; this is inlined.
#[inline]
pub(crate) fn round_to_i16(v: f32) -> i16 {
    // NaN stays NaN, and becomes 0 below, as with `round`.
    let v = v.clamp(-32768.0, 32767.0);
    let whole = v as i32;
    // Exact: `v` and its whole part are floats of at most 16 integer bits.
    let fraction = v - whole as f32;
    let rounded = whole + i32::from(fraction >= 0.5) - i32::from(fraction <= -0.5);
    // Within i16 by the clamp: 32766.5 rounds to 32767, -32767.5 to -32768.
    rounded as i16
}

impl Sample for f32 {
    /// Full scale is +-1.0; beyond it clips instead of wrapping.
    #[inline]
    fn to_i16(self) -> i16 {
        round_to_i16(self * 32768.0)
    }
    fn from_i16(sample: i16) -> Self {
        f32::from(sample) / 32768.0
    }
}

/// Interleaved frames of `from` channels as `to` channels: one channel goes to every
/// output channel, many into one are averaged, otherwise channels are taken in order
/// and missing ones are silent.
pub(crate) fn remix(input: &[i16], from: u16, to: u16) -> Vec<i16> {
    let (from, to) = (usize::from(from.max(1)), usize::from(to.max(1)));
    if from == to {
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len() / from * to);
    for frame in input.chunks_exact(from) {
        if from == 1 {
            out.extend(std::iter::repeat_n(frame[0], to));
        } else if to == 1 {
            let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
            out.push((sum / from as i32) as i16);
        } else {
            out.extend((0..to).map(|c| frame.get(c).copied().unwrap_or(0)));
        }
    }
    out
}

/// A streaming rate converter of interleaved frames, by linear interpolation between
/// neighbouring input frames. Output frame `m` is input time `m * from / to`; input
/// arrives in chunks of any size and the output continues seamlessly across them.
#[derive(Debug, Clone)]
pub(crate) struct Resampler {
    from: u32,
    to: u32,
    channels: usize,
    /// Input frames not yet passed over, interleaved; `pending[0]` is input frame `base`.
    pending: Vec<i16>,
    base: u64,
    /// Next output frame.
    next: u64,
}

impl Resampler {
    pub(crate) fn new(from: u32, to: u32, channels: u16) -> Self {
        Self {
            from: from.max(1),
            to: to.max(1),
            channels: usize::from(channels.max(1)),
            pending: Vec::new(),
            base: 0,
            next: 0,
        }
    }

    /// The output for `input`; the last input frame is held back until the next one
    /// arrives, as the frames between them need both.
    pub(crate) fn push(&mut self, input: &[i16]) -> Vec<i16> {
        if self.from == self.to {
            return input.to_vec();
        }
        let ch = self.channels;
        self.pending.extend_from_slice(input);
        let available = (self.pending.len() / ch) as u64;
        let (from, to) = (u128::from(self.from), u128::from(self.to));
        let mut out = Vec::new();
        loop {
            let t = u128::from(self.next) * from;
            let index = (t / to) as u64;
            // Interpolating needs frames `index` and `index + 1`.
            if index + 1 >= self.base + available {
                break;
            }
            let frac = (t % to) as i64;
            let at = (index - self.base) as usize * ch;
            for c in 0..ch {
                let a = i64::from(self.pending[at + c]);
                let b = i64::from(self.pending[at + ch + c]);
                out.push((a + (b - a) * frac / to as i64) as i16);
            }
            self.next += 1;
        }
        // Keep from the first frame the next output needs.
        let keep_from = ((u128::from(self.next) * from / to) as u64).min(self.base + available);
        let drop = (keep_from - self.base) as usize * ch;
        self.pending.drain(..drop);
        self.base = keep_from;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::tone::tone_power;
    use proptest::prelude::*;

    #[test]
    fn rounding_edges_are_f32_round_s() {
        let edges = [
            0.5f32,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.499_999_97,
            32766.5,
            -32767.5,
            32767.0,
            32768.0,
            -32768.0,
            -32769.0,
            1e9,
            -1e9,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
        ];
        for v in edges {
            assert_eq!(round_to_i16(v), v.round() as i16, "{v}");
            // Dividing by a power of two is exact: the sample scales back to `v`.
            let sample = v / 32768.0;
            assert_eq!(sample.to_i16(), (sample * 32768.0).round() as i16, "{v}");
        }
    }

    #[test]
    fn sample_types_round_trip_through_i16() {
        for s in [i16::MIN, -1000, -1, 0, 1, 1000, i16::MAX] {
            assert_eq!(i32::from_i16(s).to_i16(), s);
            assert_eq!(f32::from_i16(s).to_i16(), s);
        }
        assert_eq!(0x7fff_ffffi32.to_i16(), i16::MAX);
        assert_eq!(1.5f32.to_i16(), i16::MAX, "beyond full scale clips");
        assert_eq!((-1.5f32).to_i16(), i16::MIN);
    }

    #[test]
    fn channels_are_copied_averaged_or_taken_in_order() {
        assert_eq!(remix(&[1, 2], 1, 2), [1, 1, 2, 2]);
        assert_eq!(remix(&[1, 3, -4, 8], 2, 1), [2, 2]);
        assert_eq!(remix(&[1, 2, 3, 4, 5, 6], 3, 2), [1, 2, 4, 5]);
        assert_eq!(remix(&[1, 2], 2, 4), [1, 2, 0, 0]);
        assert_eq!(remix(&[7, 8], 2, 2), [7, 8]);
        assert_eq!(remix(&[9], 1, 6), [9; 6]);
    }

    fn sine(rate: u32, freq: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (10_000.0 * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn a_tone_keeps_its_pitch_across_rates() {
        for from in [8_000, 16_000, 44_100, 96_000] {
            let input = sine(from, 1000.0, from as usize);
            let mut r = Resampler::new(from, 48_000, 1);
            // In uneven chunks, as a device delivers it.
            let out: Vec<i16> = input.chunks(317).flat_map(|c| r.push(c)).collect();
            // Short only by what the last input frame, held back, stands for.
            let held = (48_000 / from) as usize + 1;
            assert!(
                (48_000 - held..=48_000).contains(&out.len()),
                "{from}: {} frames",
                out.len()
            );
            let p = tone_power(&out, 48_000, 1000.0);
            assert!(p > 0.08, "{from}: power {p}");
            assert!(tone_power(&out, 48_000, 1300.0) < p / 100.0, "{from}");
        }
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = Resampler::new(48_000, 48_000, 2);
        assert_eq!(r.push(&[1, 2, 3, 4]), [1, 2, 3, 4]);
    }

    #[test]
    fn interpolates_between_frames_per_channel() {
        // 2 kHz to 4 kHz: every other output frame lies halfway between two inputs.
        let mut r = Resampler::new(2, 4, 2);
        assert_eq!(r.push(&[0, 100, 10, 200]), [0, 100, 5, 150]);
        assert_eq!(r.push(&[20, 300]), [10, 200, 15, 250]);
    }

    proptest! {
        #[test]
        fn floats_round_as_f32_round_does(v in any::<f32>()) {
            prop_assert_eq!(round_to_i16(v), v.round() as i16);
        }

        #[test]
        fn samples_near_full_scale_round_as_f32_round_does(sample in -1.1f32..1.1) {
            prop_assert_eq!(sample.to_i16(), (sample * 32768.0).round() as i16);
        }

        #[test]
        fn chunking_does_not_change_the_output(
            input in proptest::collection::vec(any::<i16>(), 0..600),
            cut in 0usize..600,
            from in 1u32..100_000,
            to in 1u32..100_000,
        ) {
            let even = &input[..input.len() / 2 * 2];
            let whole = Resampler::new(from, to, 2).push(even);
            let cut = cut.min(even.len()) / 2 * 2;
            let mut r = Resampler::new(from, to, 2);
            let mut parts = r.push(&even[..cut]);
            parts.extend(r.push(&even[cut..]));
            prop_assert_eq!(whole, parts);
        }
    }
}
