//! The reader of untrusted files: sizes are checked against the bytes that are
//! really there, nothing is allocated from a size field without a bound, and
//! malformed input is an error, never a panic.

use std::io::{self, Read, Seek, SeekFrom};

use thiserror::Error;

use super::{span_us, ticks_to_us, SampleEntry, NON_SYNC_BIT};

/// Largest `moof` the reader loads into memory. A 2 s fragment of 60 fps video
/// and 20 ms audio needs a few KiB; anything near this bound is corrupt.
pub const MAX_MOOF_BYTES: u64 = 4 << 20;
/// Largest `moov` the reader loads (ours is under 2 KiB).
pub const MAX_MOOV_BYTES: u64 = 1 << 20;
/// Most samples one `trun` may declare before the reader calls it corrupt.
const MAX_TRUN_SAMPLES: u32 = 1 << 20;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("box at offset {offset} is truncated or its size is invalid")]
    Truncated { offset: u64 },
    #[error("box {fourcc} at offset {offset} is too large ({size} bytes) to load")]
    TooLarge {
        fourcc: String,
        offset: u64,
        size: u64,
    },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Header of one box: where it is and how big it says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub fourcc: [u8; 4],
    /// Offset of the first header byte.
    pub offset: u64,
    /// 8, or 16 with a 64-bit `largesize`.
    pub header_len: u64,
    /// Total size including the header (a size field of 0 is resolved to "up to
    /// the end of the container").
    pub size: u64,
}

impl BoxHeader {
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }

    pub fn fourcc_str(&self) -> String {
        fourcc_str(&self.fourcc)
    }
}

pub fn fourcc_str(f: &[u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses the box header at the start of `buf`, whose container ends `avail` bytes
/// after it. `Ok(None)` when `buf` is too short for a header.
fn parse_header(buf: &[u8], offset: u64, avail: u64) -> Result<Option<BoxHeader>, ReadError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes(buf[0..4].try_into().unwrap());
    let fourcc: [u8; 4] = buf[4..8].try_into().unwrap();
    let (header_len, size) = match size32 {
        0 => (8, avail),
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            (16, u64::from_be_bytes(buf[8..16].try_into().unwrap()))
        }
        n => (8, u64::from(n)),
    };
    if size < header_len || size > avail {
        return Err(ReadError::Truncated { offset });
    }
    Ok(Some(BoxHeader {
        fourcc,
        offset,
        header_len,
        size,
    }))
}

/// Iterates the boxes inside an in-memory buffer (e.g. the body of a container).
/// A box whose size runs past the buffer ends the iteration with an error.
pub struct BoxIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

pub fn boxes(buf: &[u8]) -> BoxIter<'_> {
    BoxIter {
        buf,
        pos: 0,
        failed: false,
    }
}

impl<'a> Iterator for BoxIter<'a> {
    /// The header (offset relative to the buffer) and the body after the header.
    type Item = Result<(BoxHeader, &'a [u8]), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let header = match parse_header(rest, self.pos as u64, rest.len() as u64) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.failed = true;
                return Some(Err(ReadError::Truncated {
                    offset: self.pos as u64,
                }));
            }
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        // size <= rest.len() was checked, so these fit in usize.
        let body = &rest[header.header_len as usize..header.size as usize];
        self.pos += header.size as usize;
        Some(Ok((header, body)))
    }
}

/// Finds the first child box of type `fourcc`.
fn child<'a>(body: &'a [u8], fourcc: &[u8; 4]) -> Result<Option<&'a [u8]>, ReadError> {
    for b in boxes(body) {
        let (h, body) = b?;
        if &h.fourcc == fourcc {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn require<'a>(
    body: &'a [u8],
    fourcc: &[u8; 4],
    name: &'static str,
) -> Result<&'a [u8], ReadError> {
    child(body, fourcc)?.ok_or(ReadError::Missing(name))
}

/// Big-endian cursor over a box body; every read is bounds-checked.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(ReadError::Malformed(self.what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), ReadError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

/// One track of the init segment, as far as recovery and inspection care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u32,
    pub handler: [u8; 4],
    pub timescale: u32,
    /// Sample entry type, e.g. `avc1` or `Opus`.
    pub codec: [u8; 4],
    pub width: u16,
    pub height: u16,
    pub channels: u16,
    /// Opus input sample rate from `dOps` (0 for other codecs).
    pub sample_rate: u32,
    /// File offset of this track's 64-bit `tkhd` duration, if the `tkhd` is version 1.
    pub tkhd_duration_at: Option<u64>,
    /// File offset of the 16-bit Opus `PreSkip` in `dOps`.
    pub pre_skip_at: Option<u64>,
}

