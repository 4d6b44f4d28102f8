//! A sine tone encoded to Opus by the box's own encoder (libopus), 20 ms a packet.

pub use crate::mixer::audio_encoder::FRAME_SAMPLES;
use crate::mixer::audio_encoder::{OpusEncodeError, OpusEncoder};

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(transparent)]
    Encoder(#[from] OpusEncodeError),
}

#[derive(Debug, Clone, Copy)]
pub struct ToneSpec {
    pub freq_hz: f32,
    /// Peak amplitude, 0.0..=1.0 of full scale.
    pub amplitude: f32,
    pub channels: u8,
    pub bitrate_bps: u32,
}

impl Default for ToneSpec {
    fn default() -> Self {
        Self {
            freq_hz: super::TONES_HZ[0],
            amplitude: 0.3,
            channels: 1,
            bitrate_bps: 48_000,
        }
    }
}

/// One encoded Opus packet.
#[derive(Debug, Clone)]
pub struct EncodedPacket {
    pub data: Vec<u8>,
    /// Presentation time in 48 kHz samples since the first packet.
    pub pts: i64,
}

pub struct ToneSource {
    spec: ToneSpec,
    encoder: OpusEncoder,
    sample_no: u64,
    pcm: Vec<i16>,
}

impl ToneSource {
    pub fn new(spec: ToneSpec) -> Result<Self, AudioError> {
        let encoder = OpusEncoder::new(usize::from(spec.channels), spec.bitrate_bps)?;
        Ok(Self {
            spec,
            encoder,
            sample_no: 0,
            pcm: vec![0; FRAME_SAMPLES * usize::from(spec.channels)],
        })
    }

    /// Encoder lookahead in 48 kHz samples: the Opus pre-skip of the stream.
    pub fn pre_skip(&self) -> u16 {
        self.encoder.pre_skip()
    }

    pub fn channels(&self) -> u8 {
        self.spec.channels
    }

    pub fn next_packet(&mut self) -> Result<EncodedPacket, AudioError> {
        let ch = usize::from(self.spec.channels);
        let step = std::f64::consts::TAU * f64::from(self.spec.freq_hz) / 48_000.0;
        let amp = f64::from(self.spec.amplitude.clamp(0.0, 1.0)) * f64::from(i16::MAX);
        for (i, frame) in self.pcm.chunks_exact_mut(ch).enumerate() {
            let s = ((self.sample_no + i as u64) as f64 * step).sin() * amp;
            frame.fill(s as i16);
        }
        let data = self.encoder.encode(&self.pcm)?;
        let pts = self.sample_no as i64;
        self.sample_no += FRAME_SAMPLES as u64;
        Ok(EncodedPacket { data, pts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropus::{Channels, DecodeMode, Decoder};

    #[test]
    fn tone_round_trips_through_opus() {
        let mut src = ToneSource::new(ToneSpec::default()).unwrap();
        let mut dec = Decoder::new(48_000, Channels::Mono).unwrap();
        let mut pcm = vec![0i16; FRAME_SAMPLES];
        let mut energy = 0.0f64;
        for i in 0..10 {
            let p = src.next_packet().unwrap();
            assert_eq!(p.pts, i * FRAME_SAMPLES as i64);
            let n = dec.decode(&p.data, &mut pcm, DecodeMode::Normal).unwrap();
            assert_eq!(n, FRAME_SAMPLES);
            energy += pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        }
        let rms = (energy / (10.0 * FRAME_SAMPLES as f64)).sqrt();
        // 0.3 full-scale sine has RMS 0.3/sqrt(2) * 32767 ~ 6950; the first frames
        // carry the encoder's lookahead silence, so allow a wide band.
        assert!(rms > 3000.0 && rms < 8000.0, "rms {rms}");
    }

    #[test]
    fn bad_channel_count_is_refused() {
        let spec = ToneSpec {
            channels: 3,
            ..ToneSpec::default()
        };
        assert!(matches!(
            ToneSource::new(spec),
            Err(AudioError::Encoder(OpusEncodeError::Channels(3)))
        ));
    }
}
