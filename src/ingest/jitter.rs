//! Per-SSRC jitter buffer: puts packets back in sequence order, holds them for a
//! bounded playout delay so late-reordered ones can still slot in, and reports the
//! gaps that were not filled in time as losses.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::rtp::RtpPacket;

/// Sequence jump beyond which a packet is taken for a stream restart, not reordering
/// (RFC 3550 A.1 uses the same figure).
const MAX_DROPOUT: i64 = 3000;
/// Played or lost positions remembered to tell a duplicate from a late packet.
const HISTORY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// How long a gap may stay open before the missing packets are declared lost.
    pub playout_delay: Duration,
    /// Packets held at most; a full buffer stops waiting for gaps.
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            playout_delay: Duration::from_millis(200),
            capacity: 1024,
        }
    }
}

/// A packet with its sequence number and timestamp extended past their wrap-around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedPacket {
    pub seq: i64,
    pub ts: i64,
    pub rtp: RtpPacket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    /// Stored; it is the highest sequence number so far.
    Queued,
    /// Stored; it arrived after a higher sequence number.
    Reordered,
    /// Already stored or already played: dropped.
    Duplicate,
    /// Behind the playout point and never played (it was reported lost): dropped.
    Late,
    /// Buffer at capacity: dropped.
    Full,
    /// Far away from the stream's sequence numbers; dropped unless the next packet
    /// follows it, which is taken as a sender restart.
    Stray,
    /// The sender restarted its sequence numbers: this packet was stored and the
    /// `dropped` packets still held from before the jump were discarded.
    Restarted { dropped: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Extended sequence number the packet was given.
    pub seq: i64,
    pub status: PushStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Packet(OrderedPacket),
    /// `count` packets from extended sequence number `first` on never arrived in time.
    Lost {
        first: i64,
        count: u64,
    },
}

#[derive(Debug)]
struct Slot {
    packet: OrderedPacket,
    arrived: Instant,
}

#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    queue: BTreeMap<i64, Slot>,
    /// Highest extended sequence number seen: the reference for unwrapping.
    highest: Option<i64>,
    /// Last extended timestamp: the reference for unwrapping timestamps.
    last_ts: Option<i64>,
    /// Next sequence number to play; unset until the first packet is played.
    next: Option<i64>,
    /// For the positions just before `next`: true when played, false when lost.
    history: VecDeque<bool>,
    /// Sequence number that would confirm a restart after a stray packet.
    restart_probe: Option<u16>,
}

