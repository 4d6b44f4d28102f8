//! The recording index: a 16-byte header, then one fixed-size little-endian record per
//! fragment, each protected by a CRC32 so a torn last record is recognised.
//!
//! Every field of a record but the fragment checksum is derived from the MP4 alone
//! ([`IndexRecord::derive`]). The checksum (index version 2) is the CRC-32 of the
//! fragment's bytes as they were written, so it can only come from the live writer or
//! from a fragment that no index had recorded yet (see [`super::integrity`]).
//! Version 1 indexes, written before fragments had checksums, are still read: their
//! records have no checksum. Records have a fixed size, which makes seeking a binary
//! search over the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use thiserror::Error;

use crate::media::mp4::{FragmentTiming, InitInfo, MoofInfo, ReadError};

const MAGIC: [u8; 8] = *b"RBXIDX01";
/// The version new indexes are written in.
const VERSION: u16 = 2;
/// The first version, whose records have no fragment checksum.
const VERSION_UNCHECKSUMMED: u16 = 1;
pub const HEADER_SIZE: usize = 16;
pub const RECORD_SIZE: usize = 40;
/// Record flag: the fragment starts with a keyframe (a sync sample).
const FLAG_KEYFRAME: u8 = 0x01;

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("index header is truncated ({0} bytes)")]
    ShortHeader(u64),
    #[error("not a recbox index (bad magic)")]
    BadMagic,
    #[error("unsupported index version {0}")]
    Version(u16),
    #[error("unsupported index record size {0}")]
    RecordSize(u16),
    #[error("index record CRC mismatch")]
    Crc,
    #[error("index record {0} is damaged (CRC mismatch)")]
    Damaged(usize),
    #[error("index record {0} does not exist")]
    OutOfRange(usize),
    #[error("index I/O: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    version: u16,
    record_size: u16,
}

impl Default for IndexHeader {
    fn default() -> Self {
        Self {
            version: VERSION,
            record_size: RECORD_SIZE as u16,
        }
    }
}

impl IndexHeader {
    /// The header of an index of `version` (1 or 2).
    #[cfg(test)]
    fn of_version(version: u16) -> Self {
        Self {
            version,
            ..Self::default()
        }
    }

    /// Records of this index carry fragment checksums.
    pub(crate) fn has_checksums(&self) -> bool {
        self.version >= VERSION
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0; HEADER_SIZE];
        b[..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&self.record_size.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_SIZE]) -> Result<Self, IndexError> {
        if b[..8] != MAGIC {
            return Err(IndexError::BadMagic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        let record_size = u16::from_le_bytes([b[10], b[11]]);
        if version != VERSION && version != VERSION_UNCHECKSUMMED {
            return Err(IndexError::Version(version));
        }
        if usize::from(record_size) != RECORD_SIZE {
            return Err(IndexError::RecordSize(record_size));
        }
        Ok(Self {
            version,
            record_size,
        })
    }
}

/// One fragment of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexRecord {
    /// `mfhd` sequence number.
    pub sequence: u32,
    /// Storage segment (0: the primary recording file).
    pub segment: u16,
    pub flags: u8,
    /// Media time of the fragment start since the recording start.
    pub start_us: u64,
    pub duration_us: u32,
    /// Offset of the `moof` in the recording file.
    pub offset: u64,
    /// `moof` + `mdat` bytes.
    pub length: u32,
    /// CRC-32 of the `moof` + `mdat` bytes as written (`None` in a version 1 index).
    pub checksum: Option<u32>,
}

impl IndexRecord {
    /// The record for a fragment read from (or just written to) the MP4.
    pub(crate) fn derive(
        init: &InitInfo,
        moof: &MoofInfo,
        offset: u64,
        length: u64,
    ) -> Result<Self, ReadError> {
        let timing = FragmentTiming::of(init, moof)?;
        Ok(Self {
            sequence: moof.sequence,
            segment: 0,
            flags: if timing.keyframe { FLAG_KEYFRAME } else { 0 },
            start_us: timing.start_us,
            duration_us: timing.duration_us,
            offset,
            length: u32::try_from(length)
                .map_err(|_| ReadError::Malformed("fragment (over 4 GiB)"))?,
            checksum: None,
        })
    }

    /// The same fragment at the same place: every field but the checksum agrees.
    pub fn same_fragment(&self, other: &IndexRecord) -> bool {
        IndexRecord {
            checksum: None,
            ..*self
        } == IndexRecord {
            checksum: None,
            ..*other
        }
    }

    /// End of the fragment in the recording file.
    pub fn end_offset(&self) -> u64 {
        self.offset + u64::from(self.length)
    }

