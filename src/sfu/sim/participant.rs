//! One simulated participant: its encoders, its two RTP streams with their sender
//! reports and simulated network paths. Time is passed in.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::impairment::Impairment;
use super::packetizer::VideoPacketizer;
use super::{SentMedia, SimConfig, SimError, AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};
use crate::ingest::rtcp;
use crate::ingest::rtp::RtpSender;
use crate::ingest::MediaKind;
use crate::link::frame::text;
use crate::sfu::control::{ParticipantInfo, StreamInfo};
use crate::synth::{PatternSource, PatternSpec, ToneSource, ToneSpec, PALETTE, TONES_HZ};

/// Interval of the RTCP sender reports of each stream.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Duration of one Opus packet.
const AUDIO_FRAME: Duration = Duration::from_millis(20);

/// The mixer's ports for the two kinds of stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPorts {
    pub audio: u16,
    pub video: u16,
}

/// SSRC of a participant's stream: readable in hex (`0x51GG_0NNK`: generation,
/// participant number, 1 video / 2 audio) and new for every time they join.
pub fn ssrc(participant: u8, generation: u16, kind: MediaKind) -> u32 {
    let k = match kind {
        MediaKind::Video => 1,
        MediaKind::Audio => 2,
    };
    0x5100_0000 | u32::from(generation & 0xff) << 16 | u32::from(participant) << 4 | k
}

/// A datagram for the mixer, on `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub port: u16,
    pub data: Vec<u8>,
}

/// One outgoing RTP stream.
#[derive(Debug)]
struct Stream {
    participant: u8,
    kind: MediaKind,
    port: u16,
    rtp: RtpSender,
    ssrc: u32,
    /// RTP timestamp of media time 0 (random, as RFC 3550 asks).
    ts0: u32,
    packets: u32,
    octets: u32,
    path: Impairment,
}

impl Stream {
    fn new(
        participant: u8,
        kind: MediaKind,
        info: &StreamInfo,
        config: &SimConfig,
        rng: &mut StdRng,
    ) -> Self {
        Self {
            participant,
            kind,
            port: info.port,
            rtp: RtpSender::new(info.ssrc, info.payload_type, rng.gen())
                .expect("payload types are constants below 128"),
            ssrc: info.ssrc,
            ts0: rng.gen(),
            packets: 0,
            octets: 0,
            // Per stream, so one stream's drops do not depend on another's traffic.
            path: Impairment::new(
                config.impairment,
                StdRng::seed_from_u64(config.seed ^ u64::from(info.ssrc)),
            ),
        }
    }

    /// Sends one frame at media time `pts` (in the stream's clock) as `payloads`
    /// through the network path.
    fn send(
        &mut self,
        pts: i64,
        frame: (Vec<u8>, bool),
        payloads: &[Vec<u8>],
        now: Instant,
    ) -> SentMedia {
        let ts = self.ts0.wrapping_add(pts as u32);
        let last = payloads.len() - 1;
        let mut dropped = 0;
        for (i, payload) in payloads.iter().enumerate() {
            // Audio never sets the marker (RFC 7587 keeps it for talkspurts).
            let marker = self.kind == MediaKind::Video && i == last;
            let packet = self.rtp.packet(ts, marker, payload);
            self.packets = self.packets.wrapping_add(1);
            self.octets = self.octets.wrapping_add(payload.len() as u32);
            let bytes = packet.to_bytes().expect("payload type checked at creation");
            dropped += usize::from(!self.path.push(bytes, now));
        }
        SentMedia {
            participant: self.participant,
            ssrc: self.ssrc,
            kind: self.kind,
            ts,
            data: frame.0,
            keyframe: frame.1,
            packets: payloads.len(),
            dropped,
        }
    }

    fn sender_report(&self, ntp: u64, elapsed: Duration) -> Vec<u8> {
        let ticks = elapsed.as_micros() * u128::from(self.kind.clock_rate()) / 1_000_000;
        let rtp_ts = self.ts0.wrapping_add(ticks as u32);
        rtcp::sender_report(self.ssrc, ntp, rtp_ts, self.packets, self.octets)
            .expect("a sender report without blocks always fits")
    }

    fn drain(&mut self, now: Instant, datagrams: &mut Vec<Datagram>) {
        while let Some(data) = self.path.pop_due(now) {
            datagrams.push(Datagram {
                port: self.port,
                data,
            });
        }
    }
}

pub struct SimParticipant {
    number: u8,
    info: ParticipantInfo,
    video: PatternSource,
    audio: ToneSource,
    packetizer: VideoPacketizer,
    fps: u16,
    video_stream: Stream,
    audio_stream: Stream,
    /// When forwarding began, once the mixer asked for it.
    started: Option<Instant>,
    video_frames: u64,
    audio_packets: u64,
    next_report: Option<Instant>,
    report_sent: bool,
}

