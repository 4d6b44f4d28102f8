//! The record layer: after the handshake every byte of the link travels in Noise
//! transport messages, `u16 LE length || ciphertext` (at most 65535 bytes, so link
//! frames are cut into records). Sans-IO.
//!
//! Nonces are not sent: each side counts its records from 0, so a record modified,
//! replayed, reordered, dropped or injected fails to decrypt, and the link ends.

use std::sync::Arc;

use snow::StatelessTransportState;

/// Largest Noise message, tag included.
pub const MAX_RECORD: usize = 65535;
const TAG: usize = 16;
/// Plaintext bytes carried by one full record.
pub const MAX_PLAINTEXT: usize = MAX_RECORD - TAG;
/// Largest record accepted before the peer is authenticated: the mixer's first
/// record, which holds only the small `Hello`. The sealer keeps record 0 within it.
pub const PREAUTH_MAX_RECORD: usize = 4096;
const LEN_BYTES: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record {record} failed authentication: modified, replayed, reordered or forged")]
    Forged { record: u64 },
    #[error(
        "record of {len} bytes exceeds the {max} bytes allowed before the peer is authenticated"
    )]
    TooLarge { len: usize, max: usize },
    #[error("record of {len} bytes is shorter than its tag")]
    Short { len: usize },
    #[error("the link ended inside a record ({buffered} bytes of it received)")]
    Truncated { buffered: usize },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt record {record}: {source}")]
pub struct SealError {
    record: u64,
    #[source]
    source: snow::Error,
}

/// Encrypts the outgoing byte stream.
pub struct Sealer {
    state: Arc<StatelessTransportState>,
    nonce: u64,
}

/// Decrypts the incoming byte stream, one complete record at a time.
pub struct Opener {
    state: Arc<StatelessTransportState>,
    nonce: u64,
    buf: Vec<u8>,
    pos: usize,
    max_record: usize,
    failed: Option<RecordError>,
}

/// The two directions of one transport.
pub fn split(state: StatelessTransportState, max_record: usize) -> (Sealer, Opener) {
    let state = Arc::new(state);
    (
        Sealer {
            state: state.clone(),
            nonce: 0,
        },
        Opener {
            state,
            nonce: 0,
            buf: Vec::new(),
            pos: 0,
            max_record,
            failed: None,
        },
    )
}

impl Sealer {
    /// Appends `plain` to `out` as records of at most [`MAX_PLAINTEXT`] bytes each
    /// (the first record of the link at most [`PREAUTH_MAX_RECORD`] in all).
    pub fn seal(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        while !plain.is_empty() {
            let max = match self.nonce {
                0 => PREAUTH_MAX_RECORD - TAG,
                _ => MAX_PLAINTEXT,
            };
            let (chunk, rest) = plain.split_at(plain.len().min(max));
            plain = rest;
            let start = out.len();
            out.resize(start + LEN_BYTES + chunk.len() + TAG, 0);
            let n = self
                .state
                .write_message(self.nonce, chunk, &mut out[start + LEN_BYTES..])
                .map_err(|source| SealError {
                    record: self.nonce,
                    source,
                })?;
            out[start..start + LEN_BYTES].copy_from_slice(&(n as u16).to_le_bytes());
            self.nonce += 1;
        }
        Ok(())
    }
}

