//! The mix's Opus encoder: 20 ms stereo frames at 48 kHz in, one Opus packet each
//! out. Also the Opus encoder setup every recbox audio stream shares (the synthetic
//! participants use it too), so the mix and its sources are coded alike.

use ropus::{Application, Bitrate, Channels, EncodeError, Encoder, EncoderBuildError};
use thiserror::Error;

use crate::ingest::depacketize::opus::CLOCK_RATE;

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// Channels of the mix.
pub const CHANNELS: usize = 2;

/// Interleaved samples in one stereo frame of the mix.
pub const FRAME_LEN: usize = FRAME_SAMPLES * CHANNELS;

#[cfg(test)]
pub const DEFAULT_BITRATE_BPS: u32 = 96_000;

/// Room for any single-frame Opus packet (at most 1275 bytes, RFC 6716 section 3.2.1).
const MAX_PACKET_BYTES: usize = 1500;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixEncoderError {
    #[error("Opus encoder setup: {0}")]
    Build(#[from] EncoderBuildError),
    #[error("Opus encoding: {0}")]
    Encode(#[from] EncodeError),
}

/// A 48 kHz Opus encoder in general-audio mode (music and speech alike) at a fixed
/// target bitrate.
pub fn opus_encoder(channels: Channels, bitrate_bps: u32) -> Result<Encoder, EncoderBuildError> {
    Encoder::builder(CLOCK_RATE, channels, Application::Audio)
        .bitrate(Bitrate::Bits(bitrate_bps))
        .build()
}

/// The Opus pre-skip of a stream `encoder` codes: its lookahead in 48 kHz samples,
/// which a player drops from the start.
pub fn pre_skip(encoder: &Encoder) -> u16 {
    // The lookahead is a few hundred samples at most; the header field is 16 bits.
    encoder.lookahead() as u16
}

/// Encodes one frame of interleaved samples to one Opus packet.
pub fn encode_packet(encoder: &mut Encoder, pcm: &[i16]) -> Result<Vec<u8>, EncodeError> {
    let mut out = [0u8; MAX_PACKET_BYTES];
    let n = encoder.encode(pcm, &mut out)?;
    Ok(out[..n].to_vec())
}

/// Encodes the mixed audio, one 20 ms stereo frame to one Opus packet.
pub struct MixEncoder {
    encoder: Encoder,
}

impl std::fmt::Debug for MixEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixEncoder")
            .field("bitrate", &self.encoder.bitrate())
            .finish_non_exhaustive()
    }
}

impl MixEncoder {
    /// `bitrate_bps` is the target ([`DEFAULT_BITRATE_BPS`] suits a meeting); zero is
    /// refused, other values outside 500..=1_500_000 are clamped into it.
    pub fn new(bitrate_bps: u32) -> Result<Self, MixEncoderError> {
        Ok(Self {
            encoder: opus_encoder(Channels::Stereo, bitrate_bps)?,
        })
    }

    /// Samples a player drops from the start of the stream (the Opus pre-skip).
    pub fn pre_skip(&self) -> u16 {
        pre_skip(&self.encoder)
    }

    pub fn encode(&mut self, frame: &[i16; FRAME_LEN]) -> Result<Vec<u8>, MixEncoderError> {
        Ok(encode_packet(&mut self.encoder, frame)?)
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
        let mut enc = MixEncoder::new(DEFAULT_BITRATE_BPS).unwrap();
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
            assert!(!packet.is_empty() && packet.len() < MAX_PACKET_BYTES);
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
    fn zero_bitrate_is_refused() {
        assert!(matches!(
            MixEncoder::new(0),
            Err(MixEncoderError::Build(EncoderBuildError::BadArg))
        ));
    }
}
