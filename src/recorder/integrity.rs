//! Fragment checksums: whether the bytes of each fragment in `recording.mp4` are still
//! the bytes the recorder wrote.
//!
//! The structure of an MP4 shows a torn write but not a flipped bit inside the media:
//! a damaged `mdat` still parses, and the player only finds out while decoding. So
//! the index (version 2) holds the CRC-32 of every fragment's `moof` + `mdat` as it was
//! written, and [`check`] compares the bytes found now with it. CRC-32 detects every
//! burst of up to 32 flipped bits and every pattern of up to 3 flipped bits in a
//! fragment of up to 11 KiB, and anything else but for one chance in 2^32.
//!
//! The comparison is pure ([`check`], [`verdict`]); [`verify_file`] is the IO shell
//! that streams each fragment of a file through it.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::index::IndexRecord;

/// The checksum the index keeps of a fragment's bytes (CRC-32, IEEE 802.3 / zlib).
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What the bytes of one fragment say against its index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentCheck {
    /// The bytes are the ones written.
    Intact,
    /// The bytes differ from the ones written.
    Damaged,
    /// The file ends before the fragment does.
    CutShort,
    /// The record has no checksum (a version 1 index).
    NotChecksummed,
}

/// The check of a fragment of `found` bytes (fewer than the record's length when the
/// file ends early) whose CRC-32 is `crc`.
fn verdict(record: &IndexRecord, found: u64, crc: u32) -> FragmentCheck {
    match record.checksum {
        None => FragmentCheck::NotChecksummed,
        Some(_) if found < u64::from(record.length) => FragmentCheck::CutShort,
        Some(want) if want == crc => FragmentCheck::Intact,
        Some(_) => FragmentCheck::Damaged,
    }
}

/// Checks `bytes`, what the file holds where `record` points (at most its length).
#[cfg(test)]
fn check(record: &IndexRecord, bytes: &[u8]) -> FragmentCheck {
    verdict(record, bytes.len() as u64, checksum(bytes))
}

/// A fragment whose bytes are not the ones written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DamagedFragment {
    /// Position of the fragment in the segment (0: the first).
    pub(crate) number: usize,
    pub(crate) record: IndexRecord,
    pub(crate) check: FragmentCheck,
}

impl fmt::Display for DamagedFragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        write!(
            f,
            "fragment {} (sequence {}): bytes {}..{}, media {:.3} s .. {:.3} s, {}",
            self.number,
            r.sequence,
            r.offset,
            r.end_offset(),
            r.start_us as f64 / 1e6,
            r.end_us() as f64 / 1e6,
            if self.check == FragmentCheck::CutShort {
                "cut short (the file ends inside it)"
            } else {
                "bytes differ from the ones written (checksum mismatch)"
            }
        )
    }
}

/// What checking every fragment of a segment found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verification {
    /// Fragments whose bytes were compared with their checksum.
    pub(crate) checked: usize,
    /// Fragments without a checksum (version 1 index).
    pub(crate) not_checksummed: usize,
    pub(crate) damaged: Vec<DamagedFragment>,
}

/// Bytes read at a time: a fragment is never held whole.
const CHUNK: usize = 1 << 20;