/// What the reader learns from `moov`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitInfo {
    /// Length of `ftyp` + `moov` (and anything before the first fragment).
    pub len: u64,
    pub tracks: Vec<TrackInfo>,
    /// File offset of the 64-bit `mvhd` duration (version 1 `mvhd` only).
    pub mvhd_duration_at: Option<u64>,
    /// File offset of the 64-bit `mehd` fragment duration (version 1 `mehd` only).
    pub mehd_duration_at: Option<u64>,
}

impl InitInfo {
    pub fn track(&self, id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track_id == id)
    }

    pub fn timescale(&self, id: u32) -> Option<u32> {
        self.track(id).map(|t| t.timescale)
    }

    pub fn is_video(&self, id: u32) -> bool {
        self.track(id).is_some_and(|t| &t.handler == b"vide")
    }
}

/// Parses a `moov` body found at `body_offset` in the file.
pub fn parse_moov(body: &[u8], body_offset: u64, init_len: u64) -> Result<InitInfo, ReadError> {
    let mut info = InitInfo {
        len: init_len,
        tracks: Vec::new(),
        mvhd_duration_at: None,
        mehd_duration_at: None,
    };
    let at = |h: &BoxHeader, skip: u64| body_offset + h.offset + h.header_len + skip;
    for b in boxes(body) {
        let (h, b) = b?;
        match &h.fourcc {
            b"mvhd" => {
                let (version, _) = Fields::new(b, "mvhd").full()?;
                // version 1: creation, modification (8 each), timescale (4), duration.
                if version == 1 && b.len() >= 32 {
                    info.mvhd_duration_at = Some(at(&h, 24));
                }
            }
            b"trak" if info.tracks.len() < 16 => {
                let base = body_offset + h.offset + h.header_len;
                info.tracks.push(parse_trak(b, base)?);
            }
            b"mvex" => {
                for m in boxes(b) {
                    let (mh, mb) = m?;
                    if &mh.fourcc == b"mehd"
                        && Fields::new(mb, "mehd").full()?.0 == 1
                        && mb.len() >= 12
                    {
                        info.mehd_duration_at = Some(at(&h, mh.offset + mh.header_len + 4));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn parse_trak(trak: &[u8], trak_offset: u64) -> Result<TrackInfo, ReadError> {
    let mut t = TrackInfo {
        track_id: 0,
        handler: [0; 4],
        timescale: 0,
        codec: [0; 4],
        width: 0,
        height: 0,
        channels: 0,
        sample_rate: 0,
        tkhd_duration_at: None,
        pre_skip_at: None,
    };
    for b in boxes(trak) {
        let (h, b) = b?;
        if &h.fourcc == b"tkhd" {
            let mut f = Fields::new(b, "tkhd");
            let (version, _) = f.full()?;
            if version == 1 {
                f.take(16)?;
                t.track_id = f.u32()?;
                f.u32()?;
                f.u64()?;
                t.tkhd_duration_at = Some(trak_offset + h.offset + h.header_len + 4 + 24);
            } else {
                f.take(8)?;
                t.track_id = f.u32()?;
            }
        }
    }
    let mdia = require(trak, b"mdia", "mdia")?;
    let mut f = Fields::new(require(mdia, b"mdhd", "mdhd")?, "mdhd");
    let (version, _) = f.full()?;
    f.take(if version == 1 { 16 } else { 8 })?;
    t.timescale = f.u32()?;
    let mut f = Fields::new(require(mdia, b"hdlr", "hdlr")?, "hdlr");
    f.full()?;
    f.u32()?;
    t.handler = f.take(4)?.try_into().unwrap();
    let stbl = require(require(mdia, b"minf", "minf")?, b"stbl", "stbl")?;
    let stsd = require(stbl, b"stsd", "stsd")?;
    let entries = stsd.get(8..).ok_or(ReadError::Malformed("stsd"))?;
    if let Some(entry) = boxes(entries).next() {
        let (h, b) = entry?;
        t.codec = h.fourcc;
        let mut f = Fields::new(b, "sample entry");
        f.take(8)?; // reserved + data_reference_index
        if &t.handler == b"vide" {
            f.take(16)?;
            t.width = f.u16()?;
            t.height = f.u16()?;
        } else if &t.handler == b"soun" {
            f.take(8)?;
            t.channels = f.u16()?;
            if let Some(dops) = b
                .get(28..)
                .map(|rest| child(rest, b"dOps"))
                .transpose()?
                .flatten()
            {
                let mut f = Fields::new(dops, "dOps");
                f.take(2)?;
                // `dops` lies inside `trak`: its place there is the pointers' distance.
                let at = dops.as_ptr() as usize - trak.as_ptr() as usize + f.pos;
                t.pre_skip_at = Some(trak_offset + at as u64);
                f.take(2)?;
                t.sample_rate = f.u32()?;
            }
        }
    }
    Ok(t)
}

/// One track run of a fragment, as the reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafInfo {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub sample_count: u32,
    /// Sum of the sample durations, in track units.
    pub duration: u64,
    pub first_sample_sync: bool,
    /// Data offset from the start of the `moof` (default-base-is-moof).
    pub data_offset: u64,
    /// Sum of the sample sizes.
    pub data_len: u64,
}

/// What the reader learns from one `moof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoofInfo {
    pub sequence: u32,
    pub trafs: Vec<TrafInfo>,
}

/// Parses a `moof` body. Only what the recorder writes is supported: one `trun`
/// per `traf`, `default-base-is-moof`, explicit per-sample durations and sizes.
pub fn parse_moof(body: &[u8]) -> Result<MoofInfo, ReadError> {
    parse_moof_with(body, |traf| parse_traf(traf, None))
}

/// Parses a `moof` body with the samples of every `traf` (in the order of
/// [`MoofInfo::trafs`]), to read media back out of a fragment.
pub fn parse_moof_samples(body: &[u8]) -> Result<(MoofInfo, Vec<Vec<SampleEntry>>), ReadError> {
    let mut samples = Vec::new();
    let moof = parse_moof_with(body, |traf| {
        let mut run = Vec::new();
        let info = parse_traf(traf, Some(&mut run))?;
        samples.push(run);
        Ok(info)
    })?;
    Ok((moof, samples))
}

fn parse_moof_with(
    body: &[u8],
    mut parse_traf: impl FnMut(&[u8]) -> Result<TrafInfo, ReadError>,
) -> Result<MoofInfo, ReadError> {
    let mut f = Fields::new(require(body, b"mfhd", "mfhd")?, "mfhd");
    f.full()?;
    let sequence = f.u32()?;
    let mut trafs = Vec::new();
    for b in boxes(body) {
        let (h, traf) = b?;
        if &h.fourcc != b"traf" {
            continue;
        }
        if trafs.len() >= 16 {
            return Err(ReadError::Malformed("moof (too many traf)"));
        }
        trafs.push(parse_traf(traf)?);
    }
    Ok(MoofInfo { sequence, trafs })
}

/// Parses a `traf`; with `samples`, also collects each sample of its run.
fn parse_traf(
    traf: &[u8],
    mut samples: Option<&mut Vec<SampleEntry>>,
) -> Result<TrafInfo, ReadError> {
    let mut f = Fields::new(require(traf, b"tfhd", "tfhd")?, "tfhd");
    let (_, tfhd_flags) = f.full()?;
    if tfhd_flags & 0x02_0000 == 0 || tfhd_flags & 0x01 != 0 {
        return Err(ReadError::Malformed("tfhd (needs default-base-is-moof)"));
    }
    let track_id = f.u32()?;
    let mut f = Fields::new(require(traf, b"tfdt", "tfdt")?, "tfdt");
    let (version, _) = f.full()?;
    let base_decode_time = if version == 1 {
        f.u64()?
    } else {
        u64::from(f.u32()?)
    };

    let mut f = Fields::new(require(traf, b"trun", "trun")?, "trun");
    // v0 and v1 differ only in the sign of composition offsets; ours are v1.
    let (_, flags) = f.full()?;
    const NEEDED: u32 = 0x001 | 0x100 | 0x200;
    if flags & NEEDED != NEEDED {
        return Err(ReadError::Malformed(
            "trun (needs data offset, durations, sizes)",
        ));
    }
    let sample_count = f.u32()?;
    if sample_count == 0 || sample_count > MAX_TRUN_SAMPLES {
        return Err(ReadError::Malformed("trun (sample count)"));
    }
    let data_offset = i32::from_be_bytes(f.u32()?.to_be_bytes());
    let data_offset =
        u64::try_from(data_offset).map_err(|_| ReadError::Malformed("trun (data offset)"))?;
    let first_flags = if flags & 0x004 != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    let mut duration = 0u64;
    let mut data_len = 0u64;
    let mut first_sample_sync = true;
    for i in 0..sample_count {
        let sample_duration = f.u32()?;
        let size = f.u32()?;
        duration += u64::from(sample_duration);
        data_len += u64::from(size);
        let sample_flags = if flags & 0x400 != 0 {
            Some(f.u32()?)
        } else {
            None
        };
        let composition_offset = if flags & 0x800 != 0 {
            i32::from_be_bytes(f.u32()?.to_be_bytes())
        } else {
            0
        };
        let fl = if i == 0 {
            first_flags.or(sample_flags)
        } else {
            sample_flags
        }
        .unwrap_or(0);
        if i == 0 {
            first_sample_sync = fl & NON_SYNC_BIT == 0;
        }
        if let Some(samples) = samples.as_deref_mut() {
            samples.push(SampleEntry {
                duration: sample_duration,
                size,
                flags: fl,
                composition_offset,
            });
        }
    }
    Ok(TrafInfo {
        track_id,
        base_decode_time,
        sample_count,
        duration,
        first_sample_sync,
        data_offset,
        data_len,
    })
}

/// Timing of one fragment, derived the same way when writing and when rebuilding an
/// index from the file: the primary track is the video track if the fragment has
/// video samples, the first track with samples otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentTiming {
    pub start_us: u64,
    pub duration_us: u32,
    /// The first sample of the primary track is a sync sample.
    pub keyframe: bool,
}

impl FragmentTiming {
    pub fn of(init: &InitInfo, moof: &MoofInfo) -> Result<Self, ReadError> {
        let primary = moof
            .trafs
            .iter()
            .find(|t| init.is_video(t.track_id))
            .or_else(|| moof.trafs.first())
            .ok_or(ReadError::Malformed("moof (no traf)"))?;
        let ts = init
            .timescale(primary.track_id)
            .ok_or(ReadError::Missing("trak for traf"))?;
        Ok(Self::from_ticks(
            primary.base_decode_time,
            primary.duration,
            ts,
            primary.first_sample_sync,
        ))
    }

    pub fn from_ticks(start: u64, duration: u64, timescale: u32, keyframe: bool) -> Self {
        Self {
            start_us: ticks_to_us(start, timescale),
            duration_us: span_us(start, duration, timescale),
            keyframe,
        }
    }
}

/// A whole fragment found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentLocation {
    /// Offset of the `moof`.
    pub offset: u64,
    /// `moof` + `mdat` bytes.
    pub len: u64,
    pub moof: MoofInfo,
}

/// Why the scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TornTail {
    /// The bytes at `offset` are not a complete box.
    PartialBox { offset: u64 },
    /// A `moof` at `offset` is not followed by a complete `mdat` that holds its samples.
    MissingMdat { offset: u64 },
    /// The `moof` at `offset` could not be parsed.
    BadMoof { offset: u64, reason: String },
    /// A box other than `moof` where a fragment should start.
    Unexpected { offset: u64, fourcc: String },
}

impl TornTail {
    pub fn offset(&self) -> u64 {
        match self {
            TornTail::PartialBox { offset }
            | TornTail::MissingMdat { offset }
            | TornTail::BadMoof { offset, .. }
            | TornTail::Unexpected { offset, .. } => *offset,
        }
    }
}

/// Result of scanning a whole fragmented MP4.
#[derive(Debug, Clone)]
pub struct FileScan {
    pub init: InitInfo,
    pub fragments: Vec<FragmentLocation>,
    /// End of the last whole fragment (or of the init segment).
    pub valid_len: u64,
    pub file_len: u64,
    pub torn: Option<TornTail>,
}

impl FileScan {
    /// End of each track (track units) over all fragments: base decode time plus
    /// the summed durations of its last run.
    pub fn track_ends(&self) -> Vec<(u32, u64)> {
        track_ends(self.fragments.iter().map(|f| &f.moof))
    }
}

/// End time (track units) of each track over the given fragments.
pub fn track_ends<'a>(moofs: impl IntoIterator<Item = &'a MoofInfo>) -> Vec<(u32, u64)> {
    let mut ends = Vec::new();
    for m in moofs {
        extend_track_ends(&mut ends, m);
    }
    ends
}

