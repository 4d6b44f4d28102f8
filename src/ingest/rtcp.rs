//! RTCP for the receiving side: reception statistics and receiver reports (RFC 3550
//! 6.4.2 and A.3, A.8), PLI keyframe requests (RFC 4585), and sender reports for
//! mapping each stream's RTP time onto the sender's wall clock. Wire format through
//! the `rtcp-types` crate.

use std::collections::HashMap;
use std::time::Instant;

use rtcp_types::prelude::*;
use rtcp_types::{
    Compound, Packet, PayloadFeedback, Pli, ReceiverReport, ReportBlock as WireBlock, SenderReport,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("malformed RTCP: {0}")]
    Parse(#[from] rtcp_types::RtcpParseError),
    #[error("cannot write RTCP: {0}")]
    Write(#[from] rtcp_types::RtcpWriteError),
}

/// One reception report block (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub(crate) ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    fraction_lost: u8,
    /// Packets lost since the start, clamped to 24 bits (never negative here).
    pub(crate) cumulative_lost: u32,
    /// Extended highest sequence number received.
    pub(crate) highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    jitter: u32,
    /// Middle 32 bits of the NTP time of the last sender report, 0 if none.
    pub(crate) last_sr: u32,
    /// Delay since that sender report in 1/65536 s.
    pub(crate) delay_since_last_sr: u32,
}

/// What the receiver needs from an RTCP compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpMessage {
    SenderReport {
        ssrc: u32,
        /// NTP time, 32.32 fixed point seconds since 1900.
        ntp: u64,
        rtp_ts: u32,
    },
    ReceiverReport {
        ssrc: u32,
        blocks: Vec<ReportBlock>,
    },
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
}

/// Parses a compound RTCP packet; packet types the ingest has no use for are skipped.
pub fn parse(data: &[u8]) -> Result<Vec<RtcpMessage>, RtcpError> {
    let mut out = Vec::new();
    for packet in Compound::parse(data)? {
        match packet? {
            Packet::Sr(sr) => out.push(RtcpMessage::SenderReport {
                ssrc: sr.ssrc(),
                ntp: sr.ntp_timestamp(),
                rtp_ts: sr.rtp_timestamp(),
            }),
            Packet::Rr(rr) => out.push(RtcpMessage::ReceiverReport {
                ssrc: rr.ssrc(),
                blocks: rr.report_blocks().map(|b| from_wire(&b)).collect(),
            }),
            Packet::PayloadFeedback(fb) if fb.parse_fci::<Pli>().is_ok() => {
                out.push(RtcpMessage::Pli {
                    sender_ssrc: fb.sender_ssrc(),
                    media_ssrc: fb.media_ssrc(),
                })
            }
            _ => {}
        }
    }
    Ok(out)
}

fn from_wire(b: &WireBlock<'_>) -> ReportBlock {
    ReportBlock {
        ssrc: b.ssrc(),
        fraction_lost: b.fraction_lost(),
        cumulative_lost: b.cumulative_lost(),
        highest_seq: b.extended_sequence_number(),
        jitter: b.interarrival_jitter(),
        last_sr: b.last_sender_report_timestamp(),
        delay_since_last_sr: b.delay_since_last_sender_report_timestamp(),
    }
}

fn write(packet: impl RtcpPacketWriter) -> Result<Vec<u8>, RtcpError> {
    let mut buf = vec![0; packet.calculate_size()?];
    packet.write_into(&mut buf)?;
    Ok(buf)
}

/// A receiver report from `sender_ssrc` (this receiver) with up to 31 blocks.
pub(crate) fn receiver_report(
    sender_ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<Vec<u8>, RtcpError> {
    let rr = blocks
        .iter()
        .fold(ReceiverReport::builder(sender_ssrc), |rr, b| {
            rr.add_report_block(
                WireBlock::builder(b.ssrc)
                    .fraction_lost(b.fraction_lost)
                    .cumulative_lost(b.cumulative_lost)
                    .extended_sequence_number(b.highest_seq)
                    .interarrival_jitter(b.jitter)
                    .last_sender_report_timestamp(b.last_sr)
                    .delay_since_last_sender_report_timestamp(b.delay_since_last_sr),
            )
        });
    write(rr)
}

/// A picture loss indication asking the sender of `media_ssrc` for a keyframe.
pub(crate) fn pli(sender_ssrc: u32, media_ssrc: u32) -> Result<Vec<u8>, RtcpError> {
    write(
        PayloadFeedback::builder_owned(Pli::builder())
            .sender_ssrc(sender_ssrc)
            .media_ssrc(media_ssrc),
    )
}

/// A sender report without report blocks (for the sending side and tests).
pub fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
) -> Result<Vec<u8>, RtcpError> {
    write(
        SenderReport::builder(ssrc)
            .ntp_timestamp(ntp)
            .rtp_timestamp(rtp_ts)
            .packet_count(packets)
            .octet_count(octets),
    )
}

