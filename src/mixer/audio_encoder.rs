//! The box's Opus encoder: 20 ms frames at 48 kHz in, one Opus packet each out. It
//! encodes the mix (stereo), and the synthetic participants' tones use it too, so the
//! mix and its sources are coded alike. The encoding is libopus's, through
//! libavcodec ([`crate::libav`]): the same library and settings ffmpeg uses, at half
//! the CPU ropus took for the mix.

use thiserror::Error;

use crate::libav::{self, LibavError};

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// Channels of the mix.
pub const CHANNELS: usize = 2;

/// Interleaved samples in one stereo frame of the mix.
pub const FRAME_LEN: usize = FRAME_SAMPLES * CHANNELS;

#[cfg(test)]
pub const DEFAULT_BITRATE_BPS: u32 = 96_000;

/// What libopus takes, a channel.
const BITRATE_BPS: std::ops::RangeInclusive<u32> = 500..=256_000;

#[derive(Debug, Error)]
pub enum OpusEncodeError {
    #[error("Opus encoder of {0} channels: only mono and stereo")]
    Channels(usize),
    #[error("Opus bitrate {bitrate_bps} bit/s for {channels} channel(s): libopus takes {} to {} a channel", BITRATE_BPS.start(), BITRATE_BPS.end())]
    Bitrate { bitrate_bps: u32, channels: usize },
    #[error("Opus encoder setup: {0}")]
    Setup(#[source] LibavError),
    #[error("Opus encoding: {0}")]
    Encode(#[source] LibavError),
}

/// A 48 kHz Opus encoder in general-audio mode (music and speech alike) at a target
/// bitrate, 20 ms a packet.
pub struct OpusEncoder {
    inner: libav::OpusEncoder,
    channels: usize,
    bitrate_bps: u32,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("channels", &self.channels)
            .field("bitrate_bps", &self.bitrate_bps)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// `channels` is 1 or 2; `bitrate_bps` 500 to 256 000 a channel (the mix's
    /// [`DEFAULT_BITRATE_BPS`] suits a meeting).
    pub fn new(channels: usize, bitrate_bps: u32) -> Result<Self, OpusEncodeError> {
        if !(1..=2).contains(&channels) {
            return Err(OpusEncodeError::Channels(channels));
        }
        // libavcodec's wrapper takes the total in 500..=256 000 times the channels.
        if bitrate_bps < *BITRATE_BPS.start() || bitrate_bps > BITRATE_BPS.end() * channels as u32 {
            return Err(OpusEncodeError::Bitrate {
                bitrate_bps,
                channels,
            });
        }
        let inner = libav::OpusEncoder::open(channels, bitrate_bps, FRAME_SAMPLES)
            .map_err(OpusEncodeError::Setup)?;
        Ok(Self {
            inner,
            channels,
            bitrate_bps,
        })
    }

    /// Samples a player drops from the start of the stream (the Opus pre-skip).
    pub fn pre_skip(&self) -> u16 {
        self.inner.pre_skip()
    }

    /// Encodes one frame ([`FRAME_SAMPLES`] interleaved samples a channel) to one
    /// Opus packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, OpusEncodeError> {
        self.inner.encode(pcm).map_err(OpusEncodeError::Encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::opus::OpusDecoder;
    use crate::mixer::tone::{dominant_tones, tone_power};
    use crate::synth::TONES_HZ;

    #[test]
    fn tone_survives_the_round_trip_through_opus() {
        let mut enc = OpusEncoder::new(CHANNELS, DEFAULT_BITRATE_BPS).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let amplitude = 0.3 * 32767.0;
        let mut decoded = Vec::new();
        for n in 0..25 {
            let mut frame = [0i16; FRAME_LEN];
            for (i, s) in frame.chunks_exact_mut(CHANNELS).enumerate() {
                let t = (n * FRAME_SAMPLES + i) as f32 / 48_000.0;
                s.fill((amplitude * (std::f32::consts::TAU * 440.0 * t).sin()) as i16);
            }
            let packet = enc.encode(&frame).unwrap();
            // A single-frame Opus packet is at most 1275 bytes (RFC 6716, 3.2.1).
            assert!(!packet.is_empty() && packet.len() <= 1275);
            decoded.extend_from_slice(dec.decode(&packet).unwrap());
        }
        let skip = usize::from(enc.pre_skip()) * CHANNELS;
        assert!(skip > 0);
        for channel in 0..CHANNELS {
            let mono: Vec<i16> = decoded[skip + channel..]
                .iter()
                .step_by(CHANNELS)
                .copied()
                .collect();
            let p = tone_power(&mono, 48_000, 440.0);
            assert!((p - 0.09).abs() < 0.01, "power {p}");
            assert_eq!(dominant_tones(&mono, 48_000, &TONES_HZ, 0.001), vec![440.0]);
        }
    }

    #[test]
    fn bitrates_libopus_cannot_take_and_odd_channel_counts_are_refused() {
        for (channels, bitrate_bps) in [(2, 0), (1, 499), (1, 256_001), (2, 512_002)] {
            let e = OpusEncoder::new(channels, bitrate_bps).unwrap_err();
            assert!(matches!(e, OpusEncodeError::Bitrate { .. }), "{e}");
        }
        for channels in [0, 3] {
            let e = OpusEncoder::new(channels, 64_000).unwrap_err();
            assert!(
                matches!(e, OpusEncodeError::Channels(n) if n == channels),
                "{e}"
            );
        }
        // The config's whole range (6 to 510 kbit/s) is taken for the stereo mix.
        for bitrate_bps in [6_000, 510_000] {
            OpusEncoder::new(CHANNELS, bitrate_bps).unwrap();
        }
    }

    #[test]
    fn a_frame_of_the_wrong_length_is_refused() {
        let mut enc = OpusEncoder::new(1, 48_000).unwrap();
        let e = enc.encode(&[0; FRAME_LEN]).unwrap_err();
        assert!(matches!(e, OpusEncodeError::Encode(_)), "{e}");
        enc.encode(&[0; FRAME_SAMPLES]).unwrap();
    }
}
