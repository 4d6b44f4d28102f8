//! The box's chimes: short sounds on its speaker when a recording starts, stops or
//! meets a fault, synthesised as 48 kHz mono PCM.
//!
//! Each is told apart by its melody alone, so people in the room know what happened
//! without looking: start rises (E5 to A5), stop falls (A5 to E5), a fault is three
//! quick high beeps (E6). Every note fades in and out so the speaker does not click,
//! and peaks at half of full scale, well clear of clipping.

use crate::ingest::depacketize::opus::CLOCK_RATE;
use crate::mixer::tone::dominant_tones;

/// What a chime announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chime {
    Start,
    Stop,
    Fault,
}

/// One note of a chime.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Note {
    freq_hz: f32,
    start_ms: u32,
    length_ms: u32,
}

pub const E5_HZ: f32 = 659.25;
pub const A5_HZ: f32 = 880.0;
pub const E6_HZ: f32 = 1318.5;
/// Every pitch a chime uses.
const PITCHES_HZ: [f32; 3] = [E5_HZ, A5_HZ, E6_HZ];

/// Peak amplitude of a note, of full scale.
const AMPLITUDE: f32 = 0.5;
/// Fade in and out of every note: long enough not to click, short enough to sound
/// like a struck note.
const FADE_MS: u32 = 10;

const fn note(freq_hz: f32, start_ms: u32, length_ms: u32) -> Note {
    Note {
        freq_hz,
        start_ms,
        length_ms,
    }
}

impl Chime {
    pub const ALL: [Chime; 3] = [Chime::Start, Chime::Stop, Chime::Fault];

    fn notes(self) -> &'static [Note] {
        const START: [Note; 2] = [note(E5_HZ, 0, 160), note(A5_HZ, 180, 260)];
        const STOP: [Note; 2] = [note(A5_HZ, 0, 160), note(E5_HZ, 180, 260)];
        const FAULT: [Note; 3] = [
            note(E6_HZ, 0, 90),
            note(E6_HZ, 140, 90),
            note(E6_HZ, 280, 90),
        ];
        match self {
            Chime::Start => &START,
            Chime::Stop => &STOP,
            Chime::Fault => &FAULT,
        }
    }

    /// Length in milliseconds, to the end of the last note.
    fn length_ms(self) -> u32 {
        self.notes()
            .iter()
            .map(|n| n.start_ms + n.length_ms)
            .max()
            .unwrap_or(0)
    }

    /// The chime as 48 kHz mono samples.
    pub fn pcm(self) -> Vec<i16> {
        let per_ms = (CLOCK_RATE / 1000) as usize;
        let mut out = vec![0.0f32; self.length_ms() as usize * per_ms];
        for n in self.notes() {
            let (start, len) = (n.start_ms as usize * per_ms, n.length_ms as usize * per_ms);
            let fade = (FADE_MS as usize * per_ms).min(len / 2);
            let step = std::f32::consts::TAU * n.freq_hz / CLOCK_RATE as f32;
            for (i, s) in out[start..start + len].iter_mut().enumerate() {
                // Raised-cosine ramps at both ends, and a gentle decay like a struck bell.
                let ramp = |k: usize| {
                    if k >= fade {
                        1.0
                    } else {
                        0.5 - 0.5 * (std::f32::consts::PI * k as f32 / fade as f32).cos()
                    }
                };
                let envelope = ramp(i) * ramp(len - 1 - i) * (-1.5 * i as f32 / len as f32).exp();
                *s += AMPLITUDE * envelope * (step * i as f32).sin();
            }
        }
        out.iter().map(|&x| (x * 32767.0).round() as i16).collect()
    }
}

impl std::fmt::Display for Chime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chime::Start => "start",
            Chime::Stop => "stop",
            Chime::Fault => "fault",
        })
    }
}

/// Power below which a window counts as silence in [`melody`].
const SOUNDING: f32 = 1e-3;

/// The notes heard in mono audio at `rate`, in order: the strongest chime pitch of
/// each 20 ms window that sounds, a repeated pitch counting again only after a silent
/// window. How a chime is recognised in what a device played.
pub fn melody(mono: &[i16], rate: u32) -> Vec<f32> {
    let window = (rate / 50).max(1) as usize;
    let mut notes = Vec::new();
    let mut last = None;
    for w in mono.chunks_exact(window) {
        let heard = dominant_tones(w, rate, &PITCHES_HZ, SOUNDING)
            .first()
            .copied();
        if heard.is_some() && heard != last {
            notes.extend(heard);
        }
        last = heard;
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chime_plays_its_melody() {
        assert_eq!(melody(&Chime::Start.pcm(), CLOCK_RATE), [E5_HZ, A5_HZ]);
        assert_eq!(melody(&Chime::Stop.pcm(), CLOCK_RATE), [A5_HZ, E5_HZ]);
        assert_eq!(melody(&Chime::Fault.pcm(), CLOCK_RATE), [E6_HZ; 3]);
    }

    #[test]
    fn notes_sound_where_they_are_and_nowhere_else() {
        let per_ms = (CLOCK_RATE / 1000) as usize;
        for chime in Chime::ALL {
            let pcm = chime.pcm();
            for n in chime.notes() {
                // The middle of the note, clear of the fades.
                let from = (n.start_ms as usize + 20) * per_ms;
                let to = (n.start_ms + n.length_ms - 20) as usize * per_ms;
                let found = dominant_tones(&pcm[from..to], CLOCK_RATE, &PITCHES_HZ, 0.01);
                assert_eq!(found.first(), Some(&n.freq_hz), "{chime}: {n:?}");
            }
        }
    }

    #[test]
    fn short_unclipped_and_without_clicks() {
        for chime in Chime::ALL {
            let pcm = chime.pcm();
            assert!(
                pcm.len() < CLOCK_RATE as usize,
                "{chime}: {} samples",
                pcm.len()
            );
            assert!(pcm.len() >= CLOCK_RATE as usize / 4, "{chime} is audible");
            let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(peak > 10_000, "{chime}: peak {peak}");
            assert!(
                u32::from(peak) <= (AMPLITUDE * 32767.0) as u32 + 1,
                "{chime}: peak {peak}"
            );
            // Starts and ends in silence, and no step between samples is steeper than
            // the steepest note's sine itself: no discontinuity anywhere.
            assert!(
                pcm[0].abs() < 100 && pcm[pcm.len() - 1].abs() < 100,
                "{chime}"
            );
            let top = chime.notes().iter().map(|n| n.freq_hz).fold(0.0, f32::max);
            let slope = std::f32::consts::TAU * top / CLOCK_RATE as f32 * AMPLITUDE * 32767.0;
            let steepest = pcm
                .windows(2)
                .map(|w| (i32::from(w[1]) - i32::from(w[0])).unsigned_abs())
                .max()
                .unwrap();
            assert!(
                steepest as f32 <= slope * 1.1,
                "{chime}: step {steepest}, sine {slope}"
            );
        }
    }

    #[test]
    fn silence_and_other_pitches_are_no_melody() {
        assert!(melody(&[0; 4800], CLOCK_RATE).is_empty());
        let tone: Vec<i16> = (0..4800)
            .map(|i| (8000.0 * (std::f32::consts::TAU * 300.0 * i as f32 / 48_000.0).sin()) as i16)
            .collect();
        assert!(melody(&tone, CLOCK_RATE).is_empty());
    }
}