    pub fn keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    pub fn end_us(&self) -> u64 {
        self.start_us + u64::from(self.duration_us)
    }

    pub(crate) fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0; RECORD_SIZE];
        b[0..4].copy_from_slice(&self.sequence.to_le_bytes());
        b[4..6].copy_from_slice(&self.segment.to_le_bytes());
        b[6] = self.flags;
        b[8..16].copy_from_slice(&self.start_us.to_le_bytes());
        b[16..20].copy_from_slice(&self.duration_us.to_le_bytes());
        b[20..28].copy_from_slice(&self.offset.to_le_bytes());
        b[28..32].copy_from_slice(&self.length.to_le_bytes());
        // Reserved (zero) in version 1.
        b[32..36].copy_from_slice(&self.checksum.unwrap_or(0).to_le_bytes());
        let crc = crc32fast::hash(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record of an index with `header`.
    pub(crate) fn decode(b: &[u8; RECORD_SIZE], header: IndexHeader) -> Result<Self, IndexError> {
        if crc32fast::hash(&b[..36]).to_le_bytes() != b[36..40] {
            return Err(IndexError::Crc);
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Ok(Self {
            sequence: u32_at(0),
            segment: u16::from_le_bytes([b[4], b[5]]),
            flags: b[6],
            start_us: u64_at(8),
            duration_us: u32_at(16),
            offset: u64_at(20),
            length: u32_at(28),
            checksum: header.has_checksums().then(|| u32_at(32)),
        })
    }
}

/// Encodes a whole index file of the current version.
pub fn encode_index(records: &[IndexRecord]) -> Vec<u8> {
    encode_index_with(IndexHeader::default(), records)
}

/// Encodes a whole index file with `header` (recovery keeps an old version).
pub fn encode_index_with(header: IndexHeader, records: &[IndexRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len() * RECORD_SIZE);
    out.extend_from_slice(&header.encode());
    for r in records {
        out.extend_from_slice(&r.encode());
    }
    out
}

/// All records that could be read and what, if anything, followed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexContents {
    pub header: IndexHeader,
    pub records: Vec<IndexRecord>,
    /// Bytes after the last good record (a torn or damaged tail), ignored.
    pub(crate) ignored_bytes: u64,
}

/// Reads an index file by seeking to fixed-size records, never loading more than
/// one record at a time except in [`IndexFile::read_all`].
pub struct IndexFile<R> {
    inner: R,
    header: IndexHeader,
    /// Records usable for seeking: complete ones, minus a last one with a bad CRC.
    count: usize,
    file_len: u64,
}

impl IndexFile<File> {
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        Self::new(File::open(path)?)
    }
}

impl<R: Read + Seek> IndexFile<R> {
    /// Checks the header and the last complete record; a torn last record (partial
    /// or bad CRC, which is all an interrupted append can leave) is excluded.
    pub fn new(mut inner: R) -> Result<Self, IndexError> {
        let file_len = inner.seek(SeekFrom::End(0))?;
        if file_len < HEADER_SIZE as u64 {
            return Err(IndexError::ShortHeader(file_len));
        }
        let mut header = [0; HEADER_SIZE];
        inner.seek(SeekFrom::Start(0))?;
        inner.read_exact(&mut header)?;
        let header = IndexHeader::decode(&header)?;
        let complete = usize::try_from((file_len - HEADER_SIZE as u64) / RECORD_SIZE as u64)
            .map_err(|_| IndexError::OutOfRange(usize::MAX))?;
        let mut file = Self {
            inner,
            header,
            count: complete,
            file_len,
        };
        if complete > 0 && matches!(file.read_raw(complete - 1), Err(IndexError::Crc)) {
            file.count -= 1;
        }
        Ok(file)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.count
    }

    #[cfg(test)]
    fn header(&self) -> IndexHeader {
        self.header
    }

    fn read_raw(&mut self, i: usize) -> Result<IndexRecord, IndexError> {
        let mut b = [0; RECORD_SIZE];
        self.inner.seek(SeekFrom::Start(
            HEADER_SIZE as u64 + (i * RECORD_SIZE) as u64,
        ))?;
        self.inner.read_exact(&mut b)?;
        IndexRecord::decode(&b, self.header)
    }

    /// Record `i`; a damaged record inside the file is an error.
    fn record(&mut self, i: usize) -> Result<IndexRecord, IndexError> {
        if i >= self.count {
            return Err(IndexError::OutOfRange(i));
        }
        self.read_raw(i).map_err(|e| match e {
            IndexError::Crc => IndexError::Damaged(i),
            e => e,
        })
    }