impl SimParticipant {
    /// Participant `number` (1-based) joining for the `generation`-th time.
    pub fn new(
        number: u8,
        generation: u16,
        config: &SimConfig,
        ports: RtpPorts,
        rng: &mut StdRng,
    ) -> Result<Self, SimError> {
        let index = usize::from(number - 1);
        let codec = config.codecs.of(number);
        let info = ParticipantInfo {
            id: text(&format!("p{number}")),
            name: text(&format!("Participant {number}")),
            audio: StreamInfo {
                ssrc: ssrc(number, generation, MediaKind::Audio),
                payload_type: AUDIO_PAYLOAD_TYPE,
                port: ports.audio,
            },
            video: StreamInfo {
                ssrc: ssrc(number, generation, MediaKind::Video),
                payload_type: VIDEO_PAYLOAD_TYPE,
                port: ports.video,
            },
            video_codec: codec.codec(),
        };
        let video = PatternSource::new(PatternSpec {
            rgb: PALETTE[index],
            codec,
            ..config.video
        })?;
        let audio = ToneSource::new(ToneSpec {
            freq_hz: TONES_HZ[index],
            ..ToneSpec::default()
        })?;
        let video_stream = Stream::new(number, MediaKind::Video, &info.video, config, rng);
        let audio_stream = Stream::new(number, MediaKind::Audio, &info.audio, config, rng);
        Ok(Self {
            number,
            info,
            video,
            audio,
            packetizer: VideoPacketizer::new(codec, config.max_payload)?,
            fps: config.video.fps,
            video_stream,
            audio_stream,
            started: None,
            video_frames: 0,
            audio_packets: 0,
            next_report: None,
            report_sent: config.report_sent,
        })
    }

    pub fn number(&self) -> u8 {
        self.number
    }

    pub fn info(&self) -> &ParticipantInfo {
        &self.info
    }

    /// Starts sending at `now` (the first video frame is a keyframe).
    pub fn start(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
            self.next_report = Some(now);
        }
    }

    pub fn force_keyframe(&mut self) {
        self.video.force_keyframe();
    }

    fn video_due(&self, start: Instant) -> Instant {
        start + Duration::from_micros(self.video_frames * 1_000_000 / u64::from(self.fps))
    }

    fn audio_due(&self, start: Instant) -> Instant {
        start + AUDIO_FRAME * self.audio_packets as u32
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_due(&self) -> Option<Instant> {
        let start = self.started?;
        [
            Some(self.video_due(start)),
            Some(self.audio_due(start)),
            self.next_report,
            self.video_stream.path.next_due(),
            self.audio_stream.path.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything due at `now`: sender reports, the media frames whose time has come
    /// (sent into the network paths) and the datagrams the paths let through.
    /// `ntp` maps an instant to the NTP time of the sender reports.
    pub fn poll(
        &mut self,
        now: Instant,
        ntp: impl Fn(Instant) -> u64,
        datagrams: &mut Vec<Datagram>,
        sent: &mut Vec<SentMedia>,
    ) -> Result<(), SimError> {
        let Some(start) = self.started else {
            return Ok(());
        };
        if let Some(at) = self.next_report.filter(|&at| at <= now) {
            // Before the media of the same instant, so the mixer can sync from the start.
            for stream in [&self.video_stream, &self.audio_stream] {
                datagrams.push(Datagram {
                    port: stream.port,
                    data: stream.sender_report(ntp(at), at - start),
                });
            }
            self.next_report = Some(at + REPORT_INTERVAL);
        }
        while self.video_due(start) <= now {
            let at = self.video_due(start);
            let frame = self.video.next_frame()?;
            let payloads = self.packetizer.packetize(&frame)?;
            let media =
                self.video_stream
                    .send(frame.pts, (frame.data, frame.keyframe), &payloads, at);
            self.video_frames += 1;
            self.record(media, sent);
        }
        while self.audio_due(start) <= now {
            let at = self.audio_due(start);
            let packet = self.audio.next_packet()?;
            // One Opus packet per RTP packet (RFC 7587).
            let payloads = [packet.data.clone()];
            let media = self
                .audio_stream
                .send(packet.pts, (packet.data, true), &payloads, at);
            self.audio_packets += 1;
            self.record(media, sent);
        }
        self.video_stream.drain(now, datagrams);
        self.audio_stream.drain(now, datagrams);
        Ok(())
    }

    fn record(&self, media: SentMedia, sent: &mut Vec<SentMedia>) {
        if self.report_sent {
            sent.push(media);
        }
    }
}