/// Reception statistics of one source, fed by every packet that arrives.
#[derive(Debug)]
pub(crate) struct ReceptionStats {
    clock_rate: u32,
    epoch: Option<Instant>,
    base_seq: Option<i64>,
    highest_seq: i64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Previous relative transit time, in RTP units.
    transit: Option<f64>,
    jitter: f64,
    last_sr: Option<(u32, Instant)>,
}

impl ReceptionStats {
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            epoch: None,
            base_seq: None,
            highest_seq: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            last_sr: None,
        }
    }

    /// A packet with extended sequence number `seq` arrived at `now`.
    pub(crate) fn on_packet(&mut self, seq: i64, rtp_ts: u32, now: Instant) {
        let base = *self.base_seq.get_or_insert(seq);
        self.base_seq = Some(base.min(seq));
        self.highest_seq = if self.received == 0 {
            seq
        } else {
            self.highest_seq.max(seq)
        };
        self.received += 1;
        // A.8: the jitter estimate uses the change in transit time between packets; the
        // RTP timestamp is taken modulo 2^32 so only differences matter.
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate);
        let transit = arrival - f64::from(rtp_ts);
        if let Some(prev) = self.transit {
            let mut d = (transit - prev).abs();
            // Timestamp wrap between the two packets.
            if d > f64::from(u32::MAX / 2) {
                d = (d - f64::from(u32::MAX) - 1.0).abs();
            }
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// A sender report with NTP time `ntp` arrived at `now`.
    pub(crate) fn on_sender_report(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// The report block for this source; starts a new interval for the fraction lost.
    pub(crate) fn report(&mut self, ssrc: u32, now: Instant) -> ReportBlock {
        let expected = self
            .base_seq
            .map_or(0, |b| (self.highest_seq - b + 1) as u64);
        let lost = expected.saturating_sub(self.received);
        let expected_interval = expected - self.expected_prior.min(expected);
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = self.last_sr.map_or((0, 0), |(lsr, at)| {
            let delay = now.saturating_duration_since(at).as_secs_f64() * 65536.0;
            (lsr, delay as u32)
        });
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.min(0x7f_ffff) as u32,
            highest_seq: self.highest_seq as u32,
            jitter: self.jitter as u32,
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// Microseconds since the NTP epoch for a 32.32 fixed point NTP time.
fn ntp_to_us(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64;
    let frac = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    secs * 1_000_000 + frac as i64
}

#[derive(Debug, Clone, Copy)]
struct SyncPoint {
    ntp_us: i64,
    rtp_ts: u32,
    clock_rate: u32,
}

/// Maps RTP timestamps of several streams onto the senders' common wall clock, from
/// the (NTP, RTP) pairs of their sender reports: a participant's audio and video
/// share that clock, so it lines them up (lip sync).
#[derive(Debug, Default)]
pub struct ClockSync {
    points: HashMap<u32, SyncPoint>,
}

impl ClockSync {
    pub(crate) fn on_sender_report(&mut self, ssrc: u32, ntp: u64, rtp_ts: u32, clock_rate: u32) {
        self.points.insert(
            ssrc,
            SyncPoint {
                ntp_us: ntp_to_us(ntp),
                rtp_ts,
                clock_rate,
            },
        );
    }

    /// Wall-clock microseconds (NTP epoch) of timestamp `ts` of stream `ssrc`, once a
    /// sender report for it has been seen. `ts` may be extended: only its low 32 bits
    /// are used, relative to the report (valid within 2^31 ticks of it).
    pub fn wallclock_us(&self, ssrc: u32, ts: i64) -> Option<i64> {
        let p = self.points.get(&ssrc)?;
        let ticks = i64::from((ts as u32).wrapping_sub(p.rtp_ts) as i32);
        Some(p.ntp_us + ticks * 1_000_000 / i64::from(p.clock_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn receiver_report_and_pli_round_trip() {
        let block = ReportBlock {
            ssrc: 0x1111,
            fraction_lost: 12,
            cumulative_lost: 34,
            highest_seq: 0x1_0005,
            jitter: 77,
            last_sr: 0xabcd_0000,
            delay_since_last_sr: 65536,
        };
        let rr = receiver_report(0x9999, &[block]).unwrap();
        let pli = pli(0x9999, 0x1111).unwrap();
        assert_eq!(pli.len(), 12);
        let both = [rr, pli].concat();
        assert_eq!(
            parse(&both).unwrap(),
            vec![
                RtcpMessage::ReceiverReport {
                    ssrc: 0x9999,
                    blocks: vec![block]
                },
                RtcpMessage::Pli {
                    sender_ssrc: 0x9999,
                    media_ssrc: 0x1111
                },
            ]
        );
        let sr = sender_report(5, 0x1234_5678_9abc_def0, 42, 10, 1000).unwrap();
        assert_eq!(
            parse(&sr).unwrap(),
            vec![RtcpMessage::SenderReport {
                ssrc: 5,
                ntp: 0x1234_5678_9abc_def0,
                rtp_ts: 42
            }]
        );
        assert!(parse(&[0x81, 200, 0, 40]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn reports_loss_per_interval_and_cumulatively() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(90_000);
        // 65530..=65539 expected (wrapping), 3 of them missing.
        for seq in [65530, 65531, 65533, 65534, 65536, 65537, 65539] {
            s.on_packet(seq, 0, t0);
        }
        let r = s.report(7, t0);
        assert_eq!(r.cumulative_lost, 3);
        assert_eq!(r.highest_seq, 65539);
        assert_eq!(r.fraction_lost, (3 * 256 / 10) as u8);
        for seq in 65540..65550 {
            s.on_packet(seq, 0, t0);
        }
        let r = s.report(7, t0);
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, 3));
    }

    #[test]
    fn jitter_follows_a8_and_sr_delay_is_reported() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(90_000);
        // 30 fps timestamps, arrivals alternating 0 and 10 ms late.
        for i in 0..200u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            let at = t0 + Duration::from_micros(u64::from(i) * 33_333 + late * 1000);
            s.on_packet(i64::from(i), i * 3000, at);
        }
        let r = s.report(1, t0);
        // |D| is about 900 ticks every packet: the estimate converges to it.
        assert!((880..=920).contains(&r.jitter), "jitter {}", r.jitter);
        s.on_sender_report(0x0001_0002_0003_0004, t0);
        let r = s.report(1, t0 + Duration::from_millis(500));
        assert_eq!(r.last_sr, 0x0002_0003);
        assert_eq!(r.delay_since_last_sr, 32768);
    }

    #[test]
    fn clock_sync_maps_audio_and_video_to_one_clock() {
        let mut sync = ClockSync::default();
        assert_eq!(sync.wallclock_us(1, 0), None);
        let ntp = 100u64 << 32 | 1 << 31; // 100.5 s
        sync.on_sender_report(1, ntp, 1_000, 90_000);
        sync.on_sender_report(2, ntp, u32::MAX - 479, 48_000);
        // 90 000 video ticks and 48 000 audio ticks after the report: both 101.5 s,
        // the audio one across the 32-bit wrap.
        assert_eq!(sync.wallclock_us(1, 91_000), Some(101_500_000));
        assert_eq!(sync.wallclock_us(2, (1 << 32) + 47_520), Some(101_500_000));
        assert_eq!(sync.wallclock_us(1, 0), Some(100_500_000 - 11_111));
    }

    proptest! {
        #[test]
        fn parse_never_panics(mut data in proptest::collection::vec(any::<u8>(), 1..96)) {
            // Version 2, so that parsing gets past the first check.
            data[0] = 0x80 | (data[0] & 0x3f);
            let _ = parse(&data);
        }
    }
}
