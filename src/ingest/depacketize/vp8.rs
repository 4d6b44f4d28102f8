//! VP8 over RTP (RFC 7741): the payload descriptor is stripped and the packets of one
//! timestamp are joined into one frame; key frames are told by the VP8 payload
//! header of the frame's first packet.
//!
//! After any loss everything is dropped until the next key frame, and a keyframe
//! request is raised (see [`super::gate`]): as with H.264, a frame predicted from a
//! lost one only shows garbage.

use std::collections::VecDeque;

use thiserror::Error;
use tracing::debug;

use super::gate::KeyframeGate;
use super::{AccessUnit, MAX_FRAME};

/// Payload descriptor, first byte: the extension byte follows.
const X: u8 = 0x80;
/// Start of a VP8 partition.
const S: u8 = 0x10;
/// Partition index.
const PID: u8 = 0x07;
/// Extension byte: picture ID present (one byte, or two when its M bit is set).
const I: u8 = 0x80;
/// Extension byte: TL0PICIDX present.
const L: u8 = 0x40;
/// Extension byte: TID/Y/KEYIDX present (for either of T and K).
const T_OR_K: u8 = 0x30;
/// Start code of a key frame, after the three-byte frame tag (RFC 6386, 9.1).
const KEY_FRAME_START: [u8; 3] = [0x9d, 0x01, 0x2a];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Vp8Error {
    #[error("empty RTP payload")]
    Empty,
    #[error("VP8 payload descriptor is truncated")]
    ShortDescriptor,
    #[error("VP8 packet without frame data")]
    NoData,
    #[error("VP8 packet continues a frame whose first packet is missing")]
    NoFrameStart,
    #[error("VP8 frame start in the middle of a frame")]
    StartInsideFrame,
    #[error("frame grows beyond {MAX_FRAME} bytes")]
    TooLarge,
}

/// The frame being collected: all packets with one timestamp.
#[derive(Debug)]
struct Pending {
    ts: i64,
    data: Vec<u8>,
    /// A packet of this frame was lost or malformed.
    damaged: bool,
}

#[derive(Debug)]
pub struct Vp8Depacketizer {
    pending: Option<Pending>,
    gate: KeyframeGate,
    ready: VecDeque<AccessUnit>,
}

impl Default for Vp8Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp8Depacketizer {
    pub fn new() -> Self {
        Self {
            pending: None,
            gate: KeyframeGate::new(),
            ready: VecDeque::new(),
        }
    }

    /// Feeds one packet, in sequence order. An error means the payload was malformed;
    /// its frame is then dropped, as on a loss.
    pub fn push(&mut self, ts: i64, marker: bool, payload: &[u8]) -> Result<(), Vp8Error> {
        if self.pending.as_ref().is_some_and(|p| p.ts != ts) {
            // A new timestamp ends the previous frame even if its marker packet was missing.
            self.finish();
        }
        let gap = self.gate.take_gap();
        let pending = self.pending.get_or_insert_with(|| Pending {
            ts,
            data: Vec::new(),
            damaged: gap,
        });
        let result = append(pending, payload);
        if result.is_err() {
            pending.damaged = true;
        }
        if marker {
            self.finish();
        }
        result
    }

    /// Packets were lost just before the next one pushed.
    pub fn lost(&mut self) {
        if let Some(p) = &mut self.pending {
            p.damaged = true;
        }
        self.gate.lost();
    }

    /// The next complete, decodable frame.
    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.ready.pop_front()
    }

    /// True from the first frame dropped for want of a key frame until one arrives.
    pub(crate) fn needs_keyframe(&self) -> bool {
        self.gate.needs_keyframe()
    }

    /// Frames dropped because they were damaged or not decodable.
    pub(crate) fn dropped(&self) -> u64 {
        self.gate.dropped()
    }

    fn finish(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let keyframe = is_key_frame(&p.data);
        if !self.gate.admit(p.damaged, keyframe, p.data.is_empty()) {
            debug!(ts = p.ts, damaged = p.damaged, "dropping VP8 frame");
            return;
        }
        self.ready.push_back(AccessUnit {
            ts: p.ts,
            data: p.data,
            keyframe,
        });
    }
}