    /// All records up to the first one that is damaged or torn.
    pub fn read_all(&mut self) -> Result<IndexContents, IndexError> {
        let mut records = Vec::with_capacity(self.count);
        for i in 0..self.count {
            match self.read_raw(i) {
                Ok(r) => records.push(r),
                Err(IndexError::Crc) => break,
                Err(e) => return Err(e),
            }
        }
        let used = (HEADER_SIZE + records.len() * RECORD_SIZE) as u64;
        Ok(IndexContents {
            header: self.header,
            records,
            ignored_bytes: self.file_len - used,
        })
    }

    /// The fragment to play `time_us` from: the last one starting at or before it.
    /// `None` for an empty index or a time before the first fragment. Reads
    /// O(log n) records.
    pub fn find(&mut self, time_us: u64) -> Result<Option<usize>, IndexError> {
        // Invariant: records before `lo` start at or before `time_us`, records from
        // `hi` on start after it.
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.record(mid)?.start_us <= time_us {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.checked_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn rec(i: u32) -> IndexRecord {
        IndexRecord {
            sequence: i + 1,
            segment: 0,
            flags: FLAG_KEYFRAME,
            start_us: u64::from(i) * 2_000_000,
            duration_us: 2_000_000,
            offset: 1000 + u64::from(i) * 500_000,
            length: 500_000,
            checksum: Some(0xC0FF_EE00 + i),
        }
    }

    /// Counts reads, to check that seeking touches O(log n) records.
    struct Counting {
        inner: Cursor<Vec<u8>>,
        reads: usize,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.inner.read(buf)
        }
    }

    impl Seek for Counting {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn layout_is_fixed() {
        let h = IndexHeader::default().encode();
        assert_eq!(&h, b"RBXIDX01\x02\x00\x28\x00\x00\x00\x00\x00");
        let r = rec(1).encode();
        assert_eq!(&r[0..4], &2u32.to_le_bytes());
        assert_eq!(r[6], 1);
        assert_eq!(&r[20..28], &501_000u64.to_le_bytes());
        assert_eq!(&r[32..36], &0xC0FF_EE01u32.to_le_bytes());
        assert_eq!(&r[36..40], &crc32fast::hash(&r[..36]).to_le_bytes());
    }

    /// A version 1 index, byte for byte as the first recorders wrote it: its records
    /// are read, without checksums.
    #[test]
    fn version_1_indexes_are_read_without_checksums() {
        let mut old = b"RBXIDX01\x01\x00\x28\x00\x00\x00\x00\x00".to_vec();
        let mut r = [0u8; RECORD_SIZE];
        r[0..4].copy_from_slice(&7u32.to_le_bytes());
        r[6] = FLAG_KEYFRAME;
        r[8..16].copy_from_slice(&4_000_000u64.to_le_bytes());
        r[16..20].copy_from_slice(&1_000_000u32.to_le_bytes());
        r[20..28].copy_from_slice(&1234u64.to_le_bytes());
        r[28..32].copy_from_slice(&5678u32.to_le_bytes());
        let crc = crc32fast::hash(&r[..36]);
        r[36..40].copy_from_slice(&crc.to_le_bytes());
        old.extend_from_slice(&r);
        let mut f = IndexFile::new(Cursor::new(old.clone())).unwrap();
        assert!(!f.header().has_checksums());
        let want = IndexRecord {
            sequence: 7,
            segment: 0,
            flags: FLAG_KEYFRAME,
            start_us: 4_000_000,
            duration_us: 1_000_000,
            offset: 1234,
            length: 5678,
            checksum: None,
        };
        assert_eq!(f.read_all().unwrap().records, [want]);
        // Written again in its own version, it is the same file.
        let header = IndexHeader::of_version(VERSION_UNCHECKSUMMED);
        assert_eq!(encode_index_with(header, &[want]), old);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let b = rec(3).encode();
        for byte in 0..RECORD_SIZE {
            for bit in 0..8 {
                let mut c = b;
                c[byte] ^= 1 << bit;
                assert!(matches!(
                    IndexRecord::decode(&c, IndexHeader::default()),
                    Err(IndexError::Crc)
                ));
            }
        }
    }

    #[test]
    fn torn_tail_is_excluded() {
        let records: Vec<_> = (0..5).map(rec).collect();
        let whole = encode_index(&records);
        // Partial last record.
        let mut f = IndexFile::new(Cursor::new(whole[..whole.len() - 7].to_vec())).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(
            f.read_all().unwrap(),
            IndexContents {
                header: IndexHeader::default(),
                records: records[..4].to_vec(),
                ignored_bytes: 33
            }
        );
        // Damaged last record.
        let mut damaged = whole.clone();
        let n = damaged.len();
        damaged[n - 10] ^= 0xff;
        let mut f = IndexFile::new(Cursor::new(damaged)).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f.read_all().unwrap().records, records[..4]);
        // Damage in the middle stops reading there and fails a seek through it.
        let mut mid = whole.clone();
        mid[HEADER_SIZE + 2 * RECORD_SIZE] ^= 1;
        let mut f = IndexFile::new(Cursor::new(mid)).unwrap();
        assert_eq!(f.read_all().unwrap().records.len(), 2);
        assert!(matches!(f.find(4_500_000), Err(IndexError::Damaged(2))));
    }

    #[test]
    fn bad_headers_are_rejected() {
        assert!(matches!(
            IndexFile::new(Cursor::new(vec![0; 3])),
            Err(IndexError::ShortHeader(3))
        ));
        assert!(matches!(
            IndexFile::new(Cursor::new(vec![0; 16])),
            Err(IndexError::BadMagic)
        ));
        let mut h = IndexHeader::default().encode();
        h[8] = 9;
        assert!(matches!(
            IndexFile::new(Cursor::new(h.to_vec())),
            Err(IndexError::Version(9))
        ));
    }

    #[test]
    fn find_is_logarithmic() {
        let records: Vec<_> = (0..10_000).map(rec).collect();
        let inner = Cursor::new(encode_index(&records));
        let mut f = IndexFile::new(Counting { inner, reads: 0 }).unwrap();
        let before = f.inner.reads;
        assert_eq!(f.find(7_777 * 2_000_000 + 5).unwrap(), Some(7_777));
        // 14 probes of one record each (read_exact may need a read per probe).
        assert!(
            f.inner.reads - before <= 15,
            "{} reads",
            f.inner.reads - before
        );
    }

    #[test]
    fn find_edges() {
        let mut empty = IndexFile::new(Cursor::new(encode_index(&[]))).unwrap();
        assert_eq!(empty.find(5).unwrap(), None);
        let mut records: Vec<_> = (0..4).map(rec).collect();
        records.iter_mut().for_each(|r| r.start_us += 100);
        let mut f = IndexFile::new(Cursor::new(encode_index(&records))).unwrap();
        assert_eq!(f.find(0).unwrap(), None);
        assert_eq!(f.find(100).unwrap(), Some(0));
        assert_eq!(f.find(2_000_099).unwrap(), Some(0));
        assert_eq!(f.find(2_000_100).unwrap(), Some(1));
        assert_eq!(f.find(u64::MAX).unwrap(), Some(3));
    }

    fn any_record() -> impl Strategy<Value = IndexRecord> {
        (
            any::<u32>(),
            any::<u16>(),
            any::<u8>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(sequence, segment, flags, start_us, duration_us, offset, length, checksum)| {
                    IndexRecord {
                        sequence,
                        segment,
                        flags,
                        start_us,
                        duration_us,
                        offset,
                        length,
                        checksum: Some(checksum),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn record_round_trips(r in any_record()) {
            prop_assert_eq!(IndexRecord::decode(&r.encode(), IndexHeader::default()).unwrap(), r);
            let v1 = IndexHeader::of_version(VERSION_UNCHECKSUMMED);
            let old = IndexRecord { checksum: None, ..r };
            prop_assert_eq!(IndexRecord::decode(&old.encode(), v1).unwrap(), old);
        }

        /// Any bytes after a header of either version: the reader answers or
        /// refuses, never panics, and what it reads survives re-encoding.
        #[test]
        fn any_index_bytes_are_read_or_refused(
            version in 0u16..4,
            tail in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = IndexHeader::of_version(version).encode().to_vec();
            bytes.extend_from_slice(&tail);
            match IndexFile::new(Cursor::new(bytes)) {
                Ok(mut f) => {
                    let contents = f.read_all().unwrap();
                    let again = encode_index_with(contents.header, &contents.records);
                    let reread = IndexFile::new(Cursor::new(again)).unwrap().read_all().unwrap();
                    prop_assert_eq!(reread.records, contents.records);
                }
                Err(e) => prop_assert!(matches!(e, IndexError::Version(_))),
            }
        }

        #[test]
        fn find_matches_linear_search(
            mut starts in proptest::collection::vec(0u64..1_000_000, 0..64),
            t in 0u64..1_100_000,
        ) {
            starts.sort();
            let records: Vec<_> = starts
                .iter()
                .map(|&s| IndexRecord { start_us: s, ..IndexRecord::default() })
                .collect();
            let mut f = IndexFile::new(Cursor::new(encode_index(&records))).unwrap();
            let want = records.iter().rposition(|r| r.start_us <= t);
            prop_assert_eq!(f.find(t).unwrap(), want);
        }
    }
}