/// The CRC-32 of `file` from `offset` to `end` (clamped to `file_len`) and how many
/// bytes that was, read a chunk at a time.
fn checksum_range(file: &File, file_len: u64, offset: u64, end: u64) -> io::Result<(u64, u32)> {
    let end = end.min(file_len);
    let mut buf = vec![0; CHUNK.min(usize::try_from(end.saturating_sub(offset)).unwrap_or(CHUNK))];
    let mut hasher = crc32fast::Hasher::new();
    let mut at = offset.min(end);
    while at < end {
        let n = usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok((end.saturating_sub(offset), hasher.finalize()))
}

/// The checksum of the fragment `record` points at, as the file holds it now (for a
/// fragment no index had recorded yet).
pub(crate) fn checksum_of(file: &File, file_len: u64, record: &IndexRecord) -> io::Result<u32> {
    checksum_range(file, file_len, record.offset, record.end_offset()).map(|(_, crc)| crc)
}

/// Checks the fragment each of `records` points at in `file` (`file_len` bytes).
pub(crate) fn verify_file(
    file: &File,
    file_len: u64,
    records: &[IndexRecord],
) -> io::Result<Verification> {
    let mut out = Verification::default();
    for (number, record) in records.iter().enumerate() {
        if record.checksum.is_none() {
            out.not_checksummed += 1;
            continue;
        }
        let (found, crc) = checksum_range(file, file_len, record.offset, record.end_offset())?;
        out.checked += 1;
        let check = verdict(record, found, crc);
        if check != FragmentCheck::Intact {
            out.damaged.push(DamagedFragment {
                number,
                record: *record,
                check,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn record_of(offset: u64, bytes: &[u8]) -> IndexRecord {
        IndexRecord {
            offset,
            length: bytes.len() as u32,
            checksum: Some(checksum(bytes)),
            ..IndexRecord::default()
        }
    }

    #[test]
    fn checksum_is_standard_crc32() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(checksum(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn verdicts() {
        let bytes = b"moof....mdat....".to_vec();
        let r = record_of(0, &bytes);
        assert_eq!(check(&r, &bytes), FragmentCheck::Intact);
        let mut flipped = bytes.clone();
        flipped[10] ^= 4;
        assert_eq!(check(&r, &flipped), FragmentCheck::Damaged);
        assert_eq!(check(&r, &bytes[..9]), FragmentCheck::CutShort);
        let old = IndexRecord {
            checksum: None,
            ..r
        };
        assert_eq!(check(&old, &flipped), FragmentCheck::NotChecksummed);
    }

    #[test]
    fn a_file_is_verified_fragment_by_fragment() {
        let fragments: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 3 * CHUNK / 2 + 7]).collect();
        let mut file = tempfile::tempfile().unwrap();
        let mut records = Vec::new();
        let mut at = 0;
        for f in &fragments {
            file.write_all(f).unwrap();
            records.push(record_of(at, f));
            at += f.len() as u64;
        }
        let len = at;
        let v = verify_file(&file, len, &records).unwrap();
        assert_eq!((v.checked, v.damaged.len()), (4, 0));
        // One bit in the second chunk of fragment 2, and a file cut inside fragment 3.
        let bit_at = records[2].offset + CHUNK as u64 + 3;
        file.write_all_at(&[2 ^ 0x10], bit_at).unwrap();
        let v = verify_file(&file, len - 5, &records).unwrap();
        let damaged: Vec<_> = v.damaged.iter().map(|d| (d.number, d.check)).collect();
        assert_eq!(
            damaged,
            [(2, FragmentCheck::Damaged), (3, FragmentCheck::CutShort)]
        );
        assert!(v.damaged[0]
            .to_string()
            .starts_with("fragment 2 (sequence 0): bytes"));
        // Records of a version 1 index are counted, not judged.
        let old: Vec<_> = records
            .iter()
            .map(|r| IndexRecord {
                checksum: None,
                ..*r
            })
            .collect();
        let v = verify_file(&file, len, &old).unwrap();
        assert_eq!((v.checked, v.not_checksummed, v.damaged.len()), (0, 4, 0));
    }

    proptest! {
        /// Up to three flipped bits anywhere in a fragment of up to 4 KiB are always
        /// found (the Hamming distance of CRC-32 at these lengths is at least 4).
        #[test]
        fn flipped_bits_are_found(
            bytes in proptest::collection::vec(any::<u8>(), 1..4096),
            flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..=3),
        ) {
            let r = record_of(0, &bytes);
            prop_assert_eq!(check(&r, &bytes), FragmentCheck::Intact);
            let bits = bytes.len() * 8;
            let positions: std::collections::BTreeSet<usize> =
                flips.iter().map(|i| i.index(bits)).collect();
            let mut damaged = bytes.clone();
            for p in &positions {
                damaged[p / 8] ^= 1 << (p % 8);
            }
            prop_assert_eq!(check(&r, &damaged), FragmentCheck::Damaged);
        }
    }
}
