//! Finding test tones in audio: each synthetic participant speaks its own tone
//! ([`crate::synth::TONES_HZ`]), so the tones present in a mix say who is audible.

/// Power of the tone at `freq` Hz in mono `samples` taken at `rate` Hz, relative to
/// a full-scale sine: a sine of peak amplitude `a` (of full scale) gives about `a²`.
///
/// A Goertzel filter over a Hann-windowed block, so tones a few bins apart (bins are
/// `rate / samples.len()` Hz wide) do not leak into each other. Take one channel of
/// interleaved audio with `step_by`.
pub fn tone_power(samples: &[i16], rate: u32, freq: f32) -> f32 {
    let n = samples.len();
    if n < 2 {
        return 0.0;
    }
    let w = std::f64::consts::TAU * f64::from(freq) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (i, &x) in samples.iter().enumerate() {
        let hann = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / (n - 1) as f64).cos();
        let s0 = f64::from(x) / 32768.0 * hann + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let magnitude = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0).sqrt();
    // A sine of amplitude a gives a magnitude of a * n/2 times the Hann window's mean (1/2).
    let amplitude = magnitude * 4.0 / n as f64;
    (amplitude * amplitude) as f32
}

/// The `candidates` whose [`tone_power`] in `samples` is at least `min_power`,
/// strongest first.
pub(crate) fn dominant_tones(
    samples: &[i16],
    rate: u32,
    candidates: &[f32],
    min_power: f32,
) -> Vec<f32> {
    let mut found: Vec<(f32, f32)> = candidates
        .iter()
        .map(|&f| (f, tone_power(samples, rate, f)))
        .filter(|&(_, p)| p >= min_power)
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    found.into_iter().map(|(f, _)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::TONES_HZ;

    fn sine(freq: f32, amplitude: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amplitude * (std::f32::consts::TAU * freq * i as f32 / 48_000.0 + 0.3).sin())
            .collect()
    }

    fn to_i16(x: &[f32]) -> Vec<i16> {
        x.iter().map(|&v| (v * 32767.0) as i16).collect()
    }

    #[test]
    fn power_of_a_sine_is_its_squared_amplitude() {
        let pcm = to_i16(&sine(440.0, 0.5, 4800));
        let p = tone_power(&pcm, 48_000, 440.0);
        assert!((p - 0.25).abs() < 0.01, "power {p}");
        // A neighbouring participant's tone, 70 Hz away, is not there.
        assert!(tone_power(&pcm, 48_000, 510.0) < 1e-4);
        assert_eq!(tone_power(&[], 48_000, 440.0), 0.0);
    }

    #[test]
    fn finds_the_tones_of_a_mix_strongest_first() {
        let a = sine(TONES_HZ[3], 0.2, 4800);
        let b = sine(TONES_HZ[4], 0.4, 4800);
        let mix: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let found = dominant_tones(&to_i16(&mix), 48_000, &TONES_HZ, 0.01);
        assert_eq!(found, vec![TONES_HZ[4], TONES_HZ[3]]);
        assert!(dominant_tones(&vec![0; 4800], 48_000, &TONES_HZ, 0.01).is_empty());
    }
}
