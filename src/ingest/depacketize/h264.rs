//! H.264 over RTP (RFC 6184, packetization mode 1): single NAL unit packets, STAP-A
//! and FU-A, reassembled into Annex B access units; and the packetizer for the
//! sending side.
//!
//! After any loss everything is dropped until the next keyframe, and a keyframe
//! request is raised (see [`super::gate`]).

use std::collections::VecDeque;

use thiserror::Error;
use tracing::debug;

use super::gate::KeyframeGate;
pub(crate) use super::AccessUnit;
use super::MAX_FRAME;
use crate::media::h264::{is_annex_b, nal_type, nal_units, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};

/// STAP-A aggregation packet type.
const STAP_A: u8 = 24;
/// FU-A fragmentation unit type.
const FU_A: u8 = 28;
/// Start code written before every NAL unit of an output access unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum H264Error {
    #[error("empty RTP payload")]
    Empty,
    #[error("NAL unit type {0} is not supported in packetization mode 1")]
    Unsupported(u8),
    #[error("STAP-A aggregate is truncated or holds an empty NAL unit")]
    BadStapA,
    #[error("FU-A packet is shorter than its two header bytes")]
    ShortFuA,
    #[error("FU-A fragment without the start of its NAL unit")]
    FuWithoutStart,
    #[error("access unit grows beyond {MAX_FRAME} bytes")]
    TooLarge,
    #[error("input is not an Annex B access unit")]
    NotAnnexB,
    #[error("maximum payload size {0} is too small (at least 3 bytes)")]
    PayloadTooSmall(usize),
}

/// The access unit being collected: all packets with one timestamp.
#[derive(Debug)]
struct Pending {
    ts: i64,
    data: Vec<u8>,
    keyframe: bool,
    has_sps: bool,
    has_pps: bool,
    /// A packet of this AU was lost or malformed.
    damaged: bool,
}

#[derive(Debug)]
pub struct H264Depacketizer {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    pending: Option<Pending>,
    /// NAL unit being reassembled from FU-A fragments.
    fragment: Option<Vec<u8>>,
    gate: KeyframeGate,
    ready: VecDeque<AccessUnit>,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Depacketizer {
    pub fn new() -> Self {
        Self {
            sps: None,
            pps: None,
            pending: None,
            fragment: None,
            gate: KeyframeGate::new(),
            ready: VecDeque::new(),
        }
    }

    /// Feeds one packet, in sequence order. An error means the payload was malformed;
    /// its access unit is then dropped, as on a loss.
    pub fn push(&mut self, ts: i64, marker: bool, payload: &[u8]) -> Result<(), H264Error> {
        if self.pending.as_ref().is_some_and(|p| p.ts != ts) {
            // A new timestamp ends the previous AU even if its marker packet was missing.
            self.finish();
        }
        let gap = self.gate.take_gap();
        self.pending.get_or_insert_with(|| Pending {
            ts,
            data: Vec::new(),
            keyframe: false,
            has_sps: false,
            has_pps: false,
            damaged: gap,
        });
        let result = self.depacketize(payload);
        if result.is_err() {
            self.damage();
        }
        if marker {
            self.finish();
        }
        result
    }

    /// Packets were lost just before the next one pushed.
    pub fn lost(&mut self) {
        self.damage();
        self.gate.lost();
    }

    /// The next complete, decodable access unit.
    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.ready.pop_front()
    }

    /// True from the first frame dropped for want of a keyframe until one arrives.
    pub(crate) fn needs_keyframe(&self) -> bool {
        self.gate.needs_keyframe()
    }

    /// Access units dropped because they were damaged or not decodable.
    pub(crate) fn dropped(&self) -> u64 {
        self.gate.dropped()
    }

    fn damage(&mut self) {
        self.fragment = None;
        if let Some(p) = &mut self.pending {
            p.damaged = true;
        }
    }

