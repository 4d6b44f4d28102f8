//! RTP packets as the SFU forwards them: validated parsing into an owned packet and
//! building for the sending side (simulated SFU, tests). Parsing and writing use the
//! `rtp-types` crate; this module adds the size limit and typed errors.

use thiserror::Error;

/// Largest datagram accepted by default: an Ethernet MTU. SFUs keep RTP below it.
pub const DEFAULT_MAX_PACKET: usize = 1500;

/// Fixed RTP header length.
const HEADER_LEN: usize = 12;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("packet of {0} bytes is shorter than the {HEADER_LEN}-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, only version 2 is supported")]
    BadVersion(u8),
    #[error("CSRC list, header extension or padding runs past the end: needs {expected} bytes, packet has {actual}")]
    Truncated { expected: usize, actual: usize },
    #[error("padding length byte is 0")]
    BadPadding,
    #[error("packet of {len} bytes exceeds the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("payload type {0} is not a 7-bit value")]
    BadPayloadType(u8),
}

/// One RTP packet with its payload copied out (the jitter buffer keeps it for a while).
/// CSRCs, header extensions and padding are validated and then dropped: the ingest
/// does not use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub(crate) payload_type: u8,
    pub(crate) marker: bool,
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    pub(crate) ssrc: u32,
    pub(crate) payload: Vec<u8>,
}

impl RtpPacket {
    /// Parses and validates one datagram; never panics on any input.
    pub fn parse(data: &[u8], max_len: usize) -> Result<Self, RtpError> {
        if data.len() > max_len {
            return Err(RtpError::Oversize {
                len: data.len(),
                max: max_len,
            });
        }
        let packet = rtp_types::RtpPacket::parse(data).map_err(|e| match e {
            rtp_types::RtpParseError::UnsupportedVersion(v) => RtpError::BadVersion(v),
            rtp_types::RtpParseError::Truncated { actual, .. } if actual < HEADER_LEN => {
                RtpError::TooShort(actual)
            }
            rtp_types::RtpParseError::Truncated { expected, actual } => {
                RtpError::Truncated { expected, actual }
            }
            rtp_types::RtpParseError::PaddingInvalid(_) => RtpError::BadPadding,
        })?;
        Ok(Self {
            payload_type: packet.payload_type(),
            marker: packet.marker_bit(),
            seq: packet.sequence_number(),
            ts: packet.timestamp(),
            ssrc: packet.ssrc(),
            payload: packet.payload().to_vec(),
        })
    }

    /// Serialises the packet (no CSRCs, extension or padding).
    pub fn to_bytes(&self) -> Result<Vec<u8>, RtpError> {
        if self.payload_type > 0x7f {
            return Err(RtpError::BadPayloadType(self.payload_type));
        }
        Ok(rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(self.payload_type)
            .marker_bit(self.marker)
            .sequence_number(self.seq)
            .timestamp(self.ts)
            .ssrc(self.ssrc)
            .payload(&self.payload)
            .write_vec_unchecked())
    }
}

/// RTCP multiplexed on the RTP port (RFC 5761): the second byte of RTCP is a packet type
/// 192..=223, which as an RTP marker+payload type would fall in the reserved range 64..=95.
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

/// The SSRC of an RTP datagram without parsing it, so an IO shell can remember where a
/// stream comes from.
#[cfg(test)]
pub(crate) fn peek_ssrc(data: &[u8]) -> Option<u32> {
    let bytes = data.get(8..12)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Sending side of one RTP stream: numbers packets consecutively from a starting
/// sequence number.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    payload_type: u8,
    next_seq: u16,
}

impl RtpSender {
    pub fn new(ssrc: u32, payload_type: u8, first_seq: u16) -> Result<Self, RtpError> {
        if payload_type > 0x7f {
            return Err(RtpError::BadPayloadType(payload_type));
        }
        Ok(Self {
            ssrc,
            payload_type,
            next_seq: first_seq,
        })
    }

    /// Wraps one payload into the next packet of the stream.
    pub fn packet(&mut self, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        RtpPacket {
            payload_type: self.payload_type,
            marker,
            seq,
            ts,
            ssrc: self.ssrc,
            payload: payload.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(first: u8) -> Vec<u8> {
        vec![first, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
    }

    #[test]
    fn round_trips_header_fields() {
        let p = RtpPacket {
            payload_type: 111,
            marker: true,
            seq: 65535,
            ts: 0xdead_beef,
            ssrc: 0x1234_5678,
            payload: vec![1, 2, 3],
        };
        let bytes = p.to_bytes().unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 3);
        assert_eq!(RtpPacket::parse(&bytes, DEFAULT_MAX_PACKET).unwrap(), p);
        assert_eq!(peek_ssrc(&bytes), Some(0x1234_5678));
        assert!(!is_rtcp(&bytes));
    }

    #[test]
    fn rejects_malformed_headers() {
        assert_eq!(
            RtpPacket::parse(&[0x80, 96, 0], 1500),
            Err(RtpError::TooShort(3))
        );
        assert_eq!(
            RtpPacket::parse(&header(0x40), 1500),
            Err(RtpError::BadVersion(1))
        );
        // Two CSRCs announced, none present.
        assert!(matches!(
            RtpPacket::parse(&header(0x82), 1500),
            Err(RtpError::Truncated { expected: 20, .. })
        ));
        // Extension bit without an extension header.
        assert!(matches!(
            RtpPacket::parse(&header(0x90), 1500),
            Err(RtpError::Truncated { .. })
        ));
        // Extension header announcing one word that is missing.
        let mut ext = header(0x90);
        ext.extend_from_slice(&[0xbe, 0xde, 0, 1]);
        assert!(matches!(
            RtpPacket::parse(&ext, 1500),
            Err(RtpError::Truncated { .. })
        ));
        // Padding longer than the payload, and a zero padding length.
        let mut pad = header(0xa0);
        pad.extend_from_slice(&[1, 9]);
        assert!(matches!(
            RtpPacket::parse(&pad, 1500),
            Err(RtpError::Truncated { .. })
        ));
        let mut zero = header(0xa0);
        zero.push(0);
        assert_eq!(RtpPacket::parse(&zero, 1500), Err(RtpError::BadPadding));
        assert_eq!(
            RtpPacket::parse(&[0x80; 1501], 1500),
            Err(RtpError::Oversize {
                len: 1501,
                max: 1500
            })
        );
    }

    #[test]
    fn strips_csrcs_extension_and_padding() {
        let mut p = header(0xb1); // padding, extension, one CSRC
        p.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
        p.extend_from_slice(&[7, 8]); // payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        assert_eq!(RtpPacket::parse(&p, 1500).unwrap().payload, vec![7, 8]);
    }

    #[test]
    fn detects_multiplexed_rtcp() {
        assert!(is_rtcp(&[0x81, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 206, 0, 2]));
        assert!(!is_rtcp(&[0x80, 96 | 0x80]));
        assert!(!is_rtcp(&[0x81]));
    }

    #[test]
    fn sender_numbers_packets_across_wrap() {
        let mut s = RtpSender::new(7, 96, 65535).unwrap();
        assert_eq!(s.packet(0, false, &[1]).seq, 65535);
        assert_eq!(s.packet(0, true, &[2]).seq, 0);
        assert_eq!(
            RtpSender::new(7, 128, 0).err(),
            Some(RtpError::BadPayloadType(128))
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RtpPacket::parse(&data, 48);
        }
    }
}
