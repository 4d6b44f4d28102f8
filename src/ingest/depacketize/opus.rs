//! Opus over RTP (RFC 7587): every payload is exactly one Opus packet and timestamps
//! count 48 kHz samples whatever the coded bandwidth. The payload is checked against
//! the packet framing rules of RFC 6716 section 3.4 that need no decoding.

use thiserror::Error;

/// RTP clock rate of Opus, fixed by RFC 7587.
pub(crate) const CLOCK_RATE: u32 = 48_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpusError {
    #[error("empty RTP payload")]
    Empty,
    #[error("code 3 Opus packet without its frame count byte")]
    MissingFrameCount,
    #[error("code 3 Opus packet with a frame count of zero")]
    NoFrames,
}

/// Validates one RTP payload and returns it as the Opus packet it is.
pub fn depacketize(payload: &[u8]) -> Result<&[u8], OpusError> {
    let &toc = payload.first().ok_or(OpusError::Empty)?;
    if toc & 0x03 == 3 {
        let &count = payload.get(1).ok_or(OpusError::MissingFrameCount)?;
        if count & 0x3f == 0 {
            return Err(OpusError::NoFrames);
        }
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_packets_and_rejects_broken_framing() {
        assert_eq!(depacketize(&[0x78, 1, 2]), Ok(&[0x78, 1, 2][..]));
        // A one-byte packet (DTX) is valid.
        assert_eq!(depacketize(&[0x78]), Ok(&[0x78][..]));
        assert_eq!(depacketize(&[0x7b, 0x02, 1]), Ok(&[0x7b, 0x02, 1][..]));
        assert_eq!(depacketize(&[]), Err(OpusError::Empty));
        assert_eq!(depacketize(&[0x7b]), Err(OpusError::MissingFrameCount));
        assert_eq!(depacketize(&[0x7b, 0x80]), Err(OpusError::NoFrames));
    }
}