/// Adds one packet's frame data to the frame being collected.
fn append(pending: &mut Pending, payload: &[u8]) -> Result<(), Vp8Error> {
    let (frame_start, data) = split_descriptor(payload)?;
    match (pending.data.is_empty(), frame_start) {
        (true, false) => return Err(Vp8Error::NoFrameStart),
        (false, true) => return Err(Vp8Error::StartInsideFrame),
        _ => {}
    }
    if pending.data.len() + data.len() > MAX_FRAME {
        return Err(Vp8Error::TooLarge);
    }
    pending.data.extend_from_slice(data);
    Ok(())
}

/// Whether the packet starts a frame (partition 0 begins in it), and its frame data.
fn split_descriptor(payload: &[u8]) -> Result<(bool, &[u8]), Vp8Error> {
    let &first = payload.first().ok_or(Vp8Error::Empty)?;
    let mut at = 1;
    if first & X != 0 {
        let &ext = payload.get(1).ok_or(Vp8Error::ShortDescriptor)?;
        at = 2;
        if ext & I != 0 {
            let &id = payload.get(at).ok_or(Vp8Error::ShortDescriptor)?;
            // M bit: a 15-bit picture ID in two bytes.
            at += if id & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & L != 0 {
            at += 1;
        }
        if ext & T_OR_K != 0 {
            at += 1;
        }
    }
    let data = payload.get(at..).ok_or(Vp8Error::ShortDescriptor)?;
    if data.is_empty() {
        return Err(Vp8Error::NoData);
    }
    Ok((first & S != 0 && first & PID == 0, data))
}

/// A key frame: the frame tag's P bit is clear and the key frame start code follows.
pub fn is_key_frame(frame: &[u8]) -> bool {
    frame.first().is_some_and(|tag| tag & 0x01 == 0)
        && frame.get(3..6) == Some(&KEY_FRAME_START[..])
}

/// RFC 7741 payloads of one frame, at most `max_payload` bytes each (more than the
/// descriptor's four): the first starts partition 0, every one carries the picture
/// ID when there is one (the sending side, for the lab's simulated participants).
#[cfg(any(test, feature = "lab"))]
pub(crate) fn packetize(frame: &[u8], max_payload: usize, picture_id: Option<u16>) -> Vec<Vec<u8>> {
    let descriptor = |start: bool| {
        let s = if start { S } else { 0 };
        match picture_id {
            None => vec![s],
            Some(id) if id < 0x80 => vec![X | s, I, id as u8],
            Some(id) => vec![X | s, I, 0x80 | (id >> 8) as u8 & 0x7f, id as u8],
        }
    };
    let room = max_payload - descriptor(true).len();
    frame
        .chunks(room)
        .enumerate()
        .map(|(i, chunk)| [descriptor(i == 0), chunk.to_vec()].concat())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A key frame's first bytes (frame tag with P clear, start code, 64x48) and filler.
    fn key(len: usize) -> Vec<u8> {
        let mut v = vec![0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 64, 0, 48, 0];
        v.extend((0..len).map(|i| (i % 251) as u8));
        v
    }

    fn inter(len: usize) -> Vec<u8> {
        let mut v = vec![0x31, 0x02, 0x00];
        v.extend((0..len).map(|i| (i % 241) as u8));
        v
    }

    fn feed(d: &mut Vp8Depacketizer, ts: i64, payloads: &[Vec<u8>]) {
        let last = payloads.len() - 1;
        for (i, p) in payloads.iter().enumerate() {
            d.push(ts, i == last, p).unwrap();
        }
    }

    #[test]
    fn frames_are_joined_and_key_frames_told_apart() {
        let mut d = Vp8Depacketizer::new();
        feed(&mut d, 0, &packetize(&key(3000), 1000, Some(300)));
        feed(&mut d, 3000, &packetize(&inter(400), 1000, Some(7)));
        feed(&mut d, 6000, &packetize(&inter(1500), 500, None));
        let out: Vec<AccessUnit> = std::iter::from_fn(|| d.pop()).collect();
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].data.clone(), out[0].keyframe), (key(3000), true));
        assert_eq!((out[1].data.clone(), out[1].keyframe), (inter(400), false));
        assert_eq!((out[2].ts, out[2].data.clone()), (6000, inter(1500)));
        assert!(!d.needs_keyframe());
    }

    #[test]
    fn nothing_before_the_first_key_frame_and_after_a_loss_until_the_next() {
        let mut d = Vp8Depacketizer::new();
        // Joined mid-stream.
        feed(&mut d, 0, &packetize(&inter(100), 1000, None));
        assert_eq!(d.pop(), None);
        assert!(d.needs_keyframe());
        feed(&mut d, 3000, &packetize(&key(100), 1000, None));
        assert!(d.pop().unwrap().keyframe);
        assert!(!d.needs_keyframe());
        // The middle packet of a frame is lost: it and the frames after it are dropped.
        let parts = packetize(&inter(2000), 800, None);
        d.push(6000, false, &parts[0]).unwrap();
        d.lost();
        d.push(6000, true, &parts[2]).unwrap();
        feed(&mut d, 9000, &packetize(&inter(10), 1000, None));
        assert_eq!(d.pop(), None);
        assert_eq!(d.dropped(), 3);
        assert!(d.needs_keyframe());
        feed(&mut d, 12000, &packetize(&key(10), 1000, None));
        assert_eq!(d.pop().map(|f| (f.ts, f.keyframe)), Some((12000, true)));
        assert!(!d.needs_keyframe());
    }

    #[test]
    fn a_lost_first_packet_or_marker_is_noticed() {
        let mut d = Vp8Depacketizer::new();
        feed(&mut d, 0, &packetize(&key(10), 1000, None));
        assert!(d.pop().is_some());
        // Its first packet lost (and reported): the continuation is refused.
        let parts = packetize(&inter(1500), 1000, None);
        d.lost();
        assert_eq!(d.push(3000, true, &parts[1]), Err(Vp8Error::NoFrameStart));
        // A key frame whose marker packet never came ends at the next timestamp.
        d.push(6000, false, &packetize(&key(10), 1000, None)[0])
            .unwrap();
        feed(&mut d, 9000, &packetize(&inter(10), 1000, None));
        assert_eq!(d.pop().map(|f| f.ts), Some(6000));
        assert_eq!(d.pop().map(|f| f.ts), Some(9000));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut d = Vp8Depacketizer::new();
        assert_eq!(d.push(0, false, &[]), Err(Vp8Error::Empty));
        assert_eq!(d.push(0, false, &[X | S]), Err(Vp8Error::ShortDescriptor));
        assert_eq!(
            d.push(0, false, &[X | S, I, 0x80]),
            Err(Vp8Error::ShortDescriptor)
        );
        assert_eq!(
            d.push(0, false, &[X | S, L | T_OR_K, 1]),
            Err(Vp8Error::ShortDescriptor)
        );
        assert_eq!(d.push(0, false, &[S]), Err(Vp8Error::NoData));
        assert_eq!(d.push(1, false, &[S, 0x50]), Ok(()));
        assert_eq!(
            d.push(1, false, &[S, 0x50]),
            Err(Vp8Error::StartInsideFrame)
        );
        // A frame starts only in partition 0.
        assert_eq!(
            d.push(2, false, &[S | 1, 0x50]),
            Err(Vp8Error::NoFrameStart)
        );
        assert!(!is_key_frame(&[0x50, 1, 0]));
        assert!(!is_key_frame(&inter(10)));
        assert!(is_key_frame(&key(0)));
    }

    proptest! {
        #[test]
        fn packetize_depacketize_is_bit_exact(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..3000), 1..6),
            max_payload in 5usize..1200,
            picture_id in proptest::option::of(0u16..0x8000),
        ) {
            // A key frame first so that nothing is dropped.
            let mut frames = frames;
            frames.insert(0, key(20));
            let mut d = Vp8Depacketizer::new();
            for (i, f) in frames.iter().enumerate() {
                let payloads = packetize(f, max_payload, picture_id);
                for p in &payloads {
                    prop_assert!(p.len() <= max_payload);
                }
                feed(&mut d, i as i64 * 3000, &payloads);
            }
            let out: Vec<AccessUnit> = std::iter::from_fn(|| d.pop()).collect();
            prop_assert_eq!(out.len(), frames.len());
            for (o, f) in out.iter().zip(&frames) {
                prop_assert_eq!(&o.data, f);
                prop_assert_eq!(o.keyframe, is_key_frame(f));
            }
        }

        #[test]
        fn depacketizer_never_panics(
            packets in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>(), 0i64..3, any::<bool>()),
                0..40,
            )
        ) {
            let mut d = Vp8Depacketizer::new();
            for (payload, marker, ts, lost) in packets {
                if lost {
                    d.lost();
                }
                let _ = d.push(ts, marker, &payload);
                while let Some(f) = d.pop() {
                    prop_assert!(!f.data.is_empty());
                }
            }
        }
    }
}
