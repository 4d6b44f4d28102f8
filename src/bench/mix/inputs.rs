//! The benchmark's inputs, recorded once and replayed to each side: N participants'
//! H.264 or VP8 (the synthetic test pattern, participant 1 with the latency marker) and
//! Opus (their tones), already cut into the RTP packets an SFU would send, each with
//! its instant relative to the start. RTCP sender reports are placed in the
//! schedule too; they are built when sent, as they carry the wall clock.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use super::marker::{gray, state_of_frame, MarkerLayout, FRAMES_PER_STATE};
use crate::ingest::depacketize::h264::H264Error;
use crate::ingest::rtp::RtpSender;
use crate::ingest::MediaKind;
use crate::link::frame::text;
use crate::sfu::control::{ParticipantInfo, StreamInfo};
use crate::sfu::sim::packetizer::VideoPacketizer;
use crate::sfu::sim::participant::ssrc;
use crate::sfu::sim::{CodecMix, AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};
use crate::synth::audio::{AudioError, FRAME_SAMPLES};
use crate::synth::video::PatternError;
use crate::synth::{
    PatternCodec, PatternSource, PatternSpec, ToneSource, ToneSpec, PALETTE, TONES_HZ,
};

/// Largest RTP payload, as the simulated SFU sends.
const MAX_PAYLOAD: usize = 1200;
const AUDIO_PACKET: Duration = Duration::from_millis(20);
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum InputError {
    #[error("participants must be 1..=16, got {0}")]
    Participants(u8),
    #[error("video: {0}")]
    Video(#[from] PatternError),
    #[error("audio: {0}")]
    Audio(#[from] AudioError),
    #[error("H.264 packetizer: {0}")]
    Packetizer(#[from] H264Error),
}

/// One RTP stream of the inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputStream {
    /// Participant number, from 1.
    participant: u8,
    pub(crate) kind: MediaKind,
    /// The video's codec (H.264 for audio streams).
    pub(crate) codec: PatternCodec,
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    /// RTP timestamp of media time 0.
    pub(crate) ts0: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// An RTP packet; `marker_state` when it is the first packet of the first input
    /// frame carrying that latency-marker state.
    Rtp {
        data: Vec<u8>,
        marker_state: Option<u64>,
    },
    /// An RTCP sender report of the stream, due now.
    Report,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scheduled {
    /// From the start of the replay.
    pub(crate) at: Duration,
    /// Index into [`Inputs::streams`].
    pub(crate) stream: usize,
    pub(crate) item: Item,
}

pub(crate) struct Inputs {
    pub(crate) streams: Vec<InputStream>,
    /// In time order; reports before the media of the same instant.
    pub(crate) schedule: Vec<Scheduled>,
    pub(crate) video: PatternSpec,
    pub(crate) duration: Duration,
    /// Latency-marker states the replay goes through.
    pub(crate) marker_states: u64,
}

impl Inputs {
    /// Records `participants` for `duration`: the videos (`video`'s size, rate and
    /// GOP, each in its participant's colour and its codec of `codecs`) and tones,
    /// packetized.
    pub(crate) fn record(
        participants: u8,
        duration: Duration,
        video: PatternSpec,
        codecs: CodecMix,
        seed: u64,
    ) -> Result<Self, InputError> {
        if !(1..=16).contains(&participants) {
            return Err(InputError::Participants(participants));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let marker = MarkerLayout::for_size(usize::from(video.width), usize::from(video.height));
        let frames = (duration.as_secs_f64() * f64::from(video.fps)).round() as u64;
        let packets = (duration.as_secs_f64() / AUDIO_PACKET.as_secs_f64()).round() as u64;
        let mut streams = Vec::new();
        let mut schedule = Vec::new();
        for n in 1..=participants {
            let index = usize::from(n - 1);
            for kind in [MediaKind::Video, MediaKind::Audio] {
                let payload_type = match kind {
                    MediaKind::Video => VIDEO_PAYLOAD_TYPE,
                    MediaKind::Audio => AUDIO_PAYLOAD_TYPE,
                };
                let stream = streams.len();
                streams.push(InputStream {
                    participant: n,
                    kind,
                    codec: match kind {
                        MediaKind::Video => codecs.of(n),
                        MediaKind::Audio => PatternCodec::H264,
                    },
                    ssrc: ssrc(n, 0, kind),
                    payload_type,
                    ts0: rng.gen(),
                });
                let mut at = Duration::ZERO;
                while at < duration {
                    schedule.push(Scheduled {
                        at,
                        stream,
                        item: Item::Report,
                    });
                    at += REPORT_INTERVAL;
                }
            }
            let (video_stream, audio_stream) = (streams.len() - 2, streams.len() - 1);

            let mut rtp = RtpSender::new(streams[video_stream].ssrc, VIDEO_PAYLOAD_TYPE, rng.gen())
                .expect("a constant payload type");
            let codec = codecs.of(n);
            let mut packetizer = VideoPacketizer::new(codec, MAX_PAYLOAD)?;
            let mut source = PatternSource::new(PatternSpec {
                rgb: PALETTE[index],
                codec,
                ..video
            })?;
            for frame in 0..frames {
                let encoded = source.next_frame_with(|no, picture| {
                    if n == 1 {
                        marker.draw(picture, gray(state_of_frame(no)));
                    }
                })?;
                let at = Duration::from_micros(frame * 1_000_000 / u64::from(video.fps));
                let ts = streams[video_stream].ts0.wrapping_add(encoded.pts as u32);
                let payloads = packetizer.packetize(&encoded)?;
                let last = payloads.len() - 1;
                for (i, payload) in payloads.iter().enumerate() {
                    let data = rtp
                        .packet(ts, i == last, payload)
                        .to_bytes()
                        .expect("payload type checked");
                    let first_of_state = n == 1 && i == 0 && frame % FRAMES_PER_STATE == 0;
                    schedule.push(Scheduled {
                        at,
                        stream: video_stream,
                        item: Item::Rtp {
                            data,
                            marker_state: first_of_state.then(|| state_of_frame(frame)),
                        },
                    });
                }
            }

            let mut rtp = RtpSender::new(streams[audio_stream].ssrc, AUDIO_PAYLOAD_TYPE, rng.gen())
                .expect("a constant payload type");
            let mut tone = ToneSource::new(ToneSpec {
                freq_hz: TONES_HZ[index],
                ..ToneSpec::default()
            })?;
            for packet in 0..packets {
                let encoded = tone.next_packet()?;
                debug_assert_eq!(encoded.pts as u64, packet * FRAME_SAMPLES as u64);
                let ts = streams[audio_stream].ts0.wrapping_add(encoded.pts as u32);
                schedule.push(Scheduled {
                    at: AUDIO_PACKET * packet as u32,
                    stream: audio_stream,
                    item: Item::Rtp {
                        data: rtp
                            .packet(ts, false, &encoded.data)
                            .to_bytes()
                            .expect("payload type checked"),
                        marker_state: None,
                    },
                });
            }
        }
        // Stable: per instant, reports (pushed first per stream) stay ahead of media.
        schedule.sort_by_key(|s| (s.at, matches!(s.item, Item::Rtp { .. })));
        Ok(Self {
            streams,
            schedule,
            video,
            duration,
            marker_states: frames.div_ceil(FRAMES_PER_STATE),
        })
    }

    pub(crate) fn participants(&self) -> u8 {
        self.streams
            .iter()
            .map(|s| s.participant)
            .max()
            .unwrap_or(0)
    }

    /// The roster an SFU would announce for these streams (ports are the receiver's
    /// business and left 0).
    pub(crate) fn roster(&self) -> Vec<ParticipantInfo> {
        let stream = |n: u8, kind: MediaKind| {
            self.streams
                .iter()
                .find(|s| s.participant == n && s.kind == kind)
                .expect("every participant has both streams")
        };
        let info = |s: &InputStream| StreamInfo {
            ssrc: s.ssrc,
            payload_type: s.payload_type,
            port: 0,
        };
        (1..=self.participants())
            .map(|n| ParticipantInfo {
                id: text(&format!("p{n}")),
                name: text(&format!("Participant {n}")),
                audio: info(stream(n, MediaKind::Audio)),
                video: info(stream(n, MediaKind::Video)),
                video_codec: stream(n, MediaKind::Video).codec.codec(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rtp::RtpPacket;

    #[test]
    fn paced_packets_with_the_marker_states_of_participant_one() {
        let video = PatternSpec {
            width: 64,
            height: 48,
            ..PatternSpec::default()
        };
        let vp8 = CodecMix::default()
            .with(&"2".parse().unwrap(), PatternCodec::Vp8)
            .unwrap();
        let inputs = Inputs::record(2, Duration::from_millis(500), video, vp8, 3).unwrap();
        assert_eq!(inputs.streams.len(), 4);
        assert_eq!(inputs.participants(), 2);
        assert!(inputs.schedule.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(matches!(inputs.schedule[0].item, Item::Report));
        let (streams, schedule) = (&inputs.streams, &inputs.schedule);
        let rtp = |kind| {
            schedule.iter().filter(move |s| {
                streams[s.stream].kind == kind && matches!(s.item, Item::Rtp { .. })
            })
        };
        // 15 frames at 30 fps, 25 packets at 20 ms per participant.
        let frames: std::collections::HashSet<_> =
            rtp(MediaKind::Video).map(|s| (s.stream, s.at)).collect();
        assert_eq!(frames.len(), 30);
        assert_eq!(rtp(MediaKind::Audio).count(), 50);
        let states: Vec<(u64, Duration)> = inputs
            .schedule
            .iter()
            .filter_map(|s| match s.item {
                Item::Rtp {
                    marker_state: Some(m),
                    ..
                } => Some((m, s.at)),
                _ => None,
            })
            .collect();
        assert_eq!(inputs.marker_states, 5);
        assert_eq!(states.len(), 5);
        assert_eq!(states[1], (1, Duration::from_micros(100_000)));
        for s in rtp(MediaKind::Video) {
            let Item::Rtp { data, .. } = &s.item else {
                unreachable!()
            };
            let packet = RtpPacket::parse(data, 1500).unwrap();
            assert_eq!(packet.ssrc, inputs.streams[s.stream].ssrc);
        }
        let roster = inputs.roster();
        assert_eq!(roster[1].id, "p2");
        assert_eq!(roster[1].video.ssrc, inputs.streams[2].ssrc);
        assert_eq!(
            (roster[0].video_codec.name(), roster[1].video_codec.name()),
            ("h264", "vp8")
        );
        let default = CodecMix::default();
        assert!(Inputs::record(0, Duration::from_secs(1), video, default, 1).is_err());
    }
}
