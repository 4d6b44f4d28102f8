//! A participant's Opus stream decoded to PCM for the mixer: 48 kHz (the Opus RTP
//! clock, so RTP timestamps count output samples) stereo interleaved `i16`, the
//! format [`crate::mixer::audio_mixer::AudioMixer`] sums.
//!
//! Most participants send mono (a microphone). A mono stream is decoded by a mono
//! decoder and its samples copied to both channels: a stereo decoder would run the
//! whole synthesis for both channels of what is one. The first stereo packet of a
//! stream (its sender switched to stereo) moves it to a stereo decoder for good,
//! which decodes mono packets too; the decoder's state starts afresh there, which
//! costs one packet's worth of smoothness once.

use ropus::{Channels, DecodeError, DecodeMode, Decoder, DecoderInitError};
use thiserror::Error;

use crate::ingest::depacketize::opus::CLOCK_RATE;

/// Output channels: always stereo, whatever the stream carries.
const CHANNELS: usize = 2;

/// Longest Opus packet in samples per channel (120 ms at 48 kHz).
const MAX_PACKET_SAMPLES: usize = 5760;

/// Concealment works in steps of 2.5 ms (the shortest Opus frame).
const CONCEAL_STEP: usize = 120;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpusDecodeError {
    #[error("Opus decoder setup: {0}")]
    Init(#[from] DecoderInitError),
    /// An empty payload is a lost packet: call [`OpusDecoder::conceal`] instead.
    #[error("empty Opus packet")]
    Empty,
    #[error("Opus packet rejected: {0}")]
    Malformed(#[from] DecodeError),
    #[error("cannot conceal {0} samples: a multiple of {CONCEAL_STEP} up to {MAX_PACKET_SAMPLES}")]
    ConcealLength(usize),
}

/// Whether a packet codes two channels: the `s` bit of its TOC byte (RFC 6716, 3.1).
fn is_stereo(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc & 0x04 != 0)
}

/// Decodes one participant's Opus packets in order; one decoder per stream, since
/// Opus frames depend on the previous ones.
pub struct OpusDecoder {
    inner: Decoder,
    stereo: bool,
    /// Nothing decoded yet: the decoder can still be chosen for the first packet.
    fresh: bool,
    /// What the decoder gives: interleaved stereo, or mono.
    decoded: Vec<i16>,
    /// Stereo interleaved output, when the decoder is mono.
    pcm: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("stereo", &self.stereo)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self, OpusDecodeError> {
        Ok(Self {
            inner: Decoder::new(CLOCK_RATE, Channels::Mono)?,
            stereo: false,
            fresh: true,
            decoded: vec![0; MAX_PACKET_SAMPLES * CHANNELS],
            pcm: vec![0; MAX_PACKET_SAMPLES * CHANNELS],
        })
    }

    /// Decodes one packet to stereo interleaved samples (`len / 2` per channel).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], OpusDecodeError> {
        if packet.is_empty() {
            // ropus would silently conceal instead; a caller passing no bytes has a bug
            // or a broken payload, not a loss it knows the length of.
            return Err(OpusDecodeError::Empty);
        }
        if !self.stereo && is_stereo(packet) {
            if !self.fresh {
                tracing::debug!("Opus stream switched to stereo: stereo decoder from here on");
            }
            self.inner = Decoder::new(CLOCK_RATE, Channels::Stereo)?;
            self.stereo = true;
        }
        self.run(packet, MAX_PACKET_SAMPLES)
    }

    /// Stands in for `samples` (per channel) of lost audio with the decoder's packet
    /// loss concealment, which continues the last sound and fades it out.
    #[cfg(test)]
    fn conceal(&mut self, samples: usize) -> Result<&[i16], OpusDecodeError> {
        if samples == 0 || samples % CONCEAL_STEP != 0 || samples > MAX_PACKET_SAMPLES {
            return Err(OpusDecodeError::ConcealLength(samples));
        }
        self.run(&[], samples)
    }

    /// Decodes `packet` (concealment when empty) of at most `samples` per channel.
    fn run(&mut self, packet: &[u8], samples: usize) -> Result<&[i16], OpusDecodeError> {
        let channels = if self.stereo { 2 } else { 1 };
        let out = &mut self.decoded[..samples * channels];
        let n = self.inner.decode(packet, out, DecodeMode::Normal)?;
        self.fresh = false;
        if self.stereo {
            return Ok(&self.decoded[..n * CHANNELS]);
        }
        for (pair, &s) in self.pcm.chunks_exact_mut(CHANNELS).zip(&self.decoded[..n]) {
            pair.fill(s);
        }
        Ok(&self.pcm[..n * CHANNELS])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::audio::{ToneSource, ToneSpec, FRAME_SAMPLES};
    use proptest::prelude::*;

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
    }

    #[test]
    fn mono_stream_decodes_to_equal_stereo_channels() {
        let mut src = ToneSource::new(ToneSpec::default()).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut last = Vec::new();
        for _ in 0..5 {
            let p = src.next_packet().unwrap();
            last = dec.decode(&p.data).unwrap().to_vec();
            assert_eq!(last.len(), FRAME_SAMPLES * CHANNELS);
        }
        assert!(last.chunks_exact(2).all(|f| f[0] == f[1]));
        assert!(rms(&last) > 3000.0, "rms {}", rms(&last));
    }

    /// Packets of a tone with `channels`, decoded by a stereo decoder as before.
    fn stereo_reference(channels: u8, n: usize) -> (Vec<Vec<u8>>, Vec<i16>) {
        let spec = ToneSpec {
            channels,
            ..ToneSpec::default()
        };
        let mut src = ToneSource::new(spec).unwrap();
        let packets: Vec<Vec<u8>> = (0..n).map(|_| src.next_packet().unwrap().data).collect();
        let mut dec = Decoder::new(CLOCK_RATE, Channels::Stereo).unwrap();
        let mut pcm = vec![0; MAX_PACKET_SAMPLES * CHANNELS];
        let mut all = Vec::new();
        for p in &packets {
            let k = dec.decode(p, &mut pcm, DecodeMode::Normal).unwrap();
            all.extend_from_slice(&pcm[..k * CHANNELS]);
        }
        (packets, all)
    }

    #[test]
    fn mono_decoding_gives_what_a_stereo_decoder_gives() {
        let (packets, want) = stereo_reference(1, 25);
        assert!(!is_stereo(&packets[0]));
        let mut dec = OpusDecoder::new().unwrap();
        let got: Vec<i16> = packets
            .iter()
            .flat_map(|p| dec.decode(p).unwrap().to_vec())
            .collect();
        assert!(!dec.stereo, "a mono stream keeps the mono decoder");
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(g, w)| g.abs_diff(*w)).max();
        assert!(worst <= Some(2), "largest difference {worst:?}");
        assert!(rms(&got) > 3000.0, "rms {}", rms(&got));
    }

    #[test]
    fn a_stereo_stream_is_decoded_in_stereo_from_its_first_packet() {
        let (packets, want) = stereo_reference(2, 10);
        assert!(is_stereo(&packets[0]));
        let mut dec = OpusDecoder::new().unwrap();
        let got: Vec<i16> = packets
            .iter()
            .flat_map(|p| dec.decode(p).unwrap().to_vec())
            .collect();
        assert_eq!(got, want, "the same as a stereo decoder");
    }

    #[test]
    fn a_stream_turning_stereo_goes_on_in_stereo() {
        let (mono, _) = stereo_reference(1, 5);
        let (stereo, _) = stereo_reference(2, 5);
        let mut dec = OpusDecoder::new().unwrap();
        for p in &mono {
            assert_eq!(dec.decode(p).unwrap().len(), FRAME_SAMPLES * CHANNELS);
        }
        for p in &stereo {
            assert_eq!(dec.decode(p).unwrap().len(), FRAME_SAMPLES * CHANNELS);
        }
        assert!(dec.stereo);
        // A stereo decoder decodes mono packets too: no switching back and forth.
        let back = dec.decode(&mono[0]).unwrap();
        assert!(back.chunks_exact(2).all(|f| f[0] == f[1]));
        assert!(dec.stereo);
    }

    #[test]
    fn lost_packet_is_concealed_then_decoding_resumes() {
        let spec = ToneSpec {
            channels: 2,
            ..ToneSpec::default()
        };
        let mut src = ToneSource::new(spec).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        for _ in 0..5 {
            dec.decode(&src.next_packet().unwrap().data).unwrap();
        }
        src.next_packet().unwrap();
        let concealed = dec.conceal(FRAME_SAMPLES).unwrap();
        assert_eq!(concealed.len(), FRAME_SAMPLES * CHANNELS);
        // The concealment carries the tone on rather than dropping to silence.
        assert!(rms(concealed) > 500.0, "rms {}", rms(concealed));
        let next = dec.decode(&src.next_packet().unwrap().data).unwrap();
        assert_eq!(next.len(), FRAME_SAMPLES * CHANNELS);
    }

    #[test]
    fn concealment_before_any_packet_is_silence() {
        let mut dec = OpusDecoder::new().unwrap();
        let pcm = dec.conceal(2 * CONCEAL_STEP).unwrap();
        assert_eq!(pcm.len(), 2 * CONCEAL_STEP * CHANNELS);
        assert!(pcm.iter().all(|&s| s == 0));
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut dec = OpusDecoder::new().unwrap();
        assert_eq!(dec.decode(&[]), Err(OpusDecodeError::Empty));
        for n in [0, 100, MAX_PACKET_SAMPLES + CONCEAL_STEP] {
            assert_eq!(dec.conceal(n), Err(OpusDecodeError::ConcealLength(n)));
        }
        // Code 3 packet claiming 63 frames of 120 ms: beyond the 120 ms limit.
        assert!(matches!(
            dec.decode(&[0x1b, 0x3f, 0, 0]),
            Err(OpusDecodeError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(packet in proptest::collection::vec(any::<u8>(), 1..400)) {
            let mut dec = OpusDecoder::new().unwrap();
            if let Ok(pcm) = dec.decode(&packet) {
                prop_assert!(pcm.len() <= MAX_PACKET_SAMPLES * CHANNELS);
                prop_assert_eq!(pcm.len() % CHANNELS, 0);
            }
        }
    }
}
