//! One ingest stream per SSRC (jitter buffer, depacketizer, statistics, keyframe
//! requests) and the demultiplexer that routes datagrams to them. Sans-IO: bytes and
//! time in, frames and requests out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, warn};

use super::depacketize::h264::{H264Depacketizer, H264Error};
use super::depacketize::opus;
use super::depacketize::vp8::{Vp8Depacketizer, Vp8Error};
use super::depacketize::AccessUnit;
use super::jitter::{JitterBuffer, JitterConfig, OrderedPacket, PushStatus, Ready};
use super::keyframe::{KeyframeLimiter, DEFAULT_MIN_INTERVAL};
use super::rtcp::{self, ClockSync, ReceptionStats, ReportBlock, RtcpError, RtcpMessage};
use super::rtp::{is_rtcp, RtpPacket, DEFAULT_MAX_PACKET};
use super::source::{Admission, SourceLock};
use super::stats::{DemuxStats, StreamStats};
use crate::media::codec::VideoFormat;

/// RTP clock rate of video (H.264, RFC 6184; VP8, RFC 7741).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Opus (RFC 7587).
    Audio,
    /// H.264 (RFC 6184) or VP8 (RFC 7741).
    Video,
}

impl MediaKind {
    pub fn clock_rate(self) -> u32 {
        match self {
            MediaKind::Audio => opus::CLOCK_RATE,
            MediaKind::Video => VIDEO_CLOCK_RATE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub ssrc: u32,
    pub kind: MediaKind,
    /// Payload types this stream may use; packets with others are dropped.
    pub payload_types: Vec<u8>,
    /// Video: the payload format (audio is always Opus).
    pub format: VideoFormat,
    pub jitter: JitterConfig,
    /// Minimum time between two keyframe requests.
    pub keyframe_interval: Duration,
}

impl StreamConfig {
    pub fn new(ssrc: u32, kind: MediaKind, payload_type: u8) -> Self {
        Self {
            ssrc,
            kind,
            payload_types: vec![payload_type],
            format: VideoFormat::H264,
            jitter: JitterConfig::default(),
            keyframe_interval: DEFAULT_MIN_INTERVAL,
        }
    }
}

/// One decodable unit of media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ssrc: u32,
    pub kind: MediaKind,
    /// Extended RTP timestamp (no wrap-around), in the kind's clock rate.
    pub ts: i64,
    /// Video: an Annex B access unit (H.264) or one frame (VP8). Audio: one Opus packet.
    pub data: Vec<u8>,
    /// Decoding can start here (every Opus packet can).
    pub keyframe: bool,
    /// Sender's wall clock (NTP epoch, microseconds) at `ts`, once a sender report
    /// of the stream has been seen: puts one participant's audio and video on one
    /// clock.
    pub wallclock_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutput {
    Frame(Frame),
    /// Packets of the stream never arrived: audio needs concealment; video frames are
    /// dropped until the next keyframe.
    Lost {
        ssrc: u32,
        packets: u64,
    },
    /// Ask the sender of `ssrc` for a keyframe (send a PLI).
    KeyframeRequest {
        ssrc: u32,
    },
}

#[derive(Debug)]
enum Depacketizer {
    Audio,
    Video(Box<VideoDepacketizer>),
}

/// The depacketizer of a video stream's format.
#[derive(Debug)]
enum VideoDepacketizer {
    H264(H264Depacketizer),
    Vp8(Vp8Depacketizer),
}

#[derive(Debug, Error)]
enum PayloadError {
    #[error("H.264: {0}")]
    H264(#[from] H264Error),
    #[error("VP8: {0}")]
    Vp8(#[from] Vp8Error),
}

impl VideoDepacketizer {
    fn new(format: VideoFormat) -> Self {
        match format {
            VideoFormat::H264 => Self::H264(H264Depacketizer::new()),
            VideoFormat::Vp8 => Self::Vp8(Vp8Depacketizer::new()),
        }
    }

    fn push(&mut self, ts: i64, marker: bool, payload: &[u8]) -> Result<(), PayloadError> {
        match self {
            Self::H264(d) => Ok(d.push(ts, marker, payload)?),
            Self::Vp8(d) => Ok(d.push(ts, marker, payload)?),
        }
    }

    fn lost(&mut self) {
        match self {
            Self::H264(d) => d.lost(),
            Self::Vp8(d) => d.lost(),
        }
    }

    fn pop(&mut self) -> Option<AccessUnit> {
        match self {
            Self::H264(d) => d.pop(),
            Self::Vp8(d) => d.pop(),
        }
    }

    fn needs_keyframe(&self) -> bool {
        match self {
            Self::H264(d) => d.needs_keyframe(),
            Self::Vp8(d) => d.needs_keyframe(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Self::H264(d) => d.dropped(),
            Self::Vp8(d) => d.dropped(),
        }
    }
}

#[derive(Debug)]
pub struct IngestStream {
    config: StreamConfig,
    jitter: JitterBuffer,
    depacketizer: Depacketizer,
    reception: ReceptionStats,
    keyframes: KeyframeLimiter,
    source: SourceLock,
    stats: StreamStats,
}

impl IngestStream {
    pub fn new(config: StreamConfig) -> Self {
        let depacketizer = match config.kind {
            MediaKind::Audio => Depacketizer::Audio,
            MediaKind::Video => {
                Depacketizer::Video(Box::new(VideoDepacketizer::new(config.format)))
            }
        };
        Self {
            jitter: JitterBuffer::new(config.jitter),
            depacketizer,
            reception: ReceptionStats::new(config.kind.clock_rate()),
            keyframes: KeyframeLimiter::new(config.keyframe_interval),
            source: SourceLock::default(),
            stats: StreamStats::default(),
            config,
        }
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    pub fn stats(&self) -> StreamStats {
        let frames_dropped = match &self.depacketizer {
            Depacketizer::Audio => 0,
            Depacketizer::Video(d) => d.dropped(),
        };
        StreamStats {
            frames_dropped,
            ..self.stats
        }
    }

    /// The address this stream's RTP is taken from, once its first packet came.
    pub fn source(&self) -> Option<SocketAddr> {
        self.source.source()
    }

    /// The SFU announced the stream anew: its next packet's address is the one.
    pub fn relearn_source(&mut self) {
        self.source.relearn();
    }

    /// Takes one packet of this stream (the caller matched the SSRC), received from
    /// `from`, and returns what became ready.
    pub fn push_packet(
        &mut self,
        packet: RtpPacket,
        from: SocketAddr,
        now: Instant,
    ) -> Vec<IngestOutput> {
        let ssrc = self.config.ssrc;
        match self.source.admit(from) {
            Admission::Locked => {}
            Admission::Learned => info!(ssrc, %from, "ingest stream locked to its source"),
            Admission::Spoofed { locked } => {
                self.stats.spoofed += 1;
                // Once per stream at warn: a flood must not flood the log too.
                if self.stats.spoofed == 1 {
                    warn!(ssrc, %from, %locked, "RTP of a known SSRC from another address: dropped");
                } else {
                    debug!(ssrc, %from, %locked, "RTP from another address dropped");
                }
                return Vec::new();
            }
        }
        self.stats.packets += 1;
        self.stats.bytes += packet.payload.len() as u64;
        if !self.config.payload_types.contains(&packet.payload_type) {
            self.stats.unknown_payload_type += 1;
            debug!(
                ssrc = self.config.ssrc,
                pt = packet.payload_type,
                "unexpected payload type"
            );
            return Vec::new();
        }
        let rtp_ts = packet.ts;
        let outcome = self.jitter.push(packet, now);
        match outcome.status {
            PushStatus::Queued => {}
            PushStatus::Reordered => self.stats.reordered += 1,
            PushStatus::Duplicate => self.stats.duplicates += 1,
            PushStatus::Late | PushStatus::Stray => self.stats.late += 1,
            PushStatus::Full => self.stats.overflow += 1,
            PushStatus::Restarted { dropped } => {
                debug!(
                    ssrc = self.config.ssrc,
                    dropped, "sender restarted its sequence numbers"
                );
                self.stats.lost += dropped as u64;
                // Statistics start over with the new numbering; frames cannot span it.
                self.reception = ReceptionStats::new(self.config.kind.clock_rate());
                if let Depacketizer::Video(d) = &mut self.depacketizer {
                    d.lost();
                }
            }
        }
        if matches!(
            outcome.status,
            PushStatus::Queued
                | PushStatus::Reordered
                | PushStatus::Late
                | PushStatus::Restarted { .. }
        ) {
            self.reception.on_packet(outcome.seq, rtp_ts, now);
        }
        self.poll(now)
    }

    /// Releases what the jitter buffer has due at `now` and raises keyframe requests;
    /// call it regularly (every few ms) even when no packets arrive.
    pub fn poll(&mut self, now: Instant) -> Vec<IngestOutput> {
        let mut out = Vec::new();
        while let Some(ready) = self.jitter.pop_ready(now) {
            match ready {
                Ready::Packet(packet) => self.depacketize(packet, &mut out),
                Ready::Lost { count, .. } => {
                    self.stats.lost += count;
                    if let Depacketizer::Video(d) = &mut self.depacketizer {
                        d.lost();
                    }
                    out.push(IngestOutput::Lost {
                        ssrc: self.config.ssrc,
                        packets: count,
                    });
                }
            }
        }
        if let Depacketizer::Video(d) = &self.depacketizer {
            if d.needs_keyframe() {
                self.keyframes.want();
            } else {
                self.keyframes.satisfied();
            }
        }
        if self.keyframes.poll(now) {
            self.stats.keyframe_requests += 1;
            out.push(IngestOutput::KeyframeRequest {
                ssrc: self.config.ssrc,
            });
        }
        out
    }

    fn depacketize(&mut self, packet: OrderedPacket, out: &mut Vec<IngestOutput>) {
        let (ssrc, kind) = (self.config.ssrc, self.config.kind);
        let mut emit = |ts, data, keyframe| {
            out.push(IngestOutput::Frame(Frame {
                ssrc,
                kind,
                ts,
                data,
                keyframe,
                wallclock_us: None,
            }))
        };
        match &mut self.depacketizer {
            Depacketizer::Audio => match opus::depacketize(&packet.rtp.payload) {
                Ok(_) => {
                    self.stats.frames += 1;
                    emit(packet.ts, packet.rtp.payload, true);
                }
                Err(e) => {
                    self.stats.malformed += 1;
                    debug!(ssrc, seq = packet.seq, "dropping Opus payload: {e}");
                }
            },
            Depacketizer::Video(d) => {
                if let Err(e) = d.push(packet.ts, packet.rtp.marker, &packet.rtp.payload) {
                    self.stats.malformed += 1;
                    debug!(ssrc, seq = packet.seq, "dropping video payload: {e}");
                }
                while let Some(au) = d.pop() {
                    self.stats.frames += 1;
                    emit(au.ts, au.data, au.keyframe);
                }
            }
        }
    }

    /// A sender report for this stream arrived.
    pub fn on_sender_report(&mut self, ntp: u64, now: Instant) {
        self.reception.on_sender_report(ntp, now);
    }

    /// This stream's block for the next receiver report.
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        self.reception.report(self.config.ssrc, now)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DemuxError {
    #[error("SSRC {0:#010x} is already mapped to a stream")]
    DuplicateSsrc(u32),
}

/// Routes datagrams by SSRC to their streams; RTCP on the same port (sender reports)
/// feeds reception statistics and clock sync.
#[derive(Debug)]
pub struct Demux {
    local_ssrc: u32,
    max_packet: usize,
    streams: HashMap<u32, IngestStream>,
    sync: ClockSync,
    stats: DemuxStats,
}

impl Demux {
    /// `local_ssrc` identifies this receiver in the RTCP it sends.
    pub fn new(local_ssrc: u32) -> Self {
        Self {
            local_ssrc,
            max_packet: DEFAULT_MAX_PACKET,
            streams: HashMap::new(),
            sync: ClockSync::default(),
            stats: DemuxStats::default(),
        }
    }

    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    pub fn add_stream(&mut self, config: StreamConfig) -> Result<(), DemuxError> {
        let ssrc = config.ssrc;
        if self.streams.contains_key(&ssrc) {
            return Err(DemuxError::DuplicateSsrc(ssrc));
        }
        self.streams.insert(ssrc, IngestStream::new(config));
        Ok(())
    }

    pub fn remove_stream(&mut self, ssrc: u32) -> Option<IngestStream> {
        self.streams.remove(&ssrc)
    }

    pub fn stream(&self, ssrc: u32) -> Option<&IngestStream> {
        self.streams.get(&ssrc)
    }

    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Every stream's counters, by SSRC in ascending order.
    pub fn stream_stats(&self) -> Vec<(u32, StreamStats)> {
        let mut all: Vec<_> = self.streams.iter().map(|(&k, s)| (k, s.stats())).collect();
        all.sort_unstable_by_key(|&(ssrc, _)| ssrc);
        all
    }

    /// Wall-clock mapping of the streams' RTP timestamps (from sender reports).
    pub fn sync(&self) -> &ClockSync {
        &self.sync
    }

    /// The SFU announced stream `ssrc` anew (see [`IngestStream::relearn_source`]);
    /// false if there is no such stream.
    pub fn relearn_source(&mut self, ssrc: u32) -> bool {
        self.streams
            .get_mut(&ssrc)
            .map(IngestStream::relearn_source)
            .is_some()
    }

    /// The streams whose source is known, and that source: where their RTCP goes.
    pub fn sources(&self) -> impl Iterator<Item = (u32, SocketAddr)> + '_ {
        self.streams
            .iter()
            .filter_map(|(&ssrc, s)| Some((ssrc, s.source()?)))
    }

    /// Takes one datagram (RTP or multiplexed RTCP) received from `from`.
    pub fn push_datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Vec<IngestOutput> {
        if is_rtcp(data) {
            self.push_rtcp(data, now);
            return Vec::new();
        }
        let packet = match RtpPacket::parse(data, self.max_packet) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                debug!("dropping datagram: {e}");
                return Vec::new();
            }
        };
        match self.streams.get_mut(&packet.ssrc) {
            Some(stream) => stamp(&self.sync, stream.push_packet(packet, from, now)),
            None => {
                self.stats.unknown_ssrc += 1;
                debug!(ssrc = packet.ssrc, "dropping packet of unknown SSRC");
                Vec::new()
            }
        }
    }

    fn push_rtcp(&mut self, data: &[u8], now: Instant) {
        self.stats.rtcp += 1;
        let messages = match rtcp::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                debug!("dropping RTCP: {e}");
                return;
            }
        };
        for m in messages {
            if let RtcpMessage::SenderReport { ssrc, ntp, rtp_ts } = m {
                if let Some(stream) = self.streams.get_mut(&ssrc) {
                    stream.on_sender_report(ntp, now);
                    let rate = stream.config().kind.clock_rate();
                    self.sync.on_sender_report(ssrc, ntp, rtp_ts, rate);
                }
            }
        }
    }

    /// Time-driven work of every stream.
    pub fn poll(&mut self, now: Instant) -> Vec<IngestOutput> {
        let out = self
            .streams
            .values_mut()
            .flat_map(|s| s.poll(now))
            .collect();
        stamp(&self.sync, out)
    }

    /// A receiver report covering the given streams (unknown SSRCs are skipped; at most
    /// 31 blocks fit one report).
    pub fn receiver_report(
        &mut self,
        ssrcs: impl IntoIterator<Item = u32>,
        now: Instant,
    ) -> Result<Vec<u8>, RtcpError> {
        let blocks: Vec<ReportBlock> = ssrcs
            .into_iter()
            .filter_map(|ssrc| Some(self.streams.get_mut(&ssrc)?.report_block(now)))
            .take(31)
            .collect();
        rtcp::receiver_report(self.local_ssrc, &blocks)
    }

    /// A keyframe request for stream `media_ssrc`, from this receiver.
    pub fn pli(&self, media_ssrc: u32) -> Result<Vec<u8>, RtcpError> {
        rtcp::pli(self.local_ssrc, media_ssrc)
    }
}

/// Fills in the wall-clock time of every frame whose stream has been reported.
fn stamp(sync: &ClockSync, mut outputs: Vec<IngestOutput>) -> Vec<IngestOutput> {
    for o in &mut outputs {
        if let IngestOutput::Frame(f) = o {
            f.wallclock_us = sync.wallclock_us(f.ssrc, f.ts);
        }
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::depacketize::h264::H264Packetizer;
    use crate::ingest::rtp::RtpSender;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    const VIDEO: u32 = 0x1111;
    const AUDIO: u32 = 0x2222;
    /// Timestamps start just before the 32-bit wrap and sequence numbers before the
    /// 16-bit one, so both wrap during the tests.
    const TS0: u32 = u32::MAX - 10_000;
    const SEQ0: u16 = 65_500;

    /// Where the SFU sends from.
    fn sfu() -> SocketAddr {
        "192.0.2.1:40000".parse().unwrap()
    }

    impl IngestStream {
        fn push_packet_from_sfu(&mut self, packet: RtpPacket, now: Instant) -> Vec<IngestOutput> {
            self.push_packet(packet, sfu(), now)
        }
    }

    fn nal(header: u8, len: usize, salt: usize) -> Vec<u8> {
        let mut v = vec![header];
        v.extend((0..len).map(|i| ((i * 7 + salt) % 255) as u8 | 1));
        v
    }

    fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    /// Access unit `k`: a keyframe (with parameter sets) every 25 frames.
    fn access_unit(k: usize) -> (Vec<u8>, bool) {
        if k % 25 == 0 {
            let au = annex_b(&[nal(0x67, 8, k), nal(0x68, 4, k), nal(0x65, 2500, k)]);
            (au, true)
        } else {
            (annex_b(&[nal(0x41, 300 + k * 37 % 1200, k)]), false)
        }
    }

    fn video_stream() -> IngestStream {
        let mut config = StreamConfig::new(VIDEO, MediaKind::Video, 96);
        config.jitter.playout_delay = Duration::from_millis(50);
        IngestStream::new(config)
    }

    fn frames(out: &[IngestOutput]) -> Vec<&Frame> {
        out.iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lossy_reordered_video_matches_the_decodability_oracle() {
        let n = 60;
        let packetizer = H264Packetizer::new(1000).unwrap();
        let mut sender = RtpSender::new(VIDEO, 96, SEQ0).unwrap();
        // (access unit, packet) in sending order.
        let mut packets: Vec<(usize, RtpPacket)> = Vec::new();
        for k in 0..n {
            let payloads = packetizer.packetize(&access_unit(k).0).unwrap();
            let last = payloads.len() - 1;
            let ts = TS0.wrapping_add(k as u32 * 3000);
            for (i, p) in payloads.iter().enumerate() {
                packets.push((k, sender.packet(ts, i == last, p)));
            }
        }
        // 5 % loss (sparing the first and the last two frames, whose losses the jitter
        // buffer cannot see), then swaps of neighbours.
        let mut rng = StdRng::seed_from_u64(5);
        let mut dropped = vec![false; packets.len()];
        for (i, (k, _)) in packets.iter().enumerate() {
            dropped[i] = *k > 0 && *k < n - 2 && rng.gen_bool(0.05);
        }
        let mut order: Vec<usize> = (0..packets.len()).filter(|&i| !dropped[i]).collect();
        let mut i = 0;
        while i + 1 < order.len() {
            if rng.gen_bool(0.1) {
                order.swap(i, i + 1);
                i += 1;
            }
            i += 1;
        }
        let lost_count = dropped.iter().filter(|&&d| d).count() as u64;
        assert!(lost_count > 0);

        let t0 = Instant::now();
        let mut stream = video_stream();
        let mut out = Vec::new();
        for (step, &i) in order.iter().enumerate() {
            let now = t0 + Duration::from_millis(step as u64);
            out.extend(stream.push_packet_from_sfu(packets[i].1.clone(), now));
        }
        out.extend(stream.poll(t0 + Duration::from_secs(10)));

        // Oracle: a frame is damaged when it lost a packet, or when the frame before
        // lost its last one (the gap may have hidden this frame's first packets);
        // after damage only an undamaged keyframe restarts the output.
        let dropped_in = |k: usize| (0..packets.len()).any(|i| packets[i].0 == k && dropped[i]);
        let last_dropped = |k: usize| {
            let last = (0..packets.len()).rfind(|&i| packets[i].0 == k).unwrap();
            dropped[last]
        };
        let mut expected = Vec::new();
        let mut waiting = false;
        for k in 0..n {
            let (au, key) = access_unit(k);
            if dropped_in(k) || (k > 0 && last_dropped(k - 1)) {
                waiting = true;
            } else if key || !waiting {
                waiting = false;
                expected.push((TS0 as i64 + k as i64 * 3000, au, key));
            }
        }
        let got: Vec<(i64, Vec<u8>, bool)> = frames(&out)
            .iter()
            .map(|f| (f.ts, f.data.clone(), f.keyframe))
            .collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);

        let reported: u64 = out
            .iter()
            .map(|o| match o {
                IngestOutput::Lost { packets, .. } => *packets,
                _ => 0,
            })
            .sum();
        assert_eq!(reported, lost_count);
        let stats = stream.stats();
        assert_eq!(stats.lost, lost_count);
        assert!(stats.reordered > 0);
        assert_eq!(stats.frames, expected.len() as u64);
        // Frames that lost every packet never reached the depacketizer.
        let vanished = (0..n)
            .filter(|&k| (0..packets.len()).all(|i| packets[i].0 != k || dropped[i]))
            .count();
        assert_eq!(stats.frames_dropped, (n - expected.len() - vanished) as u64);
        assert!(out.contains(&IngestOutput::KeyframeRequest { ssrc: VIDEO }));
        assert!(stats.keyframe_requests >= 1);
    }

    #[test]
    fn keyframe_requests_are_rate_limited_and_stop_at_a_keyframe() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut stream = video_stream();
        let mut sender = RtpSender::new(VIDEO, 96, 0).unwrap();
        let requests = |out: Vec<IngestOutput>| {
            out.iter()
                .filter(|o| matches!(o, IngestOutput::KeyframeRequest { .. }))
                .count()
        };
        // Joining mid-stream: delta frames only. One request, then silence until the
        // interval has passed.
        let delta = annex_b(&[nal(0x41, 10, 0)]);
        assert_eq!(
            requests(stream.push_packet_from_sfu(sender.packet(0, true, &delta[4..]), at(0))),
            0
        );
        assert_eq!(requests(stream.poll(at(60))), 1);
        assert_eq!(
            requests(stream.push_packet_from_sfu(sender.packet(3000, true, &delta[4..]), at(100))),
            0
        );
        assert_eq!(requests(stream.poll(at(559))), 0);
        assert_eq!(requests(stream.poll(at(560))), 1);
        let key = nal(0x65, 10, 0);
        let out = stream.push_packet_from_sfu(sender.packet(6000, true, &key), at(600));
        assert_eq!(frames(&out).len(), 1);
        assert_eq!(requests(stream.poll(at(5000))), 0);
        assert_eq!(stream.stats().keyframe_requests, 2);
    }

    #[test]
    fn a_vp8_stream_yields_libvpx_frames_and_asks_for_a_key_frame_after_a_loss() {
        use crate::ingest::depacketize::vp8::packetize;
        use crate::synth::{PatternCodec, PatternSource, PatternSpec};
        let mut source = PatternSource::new(PatternSpec {
            gop: 8,
            codec: PatternCodec::Vp8,
            ..PatternSpec::default()
        })
        .unwrap();
        let encoded: Vec<Vec<u8>> = (0..10).map(|_| source.next_frame().unwrap().data).collect();
        let mut config = StreamConfig::new(VIDEO, MediaKind::Video, 96);
        config.format = VideoFormat::Vp8;
        config.jitter.playout_delay = Duration::from_millis(50);
        let mut stream = IngestStream::new(config);
        let mut sender = RtpSender::new(VIDEO, 96, SEQ0).unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (k, frame) in encoded.iter().enumerate() {
            let payloads = packetize(frame, 200, Some(k as u16));
            let last = payloads.len() - 1;
            for (i, p) in payloads.iter().enumerate() {
                let packet = sender.packet(TS0.wrapping_add(k as u32 * 3000), i == last, p);
                // Frame 4 loses a packet.
                if k != 4 || i != 0 {
                    let now = t0 + Duration::from_millis(k as u64 * 33);
                    out.extend(stream.push_packet(packet, sfu(), now));
                }
            }
        }
        out.extend(stream.poll(t0 + Duration::from_secs(5)));
        let got: Vec<(i64, &Vec<u8>, bool)> = frames(&out)
            .iter()
            .map(|f| (f.ts, &f.data, f.keyframe))
            .collect();
        let want: Vec<(i64, &Vec<u8>, bool)> = [0, 1, 2, 3, 8, 9]
            .into_iter()
            .map(|k| (TS0 as i64 + k as i64 * 3000, &encoded[k], k % 8 == 0))
            .collect();
        assert_eq!(got, want);
        assert!(out.contains(&IngestOutput::KeyframeRequest { ssrc: VIDEO }));
        assert_eq!(stream.stats().lost, 1);
    }

    #[test]
    fn audio_frames_pass_through_and_losses_are_reported() {
        let t0 = Instant::now();
        let mut config = StreamConfig::new(AUDIO, MediaKind::Audio, 111);
        config.jitter.playout_delay = Duration::from_millis(40);
        let mut stream = IngestStream::new(config);
        let mut sender = RtpSender::new(AUDIO, 111, SEQ0).unwrap();
        let mut out = Vec::new();
        for k in 0..100u32 {
            let packet = sender.packet(TS0.wrapping_add(k * 960), false, &[0x78, k as u8, 1]);
            if k % 10 != 5 {
                out.extend(
                    stream.push_packet_from_sfu(
                        packet,
                        t0 + Duration::from_millis(u64::from(k) * 20),
                    ),
                );
            }
        }
        // An empty payload is malformed, and a video payload type is not expected here.
        let mut bad = sender.packet(TS0.wrapping_add(100 * 960), false, &[]);
        out.extend(stream.push_packet_from_sfu(bad.clone(), t0 + Duration::from_secs(2)));
        bad.payload_type = 96;
        out.extend(stream.push_packet_from_sfu(bad, t0 + Duration::from_secs(2)));
        out.extend(stream.poll(t0 + Duration::from_secs(3)));
        let got = frames(&out);
        assert_eq!(got.len(), 90);
        assert!(got.iter().all(|f| f.keyframe && f.kind == MediaKind::Audio));
        assert_eq!(got[5].ts, TS0 as i64 + 6 * 960);
        assert_eq!(got[5].data, vec![0x78, 6, 1]);
        let lost = out
            .iter()
            .filter(|o| matches!(o, IngestOutput::Lost { packets: 1, .. }))
            .count();
        assert_eq!(lost, 10);
        let stats = stream.stats();
        assert_eq!(
            (stats.lost, stats.malformed, stats.unknown_payload_type),
            (10, 1, 1)
        );
        assert_eq!(stats.keyframe_requests, 0);
    }

    #[test]
    fn demux_routes_counts_and_syncs() {
        let t0 = Instant::now();
        let mut demux = Demux::new(0xabcd);
        demux
            .add_stream(StreamConfig::new(AUDIO, MediaKind::Audio, 111))
            .unwrap();
        demux
            .add_stream(StreamConfig::new(VIDEO, MediaKind::Video, 96))
            .unwrap();
        assert_eq!(
            demux.add_stream(StreamConfig::new(VIDEO, MediaKind::Video, 96)),
            Err(DemuxError::DuplicateSsrc(VIDEO))
        );
        let mut audio = RtpSender::new(AUDIO, 111, 0).unwrap();
        let mut stranger = RtpSender::new(0x3333, 111, 0).unwrap();
        let bytes = |p: RtpPacket| p.to_bytes().unwrap();
        assert!(demux
            .push_datagram(&bytes(audio.packet(0, false, &[0x78])), sfu(), t0)
            .is_empty());
        demux.push_datagram(&bytes(stranger.packet(0, false, &[0x78])), sfu(), t0);
        demux.push_datagram(&[0x80, 111, 0], sfu(), t0);
        demux.push_datagram(&vec![0x80; 1501], sfu(), t0);
        let sr = rtcp::sender_report(AUDIO, 10 << 32, 0, 1, 1).unwrap();
        demux.push_datagram(&sr, sfu(), t0);
        demux.push_datagram(&[0x81, 200, 0, 9], sfu(), t0);
        let out = demux.poll(t0 + Duration::from_secs(1));
        assert_eq!(frames(&out).len(), 1);
        let stats = demux.stats();
        assert_eq!((stats.malformed, stats.unknown_ssrc, stats.rtcp), (3, 1, 2));
        assert_eq!(demux.sync().wallclock_us(AUDIO, 48_000), Some(11_000_000));
        assert_eq!(demux.stream(AUDIO).unwrap().stats().packets, 1);

        let rr = demux
            .receiver_report([AUDIO, VIDEO, 0x3333], t0 + Duration::from_secs(1))
            .unwrap();
        match rtcp::parse(&rr).unwrap().as_slice() {
            [RtcpMessage::ReceiverReport {
                ssrc: 0xabcd,
                blocks,
            }] => {
                assert_eq!(blocks.len(), 2);
                let a = blocks.iter().find(|b| b.ssrc == AUDIO).unwrap();
                assert_eq!(
                    (a.highest_seq, a.cumulative_lost, a.last_sr),
                    (0, 0, 10 << 16)
                );
                assert_eq!(a.delay_since_last_sr, 65536);
            }
            other => panic!("unexpected RTCP {other:?}"),
        }
        assert_eq!(
            rtcp::parse(&demux.pli(VIDEO).unwrap()).unwrap(),
            vec![RtcpMessage::Pli {
                sender_ssrc: 0xabcd,
                media_ssrc: VIDEO
            }]
        );
        assert!(demux.remove_stream(AUDIO).is_some());
        assert!(demux.stream(AUDIO).is_none());
    }

    #[test]
    fn packets_from_another_address_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut demux = Demux::new(0xabcd);
        demux
            .add_stream(StreamConfig::new(AUDIO, MediaKind::Audio, 111))
            .unwrap();
        let intruder: SocketAddr = "192.0.2.1:40001".parse().unwrap();
        let mut sfu_side = RtpSender::new(AUDIO, 111, 0).unwrap();
        let mut spoofer = RtpSender::new(AUDIO, 111, 5000).unwrap();
        let mut out = Vec::new();
        for k in 0..10u32 {
            let real = sfu_side
                .packet(k * 960, false, &[0x78, 1])
                .to_bytes()
                .unwrap();
            let fake = spoofer
                .packet(k * 960, false, &[0x78, 2])
                .to_bytes()
                .unwrap();
            out.extend(demux.push_datagram(&real, sfu(), t0));
            out.extend(demux.push_datagram(&fake, intruder, t0));
        }
        out.extend(demux.poll(t0 + Duration::from_secs(1)));
        let got = frames(&out);
        assert_eq!(got.len(), 10);
        assert!(
            got.iter().all(|f| f.data == [0x78, 1]),
            "only the SFU's media"
        );
        let stats = demux.stream(AUDIO).unwrap().stats();
        assert_eq!((stats.packets, stats.spoofed), (10, 10));
        assert_eq!(demux.sources().collect::<Vec<_>>(), [(AUDIO, sfu())]);

        // Announced anew (the SFU forwards from a new port): the new port is the one,
        // the old one is refused from then on.
        assert!(demux.relearn_source(AUDIO));
        assert!(!demux.relearn_source(VIDEO));
        let new_port: SocketAddr = "192.0.2.1:40002".parse().unwrap();
        let t1 = t0 + Duration::from_secs(1);
        let real = sfu_side
            .packet(10 * 960, false, &[0x78, 1])
            .to_bytes()
            .unwrap();
        demux.push_datagram(&real, new_port, t1);
        let stale = sfu_side
            .packet(11 * 960, false, &[0x78, 1])
            .to_bytes()
            .unwrap();
        demux.push_datagram(&stale, sfu(), t1);
        let stats = demux.stream(AUDIO).unwrap().stats();
        assert_eq!((stats.packets, stats.spoofed), (11, 11));
        assert_eq!(demux.sources().collect::<Vec<_>>(), [(AUDIO, new_port)]);
    }
}