    fn depacketize(&mut self, payload: &[u8]) -> Result<(), H264Error> {
        let &header = payload.first().ok_or(H264Error::Empty)?;
        match header & 0x1f {
            1..=23 => {
                self.fragment = None;
                self.add_nal(payload)
            }
            STAP_A => {
                self.fragment = None;
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    let len = match rest {
                        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
                        _ => return Err(H264Error::BadStapA),
                    };
                    let nal = rest.get(2..2 + len).filter(|n| !n.is_empty());
                    self.add_nal(nal.ok_or(H264Error::BadStapA)?)?;
                    rest = &rest[2 + len..];
                }
                Ok(())
            }
            FU_A => {
                let [indicator, fu, body @ ..] = payload else {
                    return Err(H264Error::ShortFuA);
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    let mut nal = Vec::with_capacity(body.len() * 4);
                    nal.push((indicator & 0xe0) | (fu & 0x1f));
                    self.fragment = Some(nal);
                }
                let nal = self.fragment.as_mut().ok_or(H264Error::FuWithoutStart)?;
                if nal.len() + body.len() > MAX_FRAME {
                    return Err(H264Error::TooLarge);
                }
                nal.extend_from_slice(body);
                if end {
                    let nal = self.fragment.take().expect("fragment checked above");
                    self.add_nal(&nal)?;
                }
                Ok(())
            }
            other => Err(H264Error::Unsupported(other)),
        }
    }

    fn add_nal(&mut self, nal: &[u8]) -> Result<(), H264Error> {
        let pending = self.pending.as_mut().expect("push opened an access unit");
        if pending.data.len() + START_CODE.len() + nal.len() > MAX_FRAME {
            return Err(H264Error::TooLarge);
        }
        match nal_type(nal) {
            NAL_SPS => {
                pending.has_sps = true;
                self.sps = Some(nal.to_vec());
            }
            NAL_PPS => {
                pending.has_pps = true;
                self.pps = Some(nal.to_vec());
            }
            NAL_IDR => pending.keyframe = true,
            _ => {}
        }
        pending.data.extend_from_slice(&START_CODE);
        pending.data.extend_from_slice(nal);
        Ok(())
    }

    fn finish(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        self.fragment = None;
        if !self.gate.admit(p.damaged, p.keyframe, p.data.is_empty()) {
            debug!(ts = p.ts, damaged = p.damaged, "dropping H.264 access unit");
            return;
        }
        let data = if p.keyframe {
            self.with_parameter_sets(&p)
        } else {
            p.data
        };
        self.ready.push_back(AccessUnit {
            ts: p.ts,
            data,
            keyframe: p.keyframe,
        });
    }

    /// A keyframe must carry SPS and PPS for a decoder starting there; senders that
    /// send them out of band or only once get the latest ones put in front (after an
    /// access unit delimiter, which must stay first).
    fn with_parameter_sets(&self, p: &Pending) -> Vec<u8> {
        let missing: Vec<&[u8]> = [(p.has_sps, &self.sps), (p.has_pps, &self.pps)]
            .into_iter()
            .filter(|(has, _)| !has)
            .filter_map(|(_, set)| set.as_deref())
            .collect();
        if missing.is_empty() {
            return p.data.clone();
        }
        let at = match nal_units(&p.data).next() {
            Some(first) if nal_type(first) == NAL_AUD => START_CODE.len() + first.len(),
            _ => 0,
        };
        let mut out = Vec::with_capacity(p.data.len() + 64);
        out.extend_from_slice(&p.data[..at]);
        for set in missing {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
        out.extend_from_slice(&p.data[at..]);
        out
    }
}

/// Splits Annex B access units into RTP payloads of at most `max_payload` bytes:
/// small NAL units are aggregated into STAP-A, large ones fragmented into FU-A.
#[derive(Debug, Clone, Copy)]
pub struct H264Packetizer {
    max_payload: usize,
}

impl H264Packetizer {
    pub fn new(max_payload: usize) -> Result<Self, H264Error> {
        // FU-A needs two header bytes plus at least one byte of the NAL unit.
        if max_payload < 3 {
            return Err(H264Error::PayloadTooSmall(max_payload));
        }
        Ok(Self { max_payload })
    }

    /// The payloads of one access unit; the last one goes out with the marker bit.
    pub fn packetize(&self, au: &[u8]) -> Result<Vec<Vec<u8>>, H264Error> {
        if !is_annex_b(au) {
            return Err(H264Error::NotAnnexB);
        }
        let mut out = Vec::new();
        let mut group: Vec<&[u8]> = Vec::new();
        let mut group_len = 1; // STAP-A header byte
        for nal in nal_units(au) {
            // Only a unit that cannot go out alone is fragmented; a unit that fits alone
            // but not in a STAP-A is flushed below as a single-unit packet.
            if nal.len() > self.max_payload {
                self.flush_group(&mut group, &mut out);
                group_len = 1;
                self.fragment(nal, &mut out);
                continue;
            }
            if group_len + 2 + nal.len() > self.max_payload {
                self.flush_group(&mut group, &mut out);
                group_len = 1;
            }
            group.push(nal);
            group_len += 2 + nal.len();
        }
        self.flush_group(&mut group, &mut out);
        Ok(out)
    }