/// Extends a `bits`-wide counter value to the i64 closest to `reference`.
fn extend(reference: i64, value: u64, bits: u32) -> i64 {
    let modulus = 1i64 << bits;
    let delta = (value as i64 - reference).rem_euclid(modulus);
    if delta >= modulus / 2 {
        reference + delta - modulus
    } else {
        reference + delta
    }
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        Self {
            config,
            queue: BTreeMap::new(),
            highest: None,
            last_ts: None,
            next: None,
            history: VecDeque::new(),
            restart_probe: None,
        }
    }

    pub fn push(&mut self, packet: RtpPacket, now: Instant) -> PushOutcome {
        let Some(highest) = self.highest else {
            let seq = i64::from(packet.seq);
            self.store(seq, packet, now);
            return PushOutcome {
                seq,
                status: PushStatus::Queued,
            };
        };
        let mut seq = extend(highest, u64::from(packet.seq), 16);
        let mut restarted = None;
        if (seq - highest).abs() > MAX_DROPOUT {
            if self.restart_probe != Some(packet.seq) {
                self.restart_probe = Some(packet.seq.wrapping_add(1));
                return PushOutcome {
                    seq,
                    status: PushStatus::Stray,
                };
            }
            // Keep extended numbers increasing and their low 16 bits equal to the wire.
            seq = (((highest >> 16) + 1) << 16) | i64::from(packet.seq);
            restarted = Some(self.queue.len());
            self.queue.clear();
            self.history.clear();
            self.next = Some(seq);
            self.highest = Some(seq);
        }
        self.restart_probe = None;
        let status = if let Some(dropped) = restarted {
            PushStatus::Restarted { dropped }
        } else if let Some(next) = self.next.filter(|&n| seq < n) {
            let back = (next - seq) as usize;
            let played = back <= self.history.len() && self.history[self.history.len() - back];
            if played {
                PushStatus::Duplicate
            } else {
                PushStatus::Late
            }
        } else if self.queue.contains_key(&seq) {
            PushStatus::Duplicate
        } else if self.queue.len() >= self.config.capacity {
            PushStatus::Full
        } else if seq < highest {
            PushStatus::Reordered
        } else {
            PushStatus::Queued
        };
        if matches!(
            status,
            PushStatus::Queued | PushStatus::Reordered | PushStatus::Restarted { .. }
        ) {
            self.store(seq, packet, now);
        }
        PushOutcome { seq, status }
    }

    fn store(&mut self, seq: i64, rtp: RtpPacket, now: Instant) {
        let ts = match self.last_ts {
            Some(last) => extend(last, u64::from(rtp.ts), 32),
            None => i64::from(rtp.ts),
        };
        self.last_ts = Some(ts);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        let packet = OrderedPacket { seq, ts, rtp };
        self.queue.insert(
            seq,
            Slot {
                packet,
                arrived: now,
            },
        );
    }

    /// The next packet or loss that is due at `now`, in sequence order.
    pub fn pop_ready(&mut self, now: Instant) -> Option<Ready> {
        let (&first, _) = self.queue.first_key_value()?;
        if self.next == Some(first) {
            return Some(self.play());
        }
        // A gap (or, before the first packet is played, possibly earlier packets still
        // on their way): wait until the oldest held packet has waited the playout delay.
        let oldest = self.queue.values().map(|s| s.arrived).min()?;
        let due = self.queue.len() >= self.config.capacity
            || now.saturating_duration_since(oldest) >= self.config.playout_delay;
        if !due {
            return None;
        }
        match self.next {
            None => Some(self.play()),
            Some(next) => {
                let count = (first - next) as u64;
                self.remember(false, count);
                self.next = Some(first);
                Some(Ready::Lost { first: next, count })
            }
        }
    }

    fn play(&mut self) -> Ready {
        let (seq, slot) = self.queue.pop_first().expect("caller checked the queue");
        self.next = Some(seq + 1);
        self.remember(true, 1);
        Ready::Packet(slot.packet)
    }

    fn remember(&mut self, played: bool, count: u64) {
        let count = count.min(HISTORY as u64) as usize;
        self.history.extend(std::iter::repeat_n(played, count));
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pkt(seq: u16, ts: u32) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            marker: false,
            seq,
            ts,
            ssrc: 1,
            payload: seq.to_be_bytes().to_vec(),
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<Ready> {
        std::iter::from_fn(|| jb.pop_ready(now)).collect()
    }

    fn seqs(out: &[Ready]) -> Vec<i64> {
        out.iter()
            .filter_map(|r| match r {
                Ready::Packet(p) => Some(p.seq),
                Ready::Lost { .. } => None,
            })
            .collect()
    }

    #[test]
    fn extends_counters_both_ways_across_wrap() {
        assert_eq!(extend(65535, 0, 16), 65536);
        assert_eq!(extend(65536, 65535, 16), 65535);
        assert_eq!(extend(0, 65535, 16), -1);
        assert_eq!(extend(0xffff_fff0, 0x10, 32), 0x1_0000_0010);
    }

    #[test]
    fn reorders_across_sequence_and_timestamp_wrap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let order = [65534u16, 0, 65535, 1];
        for (i, &s) in order.iter().enumerate() {
            let ts = u32::MAX - 100 + u32::from(s.wrapping_add(2)) * 30;
            jb.push(pkt(s, ts), ms(t0, i as u64));
        }
        // Nothing before the playout delay: an earlier packet may still come.
        assert_eq!(jb.pop_ready(ms(t0, 10)), None);
        let out = drain(&mut jb, ms(t0, 200));
        assert_eq!(seqs(&out), vec![65534, 65535, 65536, 65537]);
        let ts: Vec<i64> = out
            .iter()
            .map(|r| match r {
                Ready::Packet(p) => p.ts,
                Ready::Lost { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(
            ts,
            vec![
                0xffff_ff9b,
                0xffff_ff9b + 30,
                0xffff_ff9b + 60,
                0xffff_ff9b + 90
            ]
        );
        // In sequence from now on: played at once.
        assert_eq!(jb.push(pkt(2, 0), ms(t0, 201)).status, PushStatus::Queued);
        assert_eq!(seqs(&drain(&mut jb, ms(t0, 201))), vec![65538]);
    }

    #[test]
    fn classifies_duplicates_late_and_losses() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(pkt(10, 0), t0);
        drain(&mut jb, ms(t0, 200));
        assert_eq!(jb.push(pkt(13, 0), ms(t0, 201)).status, PushStatus::Queued);
        assert_eq!(
            jb.push(pkt(12, 0), ms(t0, 202)).status,
            PushStatus::Reordered
        );
        assert_eq!(
            jb.push(pkt(12, 0), ms(t0, 203)).status,
            PushStatus::Duplicate
        );
        // The gap at 11 stays open for the playout delay...
        assert_eq!(jb.pop_ready(ms(t0, 400)), None);
        // ...then is reported, and the held packets follow.
        let out = drain(&mut jb, ms(t0, 401));
        assert_eq!(
            out[0],
            Ready::Lost {
                first: 11,
                count: 1
            }
        );
        assert_eq!(seqs(&out), vec![12, 13]);
        assert_eq!(jb.push(pkt(11, 0), ms(t0, 402)).status, PushStatus::Late);
        assert_eq!(
            jb.push(pkt(10, 0), ms(t0, 402)).status,
            PushStatus::Duplicate
        );
        assert_eq!(
            jb.push(pkt(13, 0), ms(t0, 402)).status,
            PushStatus::Duplicate
        );
    }

    #[test]
    fn full_buffer_stops_waiting() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig {
            playout_delay: Duration::from_secs(10),
            capacity: 3,
        });
        jb.push(pkt(0, 0), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(seqs(&drain(&mut jb, later)), vec![0]);
        for s in [2, 3, 4] {
            jb.push(pkt(s, 0), later);
        }
        assert_eq!(jb.push(pkt(5, 0), later).status, PushStatus::Full);
        let out = drain(&mut jb, later);
        assert_eq!(out[0], Ready::Lost { first: 1, count: 1 });
        assert_eq!(seqs(&out), vec![2, 3, 4]);
    }

    #[test]
    fn sender_restart_is_confirmed_by_a_second_packet() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(pkt(100, 0), t0);
        drain(&mut jb, ms(t0, 200));
        jb.push(pkt(102, 0), ms(t0, 201));
        assert_eq!(
            jb.push(pkt(40000, 0), ms(t0, 202)).status,
            PushStatus::Stray
        );
        let restart = jb.push(pkt(40001, 0), ms(t0, 203));
        assert_eq!(restart.status, PushStatus::Restarted { dropped: 1 });
        assert_eq!(restart.seq, 65536 + 40001);
        assert_eq!(seqs(&drain(&mut jb, ms(t0, 203))), vec![65536 + 40001]);
    }

    /// A delivery order: a loss set, then each packet (and some duplicates) moved at
    /// most `MAX_SHIFT` places from its position.
    const MAX_SHIFT: usize = 8;

    fn scenario() -> impl Strategy<Value = (u16, usize, Vec<bool>, Vec<u16>, Vec<usize>)> {
        (any::<u16>(), 1usize..300).prop_flat_map(|(start, n)| {
            (
                Just(start),
                Just(n),
                proptest::collection::vec(proptest::bool::weighted(0.1), n),
                proptest::collection::vec(0..=MAX_SHIFT as u16, n),
                proptest::collection::vec(0..n, 0..20),
            )
        })
    }

    proptest! {
        #[test]
        fn bounded_reordering_comes_out_in_order_with_exact_losses(
            (start, n, lost, shift, dups) in scenario()
        ) {
            // Sort keys: position plus a bounded shift displaces each packet by at most
            // MAX_SHIFT; duplicates are extra copies with their own shift.
            let mut arrivals: Vec<(usize, usize)> = (0..n)
                .filter(|&i| !lost[i])
                .map(|i| (i + usize::from(shift[i]), i))
                .collect();
            arrivals.extend(dups.iter().filter(|&&i| !lost[i]).map(|&i| (i + MAX_SHIFT / 2, i)));
            arrivals.sort();

            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig {
                playout_delay: Duration::from_millis(50),
                capacity: 1024,
            });
            let mut out = Vec::new();
            for (k, &(_, i)) in arrivals.iter().enumerate() {
                let now = ms(t0, k as u64);
                jb.push(pkt(start.wrapping_add(i as u16), i as u32 * 3000), now);
                out.extend(drain(&mut jb, now));
            }
            out.extend(drain(&mut jb, ms(t0, 10_000)));

            let received: Vec<usize> = (0..n).filter(|&i| !lost[i]).collect();
            let Some((&first, &last)) = received.first().zip(received.last()) else {
                prop_assert!(out.is_empty());
                return Ok(());
            };
            // Extended numbers start from the first arrival's wire sequence number.
            let i0 = arrivals[0].1;
            let base = i64::from(start.wrapping_add(i0 as u16)) - i0 as i64;
            let played: Vec<usize> = seqs(&out).iter().map(|s| (s - base) as usize).collect();
            prop_assert_eq!(&played, &received);
            let mut reported = Vec::new();
            for r in &out {
                if let Ready::Lost { first, count } = r {
                    reported.extend((0..*count as i64).map(|k| (first + k - base) as usize));
                }
            }
            let expected: Vec<usize> = (first..=last).filter(|&i| lost[i]).collect();
            prop_assert_eq!(reported, expected);
            for r in &out {
                if let Ready::Packet(p) = r {
                    let i = (p.seq - base) as usize;
                    prop_assert_eq!(p.ts, i as i64 * 3000);
                }
            }
        }
    }
}