/// Extends per-track end times (track units) with one more fragment.
pub fn extend_track_ends(ends: &mut Vec<(u32, u64)>, moof: &MoofInfo) {
    for t in &moof.trafs {
        let end = t.base_decode_time.saturating_add(t.duration);
        match ends.iter_mut().find(|(id, _)| *id == t.track_id) {
            Some((_, e)) => *e = (*e).max(end),
            None => ends.push((t.track_id, end)),
        }
    }
}

fn read_header_at<R: Read + Seek>(
    r: &mut R,
    offset: u64,
    file_len: u64,
) -> Result<Option<BoxHeader>, ReadError> {
    let mut buf = [0u8; 16];
    let avail = file_len - offset;
    let n = avail.min(16) as usize;
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(&mut buf[..n])?;
    match parse_header(&buf[..n], offset, avail) {
        Ok(h) => Ok(h),
        Err(ReadError::Truncated { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_body<R: Read + Seek>(r: &mut R, h: &BoxHeader, max: u64) -> Result<Vec<u8>, ReadError> {
    let len = h.size - h.header_len;
    if len > max {
        return Err(ReadError::TooLarge {
            fourcc: h.fourcc_str(),
            offset: h.offset,
            size: h.size,
        });
    }
    let mut body = vec![0; len as usize];
    r.seek(SeekFrom::Start(h.offset + h.header_len))?;
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads `ftyp`/`moov` from the start of a file of `file_len` bytes.
pub fn read_init<R: Read + Seek>(r: &mut R, file_len: u64) -> Result<InitInfo, ReadError> {
    let mut pos = 0;
    while pos < file_len {
        let h = read_header_at(r, pos, file_len)?.ok_or(ReadError::Truncated { offset: pos })?;
        match &h.fourcc {
            b"moov" => {
                let body = read_body(r, &h, MAX_MOOV_BYTES)?;
                return parse_moov(&body, h.offset + h.header_len, h.end());
            }
            b"moof" | b"mdat" => break,
            _ => pos = h.end(),
        }
    }
    Err(ReadError::Missing("moov"))
}

/// Scans a fragmented MP4: the init segment must be whole (it is synced before any
/// media is written); after it, `moof` + `mdat` pairs are collected until the first
/// one that is not whole, which marks the torn tail.
pub fn scan<R: Read + Seek>(r: &mut R, file_len: u64) -> Result<FileScan, ReadError> {
    let init = read_init(r, file_len)?;
    let mut fragments = Vec::new();
    let mut pos = init.len;
    let mut torn = None;
    while pos < file_len {
        let Some(h) = read_header_at(r, pos, file_len)? else {
            torn = Some(TornTail::PartialBox { offset: pos });
            break;
        };
        if &h.fourcc != b"moof" {
            torn = Some(TornTail::Unexpected {
                offset: pos,
                fourcc: h.fourcc_str(),
            });
            break;
        }
        let moof = match read_body(r, &h, MAX_MOOF_BYTES).and_then(|b| parse_moof(&b)) {
            Ok(m) => m,
            Err(ReadError::Io(e)) => return Err(ReadError::Io(e)),
            Err(e) => {
                torn = Some(TornTail::BadMoof {
                    offset: pos,
                    reason: e.to_string(),
                });
                break;
            }
        };
        let mdat = if h.end() < file_len {
            read_header_at(r, h.end(), file_len)?
        } else {
            None
        };
        let fits = mdat.is_some_and(|m| {
            &m.fourcc == b"mdat"
                && moof.trafs.iter().all(|t| {
                    t.data_offset >= h.size + m.header_len
                        && t.data_offset.saturating_add(t.data_len) <= h.size + m.size
                })
        });
        let Some(mdat) = mdat.filter(|_| fits) else {
            torn = Some(TornTail::MissingMdat { offset: pos });
            break;
        };
        fragments.push(FragmentLocation {
            offset: pos,
            len: h.size + mdat.size,
            moof,
        });
        pos = mdat.end();
    }
    Ok(FileScan {
        init,
        fragments,
        valid_len: pos.min(file_len),
        file_len,
        torn,
    })
}