impl Opener {
    /// Allows full-size records from now on (the peer has been authenticated).
    pub(crate) fn authenticated(&mut self) {
        self.max_record = MAX_RECORD;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.receive_buffer(bytes.len()).extend_from_slice(bytes);
        }
    }

    /// The receive buffer with room for `n` more bytes, for the shell to read into
    /// directly (what [`push`](Self::push) does, without the copy). After a failure
    /// what is added there is never decrypted.
    pub(crate) fn receive_buffer(&mut self, n: usize) -> &mut Vec<u8> {
        // Compact only once the consumed part is at least as large as what is left,
        // so each byte is moved O(1) times on average.
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(n);
        &mut self.buf
    }

    /// Bytes received and not yet decrypted.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The length of the next record, once its prefix is in; checked against the limit.
    pub fn next_len(&mut self) -> Result<Option<usize>, RecordError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(prefix) = self.buf[self.pos..].first_chunk::<LEN_BYTES>() else {
            return Ok(None);
        };
        let len = u16::from_le_bytes(*prefix) as usize;
        if len > self.max_record {
            return Err(self.fail(RecordError::TooLarge {
                len,
                max: self.max_record,
            }));
        }
        if len < TAG {
            return Err(self.fail(RecordError::Short { len }));
        }
        Ok(Some(len))
    }

    /// Decrypts the next complete record, appending its plaintext to `out`;
    /// `Ok(false)` if more bytes are needed.
    pub fn open(&mut self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        let Some(len) = self.next_len()? else {
            return Ok(false);
        };
        let Some(record) = self
            .buf
            .get(self.pos + LEN_BYTES..self.pos + LEN_BYTES + len)
        else {
            return Ok(false);
        };
        let start = out.len();
        // Room for the tag too: snow then decrypts in place in `out`, where with
        // less it would copy the record to a new allocation first.
        out.resize(start + len, 0);
        match self
            .state
            .read_message(self.nonce, record, &mut out[start..])
        {
            Ok(n) => out.truncate(start + n),
            Err(_) => {
                out.truncate(start);
                return Err(self.fail(RecordError::Forged { record: self.nonce }));
            }
        }
        self.nonce += 1;
        self.pos += LEN_BYTES + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(true)
    }

    /// The error for an end of stream now: none between records.
    pub fn at_eof(&self) -> Result<(), RecordError> {
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(RecordError::Truncated { buffered }),
        }
    }

    fn fail(&mut self, e: RecordError) -> RecordError {
        self.buf = Vec::new();
        self.pos = 0;
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::link::handshake::{Initiator, KeyRing, LinkKey, Responder, PREAMBLE_LEN};

    /// Both transports of a completed handshake (mixer's, recorder's).
    pub(crate) fn pair() -> (StatelessTransportState, StatelessTransportState) {
        let key: LinkKey = "k".parse().unwrap();
        let (init, out) = Initiator::start(&key).unwrap();
        let resp = Responder::new(
            &KeyRing::single(key),
            out[..PREAMBLE_LEN].try_into().unwrap(),
        )
        .unwrap();
        let (msg2, rec, _) = resp.respond(&out[PREAMBLE_LEN + 2..]).unwrap();
        (init.finish(&msg2[2..]).unwrap(), rec)
    }

    fn open_all(opener: &mut Opener, wire: &[u8]) -> Result<Vec<u8>, RecordError> {
        opener.push(wire);
        let mut out = Vec::new();
        while opener.open(&mut out)? {}
        Ok(out)
    }

    #[test]
    fn large_streams_are_cut_into_records_and_come_back() {
        let (m, r) = pair();
        let (mut sealer, _) = split(m, MAX_RECORD);
        let (_, mut opener) = split(r, MAX_RECORD);
        let plain: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        sealer.seal(&plain, &mut wire).unwrap();
        // A small first record (the limit before authentication), then full ones.
        assert_eq!(wire.len(), plain.len() + 4 * (LEN_BYTES + TAG));
        // Byte by byte for the first records, then the rest at once.
        let mut out = Vec::new();
        for b in &wire[..70_000] {
            opener.push(std::slice::from_ref(b));
            while opener.open(&mut out).unwrap() {}
        }
        out.extend(open_all(&mut opener, &wire[70_000..]).unwrap());
        assert_eq!(out, plain);
        assert_eq!(opener.at_eof(), Ok(()));
    }

    #[test]
    fn flipped_replayed_reordered_and_truncated_records_fail() {
        let records = |n: usize| {
            let (m, r) = pair();
            let (mut sealer, _) = split(m, MAX_RECORD);
            let (_, opener) = split(r, MAX_RECORD);
            let recs: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    let mut w = Vec::new();
                    sealer.seal(&[i as u8; 100], &mut w).unwrap();
                    w
                })
                .collect();
            (recs, opener)
        };
        let (recs, mut opener) = records(3);
        let mut flipped = recs[1].clone();
        flipped[50] ^= 1;
        let wire = [recs[0].clone(), flipped].concat();
        assert_eq!(
            open_all(&mut opener, &wire),
            Err(RecordError::Forged { record: 1 })
        );
        let (recs, mut opener) = records(2);
        let replayed = [recs[0].clone(), recs[0].clone()].concat();
        assert_eq!(
            open_all(&mut opener, &replayed),
            Err(RecordError::Forged { record: 1 })
        );
        let (recs, mut opener) = records(2);
        let reordered = [recs[1].clone(), recs[0].clone()].concat();
        assert_eq!(
            open_all(&mut opener, &reordered),
            Err(RecordError::Forged { record: 0 })
        );
        let (recs, mut opener) = records(1);
        open_all(&mut opener, &recs[0][..60]).unwrap();
        assert_eq!(
            opener.at_eof(),
            Err(RecordError::Truncated { buffered: 60 })
        );
        // After an error nothing more is buffered or decrypted.
        let (recs, mut opener) = records(2);
        let _ = open_all(&mut opener, &[recs[1].clone(), recs[0].clone()].concat());
        opener.push(&recs[0]);
        assert_eq!(opener.buffered(), 0);
    }

    #[test]
    fn the_first_record_fits_the_limit_before_authentication() {
        let (m, r) = pair();
        let (mut sealer, _) = split(m, MAX_RECORD);
        let (_, mut opener) = split(r, PREAUTH_MAX_RECORD);
        let plain = vec![7; 3 * MAX_PLAINTEXT];
        let mut wire = Vec::new();
        sealer.seal(&plain, &mut wire).unwrap();
        opener.push(&wire);
        let mut out = Vec::new();
        assert!(opener.open(&mut out).unwrap());
        assert_eq!(out.len(), PREAUTH_MAX_RECORD - TAG);
        opener.authenticated();
        while opener.open(&mut out).unwrap() {}
        assert_eq!(out, plain);
    }

    #[test]
    fn records_larger_than_the_limit_fail_from_the_prefix() {
        let (_, r) = pair();
        let (_, mut opener) = split(r, 4096);
        opener.push(&4097u16.to_le_bytes());
        assert_eq!(
            opener.open(&mut Vec::new()),
            Err(RecordError::TooLarge {
                len: 4097,
                max: 4096
            })
        );
    }
}
