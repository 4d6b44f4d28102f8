//! A participant's Opus stream decoded to PCM for the mixer: 48 kHz (the Opus RTP
//! clock, so RTP timestamps count output samples) stereo interleaved `i16`, the
//! format [`crate::mixer::audio_mixer::AudioMixer`] sums. The decoding is
//! libavcodec's ([`crate::libav`]).
//!
//! Most participants send mono (a microphone). A mono stream is decoded by a mono
//! decoder and its samples copied to both channels: a stereo decoder would run the
//! whole synthesis for both channels of what is one. The first stereo packet of a
//! stream (its sender switched to stereo) moves it to a stereo decoder for good,
//! which decodes mono packets too; the decoder's state starts afresh there, which
//! costs one packet's worth of smoothness once.

use thiserror::Error;

use crate::audio::convert::Sample;
use crate::ingest::depacketize::opus::CLOCK_RATE;
use crate::libav::{self, LibavError};

/// Output channels: always stereo, whatever the stream carries.
const CHANNELS: usize = 2;

/// Longest Opus packet in samples per channel (120 ms at 48 kHz).
const MAX_PACKET_SAMPLES: usize = 5760;

#[derive(Debug, Error)]
pub enum OpusDecodeError {
    #[error("Opus decoder setup: {0}")]
    Init(#[source] LibavError),
    /// An empty payload is a lost packet, not one to decode.
    #[error("empty Opus packet")]
    Empty,
    #[error("Opus packet rejected: {0}")]
    Malformed(#[from] LibavError),
    #[error("Opus decoder gave samples in format {0}, not planar float")]
    Format(i32),
    #[error("Opus packet decodes to more than {MAX_PACKET_SAMPLES} samples")]
    TooLong,
}

/// Whether a packet codes two channels: the `s` bit of its TOC byte (RFC 6716, 3.1).
fn is_stereo(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc & 0x04 != 0)
}

/// A decoder of `channels` channels at 48 kHz.
fn open(channels: usize) -> Result<libav::Decoder, OpusDecodeError> {
    libav::Decoder::open(libav::Codec::Opus, |ctx| {
        ctx.sample_rate = CLOCK_RATE as i32;
        libav::set_channels(ctx, channels);
    })
    .map_err(OpusDecodeError::Init)
}

/// Decodes one participant's Opus packets in order; one decoder per stream, since
/// Opus frames depend on the previous ones.
pub struct OpusDecoder {
    inner: libav::Decoder,
    stereo: bool,
    /// Nothing decoded yet: the decoder can still be chosen for the first packet.
    fresh: bool,
    /// Stereo interleaved output.
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
            inner: open(1)?,
            stereo: false,
            fresh: true,
            pcm: Vec::with_capacity(MAX_PACKET_SAMPLES * CHANNELS),
        })
    }

    /// Decodes one packet to stereo interleaved samples (`len / 2` per channel).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], OpusDecodeError> {
        if packet.is_empty() {
            // A caller passing no bytes has a bug or a broken payload, not a loss.
            return Err(OpusDecodeError::Empty);
        }
        if !self.stereo && is_stereo(packet) {
            if !self.fresh {
                tracing::debug!("Opus stream switched to stereo: stereo decoder from here on");
            }
            self.inner = open(2)?;
            self.stereo = true;
        }
        let pcm = &mut self.pcm;
        pcm.clear();
        self.inner.decode(packet, |frame| {
            let left = libav::float_plane(frame, 0).ok_or(OpusDecodeError::Format(frame.format))?;
            // A mono decoder's one channel goes to both.
            let right = libav::float_plane(frame, 1).unwrap_or(left);
            if pcm.len() / CHANNELS + left.len() > MAX_PACKET_SAMPLES {
                return Err(OpusDecodeError::TooLong);
            }
            // Into place rather than pushed a pair at a time: a loop the compiler can
            // keep free of capacity checks.
            let start = pcm.len();
            pcm.resize(start + left.len().min(right.len()) * CHANNELS, 0);
            for ((out, &l), &r) in pcm[start..].chunks_exact_mut(CHANNELS).zip(left).zip(right) {
                out[0] = l.to_i16();
                out[1] = r.to_i16();
            }
            Ok(())
        })?;
        self.fresh = false;
        Ok(&self.pcm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::audio::{ToneSource, ToneSpec, FRAME_SAMPLES};
    use proptest::prelude::*;
    use ropus::{Channels, DecodeMode, Decoder};

    /// How far `got` is from `want`: the RMS of the difference over that of `want`.
    /// libavcodec's float decoder and ropus's are not bit-exact with each other.
    fn relative_error(got: &[i16], want: &[i16]) -> f64 {
        assert_eq!(got.len(), want.len());
        let diff: Vec<i16> = got
            .iter()
            .zip(want)
            .map(|(g, w)| g.saturating_sub(*w))
            .collect();
        rms(&diff) / rms(want)
    }

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
        let error = relative_error(&got, &want);
        assert!(error < 0.01, "relative error {error}");
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
        let error = relative_error(&got, &want);
        assert!(error < 0.01, "relative error {error}");
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
    fn bad_requests_are_errors() {
        let mut dec = OpusDecoder::new().unwrap();
        assert!(matches!(dec.decode(&[]), Err(OpusDecodeError::Empty)));
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