    fn flush_group(&self, group: &mut Vec<&[u8]>, out: &mut Vec<Vec<u8>>) {
        match group.as_slice() {
            [] => {}
            [single] => out.push(single.to_vec()),
            nals => {
                // F bit if any unit has it, NRI the highest of the units.
                let f = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
                let nri = nals.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                let mut p = vec![f | nri | STAP_A];
                for nal in nals {
                    // A NAL unit in a group fits in max_payload, itself a datagram size.
                    p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
                    p.extend_from_slice(nal);
                }
                out.push(p);
            }
        }
        group.clear();
    }

    fn fragment(&self, nal: &[u8], out: &mut Vec<Vec<u8>>) {
        let indicator = (nal[0] & 0xe0) | FU_A;
        let kind = nal[0] & 0x1f;
        let chunks: Vec<&[u8]> = nal[1..].chunks(self.max_payload - 2).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut fu = kind;
            if i == 0 {
                fu |= 0x80;
            }
            if i == last {
                fu |= 0x40;
            }
            let mut p = Vec::with_capacity(chunk.len() + 2);
            p.extend_from_slice(&[indicator, fu]);
            p.extend_from_slice(chunk);
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&START_CODE[..], n].concat())
            .collect()
    }

    fn idr(len: usize) -> Vec<u8> {
        let mut v = vec![0x65];
        v.extend((0..len).map(|i| (i % 251) as u8 | 1));
        v
    }

    fn slice(len: usize) -> Vec<u8> {
        let mut v = idr(len);
        v[0] = 0x41;
        v
    }

    /// Packetizes and feeds AUs; returns what came out.
    fn round_trip(
        d: &mut H264Depacketizer,
        p: &H264Packetizer,
        aus: &[Vec<u8>],
    ) -> Vec<AccessUnit> {
        for (i, au) in aus.iter().enumerate() {
            let payloads = p.packetize(au).unwrap();
            let last = payloads.len() - 1;
            for (k, pl) in payloads.iter().enumerate() {
                d.push(i as i64 * 3000, k == last, pl).unwrap();
            }
        }
        std::iter::from_fn(|| d.pop()).collect()
    }

    #[test]
    fn single_stap_and_fu_round_trip() {
        let p = H264Packetizer::new(100).unwrap();
        let key = annex_b(&[SPS, PPS, &idr(450)]);
        let payloads = p.packetize(&key).unwrap();
        assert_eq!(payloads[0][0] & 0x1f, STAP_A);
        assert_eq!(payloads[1][0] & 0x1f, FU_A);
        assert!(payloads.iter().all(|pl| pl.len() <= 100));
        let delta = annex_b(&[&slice(20)]);
        assert_eq!(p.packetize(&delta).unwrap(), vec![slice(20)]);

        let mut d = H264Depacketizer::new();
        let out = round_trip(&mut d, &p, &[key.clone(), delta.clone()]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].data.as_slice(), out[0].keyframe), (&key[..], true));
        assert_eq!(
            (out[1].data.as_slice(), out[1].keyframe, out[1].ts),
            (&delta[..], false, 3000)
        );
        assert!(!d.needs_keyframe());
    }

    #[test]
    fn timestamp_change_ends_an_access_unit_without_marker() {
        let mut d = H264Depacketizer::new();
        d.push(0, false, &idr(5)).unwrap();
        assert_eq!(d.pop(), None);
        d.push(3000, true, &slice(5)).unwrap();
        assert_eq!(d.pop().unwrap().data, annex_b(&[&idr(5)]));
        assert_eq!(d.pop().unwrap().data, annex_b(&[&slice(5)]));
    }

    #[test]
    fn prepends_latest_parameter_sets_to_bare_keyframes() {
        let mut d = H264Depacketizer::new();
        // Parameter sets out of band in their own AU (dropped: no picture), then a bare IDR
        // after an access unit delimiter.
        d.push(0, true, SPS).unwrap();
        d.push(0, true, PPS).unwrap();
        d.push(3000, true, &[0x09, 0xf0]).unwrap();
        d.push(3000, true, &idr(3)).unwrap();
        // Only the IDR is a keyframe; the AUs before it are dropped.
        let au = d.pop().unwrap();
        assert!(au.keyframe);
        assert_eq!(au.data, annex_b(&[SPS, PPS, &idr(3)]));
        assert_eq!(d.pop(), None);

        let mut d = H264Depacketizer::new();
        d.push(0, true, SPS).unwrap();
        d.push(0, true, PPS).unwrap();
        d.push(3000, false, &[0x09, 0xf0]).unwrap();
        d.push(3000, true, &idr(3)).unwrap();
        assert_eq!(
            d.pop().unwrap().data,
            annex_b(&[&[0x09, 0xf0], SPS, PPS, &idr(3)])
        );
    }

    #[test]
    fn loss_drops_until_next_keyframe_and_asks_for_one() {
        let p = H264Packetizer::new(50).unwrap();
        let key = annex_b(&[SPS, PPS, &idr(200)]);
        let mut d = H264Depacketizer::new();
        assert_eq!(round_trip(&mut d, &p, std::slice::from_ref(&key)).len(), 1);
        // Second frame loses a middle fragment.
        let frags = p.packetize(&annex_b(&[&slice(200)])).unwrap();
        d.push(3000, false, &frags[0]).unwrap();
        d.lost();
        for f in &frags[2..frags.len() - 1] {
            // Continuation fragments without their start are errors, not panics.
            let _ = d.push(3000, false, f);
        }
        let _ = d.push(3000, true, frags.last().unwrap());
        d.push(6000, true, &slice(10)).unwrap();
        assert_eq!(d.pop(), None);
        assert_eq!(d.dropped(), 2);
        assert!(d.needs_keyframe());
        let out = round_trip(&mut d, &p, std::slice::from_ref(&key));
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert!(!d.needs_keyframe());
    }

    #[test]
    fn loss_after_a_complete_frame_damages_the_next_one() {
        let mut d = H264Depacketizer::new();
        d.push(0, true, &idr(5)).unwrap();
        d.lost();
        // Its first packets may have been the lost ones.
        d.push(3000, true, &idr(5)).unwrap();
        assert_eq!(d.pop().map(|a| a.ts), Some(0));
        assert_eq!(d.pop(), None);
        d.push(6000, true, &idr(5)).unwrap();
        assert_eq!(d.pop().map(|a| a.ts), Some(6000));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut d = H264Depacketizer::new();
        assert_eq!(d.push(0, false, &[]), Err(H264Error::Empty));
        assert_eq!(
            d.push(0, false, &[0x19, 0]),
            Err(H264Error::Unsupported(25))
        );
        assert_eq!(d.push(0, false, &[0x18, 0, 5, 1]), Err(H264Error::BadStapA));
        assert_eq!(d.push(0, false, &[0x18, 0, 0]), Err(H264Error::BadStapA));
        assert_eq!(d.push(0, false, &[0x18, 0]), Err(H264Error::BadStapA));
        assert_eq!(d.push(0, false, &[0x1c]), Err(H264Error::ShortFuA));
        assert_eq!(
            d.push(0, false, &[0x1c, 0x05, 1]),
            Err(H264Error::FuWithoutStart)
        );
        assert_eq!(
            H264Packetizer::new(2).err(),
            Some(H264Error::PayloadTooSmall(2))
        );
        let p = H264Packetizer::new(10).unwrap();
        assert_eq!(p.packetize(&[0x65, 1]), Err(H264Error::NotAnnexB));
    }

    /// NAL unit bodies without start-code emulation, with a valid forbidden bit.
    fn nal() -> impl Strategy<Value = Vec<u8>> {
        (
            // No IDR: a keyframe without parameter sets would get them prepended.
            prop_oneof![Just(0x41u8), Just(0x01), Just(0x06), Just(0x67), Just(0x68)],
            proptest::collection::vec(1u8..=255, 0..600),
        )
            .prop_map(|(h, body)| [vec![h], body].concat())
    }

    proptest! {
        #[test]
        fn packetize_depacketize_is_bit_exact(
            aus in proptest::collection::vec(proptest::collection::vec(nal(), 1..6), 1..6),
            max_payload in 3usize..300,
        ) {
            let p = H264Packetizer::new(max_payload).unwrap();
            // Start with a keyframe carrying its parameter sets so that nothing is
            // dropped or amended.
            let mut aus: Vec<Vec<u8>> = aus
                .iter()
                .map(|nals| annex_b(&nals.iter().map(Vec::as_slice).collect::<Vec<_>>()))
                .collect();
            aus.insert(0, annex_b(&[SPS, PPS, &idr(10)]));
            let mut d = H264Depacketizer::new();
            for au in &aus {
                for pl in p.packetize(au).unwrap() {
                    prop_assert!(pl.len() <= max_payload);
                }
            }
            let out = round_trip(&mut d, &p, &aus);
            prop_assert_eq!(out.len(), aus.len());
            for (o, a) in out.iter().zip(&aus) {
                prop_assert_eq!(&o.data, a);
            }
        }

        #[test]
        fn depacketizer_never_panics(
            packets in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>(), 0i64..3, any::<bool>()),
                0..40,
            )
        ) {
            let mut d = H264Depacketizer::new();
            for (payload, marker, ts, lost) in packets {
                if lost {
                    d.lost();
                }
                let _ = d.push(ts, marker, &payload);
                while d.pop().is_some() {}
            }
        }
    }
}
