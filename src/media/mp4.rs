//! Fragmented MP4 (ISO BMFF): a small box writer, the init segment (`ftyp` + `moov`)
//! and fragment (`moof` + `mdat`) builders the recorder uses, and a reader for
//! recovery and inspection.
//!
//! The reader handles untrusted bytes: sizes are checked against the bytes that are
//! really there, nothing is allocated from a size field without a bound, and
//! malformed input is an error, never a panic.

use std::io::{self, Read, Seek, SeekFrom};

use thiserror::Error;

use crate::link::frame::{AudioParams, Track, VideoParams};
use crate::media::h264::{self, H264Error};

/// Track id of the H.264 track in files this module writes.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the Opus track in files this module writes.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of `mvhd`, `tkhd` and `mehd` durations (milliseconds, as ffmpeg writes).
pub const MOVIE_TIMESCALE: u32 = 1000;

/// `sample_flags` of a sync sample (depends on no other sample).
pub const SAMPLE_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample (depends on others, `is_non_sync_sample`).
pub const SAMPLE_NON_SYNC: u32 = 0x0101_0000;
const NON_SYNC_BIT: u32 = 0x0001_0000;

/// Largest `moof` the reader loads into memory. A 2 s fragment of 60 fps video
/// and 20 ms audio needs a few KiB; anything near this bound is corrupt.
pub const MAX_MOOF_BYTES: u64 = 4 << 20;
/// Largest `moov` the reader loads (ours is under 2 KiB).
pub const MAX_MOOV_BYTES: u64 = 1 << 20;
/// Most samples one `trun` may declare before the reader calls it corrupt.
const MAX_TRUN_SAMPLES: u32 = 1 << 20;

/// Media time in microseconds of `ticks` in a track of `timescale`.
pub fn ticks_to_us(ticks: u64, timescale: u32) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(timescale.max(1))) as u64
}

/// Microseconds covered by `[start, start + duration)` ticks, computed as the
/// difference of the rounded end points so consecutive spans add up exactly.
pub fn span_us(start: u64, duration: u64, timescale: u32) -> u32 {
    let end = ticks_to_us(start.saturating_add(duration), timescale);
    u32::try_from(end - ticks_to_us(start, timescale)).unwrap_or(u32::MAX)
}

fn movie_units(ticks: u64, timescale: u32) -> u64 {
    // Round up so the reported duration never cuts off the last sample.
    let scaled = u128::from(ticks) * u128::from(MOVIE_TIMESCALE);
    scaled.div_ceil(u128::from(timescale.max(1))) as u64
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// Appends size-prefixed boxes to a buffer; `end` patches the size of the box that
/// the matching `start` opened.
#[derive(Default)]
pub struct BoxWriter {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl BoxWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn start(&mut self, fourcc: &[u8; 4]) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(fourcc);
        self
    }

    /// Starts a full box (version and 24-bit flags after the header).
    pub fn start_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) -> &mut Self {
        self.start(fourcc);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff))
    }

    pub fn end(&mut self) -> &mut Self {
        let at = self.open.pop().expect("BoxWriter::end without start");
        let size = u32::try_from(self.buf.len() - at).expect("box larger than 4 GiB");
        self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Current length of the buffer (the offset the next byte will have).
    pub fn position(&self) -> usize {
        self.buf.len()
    }

    /// Overwrites four bytes written earlier.
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn finish(self) -> Vec<u8> {
        assert!(self.open.is_empty(), "BoxWriter::finish with open boxes");
        self.buf
    }
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InitError {
    #[error("SPS is too short ({0} bytes) or not an SPS NAL unit")]
    BadSps(usize),
    #[error("PPS is empty or not a PPS NAL unit")]
    BadPps,
    #[error("Opus with {0} channels needs a channel mapping table, only 1 or 2 are supported")]
    Channels(u8),
    #[error("video size {0}x{1} is not valid")]
    Size(u16, u16),
    #[error("SPS: {0}")]
    Sps(#[from] H264Error),
}

/// Builds the init segment: `ftyp` and a `moov` with an H.264 and an Opus track, and
/// an `mvex` so players expect fragments. All durations are 64-bit zero fields that
/// [`duration_patches`] fills in later without moving any byte.
pub fn init_segment(video: &VideoParams, audio: &AudioParams) -> Result<Vec<u8>, InitError> {
    let sps = &video.sps[..];
    let pps = &video.pps[..];
    if sps.len() < 4 || sps[0] & 0x1f != 7 {
        return Err(InitError::BadSps(sps.len()));
    }
    if pps.is_empty() || pps[0] & 0x1f != 8 {
        return Err(InitError::BadPps);
    }
    if !(1..=2).contains(&audio.channels) {
        return Err(InitError::Channels(audio.channels));
    }
    if video.width == 0 || video.height == 0 {
        return Err(InitError::Size(video.width, video.height));
    }
    let chroma = h264::sps_chroma(sps)?;

    let mut w = BoxWriter::new();
    w.start(b"ftyp").bytes(b"iso6").u32(0x200);
    for brand in [b"iso6", b"iso5", b"isom", b"avc1", b"mp41"] {
        w.bytes(brand);
    }
    w.end();

    w.start(b"moov");
    w.start_full(b"mvhd", 1, 0)
        .u64(0)
        .u64(0)
        .u32(MOVIE_TIMESCALE)
        .u64(0) // duration, patched
        .u32(0x0001_0000) // rate 1.0
        .u16(0x0100) // volume 1.0
        .zeros(10);
    matrix(&mut w);
    w.zeros(24).u32(AUDIO_TRACK_ID + 1).end();

    // Video track.
    w.start(b"trak");
    tkhd(&mut w, VIDEO_TRACK_ID, 0, video.width, video.height);
    w.start(b"mdia");
    mdhd(&mut w, Track::Video.timescale());
    hdlr(&mut w, b"vide", "VideoHandler");
    w.start(b"minf");
    w.start_full(b"vmhd", 0, 1).zeros(8).end();
    dinf(&mut w);
    w.start(b"stbl").start_full(b"stsd", 0, 0).u32(1);
    w.start(b"avc1")
        .zeros(6)
        .u16(1) // data_reference_index
        .zeros(16)
        .u16(video.width)
        .u16(video.height)
        .u32(0x0048_0000) // 72 dpi
        .u32(0x0048_0000)
        .u32(0)
        .u16(1) // frame_count
        .zeros(32) // compressorname
        .u16(0x0018) // depth
        .u16(0xffff); // pre_defined = -1
    w.start(b"avcC")
        .u8(1)
        .u8(sps[1])
        .u8(sps[2])
        .u8(sps[3])
        .u8(0xff) // 4-byte NAL lengths
        .u8(0xe1) // one SPS
        .u16(sps.len() as u16)
        .bytes(sps)
        .u8(1)
        .u16(pps.len() as u16)
        .bytes(pps);
    if let Some(c) = chroma {
        // High-family profiles repeat these, reserved bits set (14496-15, 5.3.3.1).
        w.u8(0xfc | c.chroma_format_idc)
            .u8(0xf8 | c.bit_depth_luma_minus8)
            .u8(0xf8 | c.bit_depth_chroma_minus8)
            .u8(0); // no SPS extensions
    }
    w.end();
    w.end().end(); // avc1, stsd
    empty_sample_tables(&mut w);
    w.end().end().end().end(); // stbl, minf, mdia, trak

    // Audio track.
    w.start(b"trak");
    tkhd(&mut w, AUDIO_TRACK_ID, 0x0100, 0, 0);
    w.start(b"mdia");
    mdhd(&mut w, Track::Audio.timescale());
    hdlr(&mut w, b"soun", "SoundHandler");
    w.start(b"minf");
    w.start_full(b"smhd", 0, 0).zeros(4).end();
    dinf(&mut w);
    w.start(b"stbl").start_full(b"stsd", 0, 0).u32(1);
    w.start(b"Opus")
        .zeros(6)
        .u16(1)
        .zeros(8)
        .u16(u16::from(audio.channels))
        .u16(16)
        .zeros(4)
        .u32(Track::Audio.timescale() << 16);
    w.start(b"dOps")
        .u8(0)
        .u8(audio.channels)
        .u16(audio.pre_skip)
        .u32(audio.sample_rate)
        .u16(0) // output gain
        .u8(0) // channel mapping family 0: mono or stereo
        .end();
    w.end().end(); // Opus, stsd
    empty_sample_tables(&mut w);
    w.end().end().end().end();

    w.start(b"mvex");
    w.start_full(b"mehd", 1, 0).u64(0).end();
    for id in [VIDEO_TRACK_ID, AUDIO_TRACK_ID] {
        w.start_full(b"trex", 0, 0)
            .u32(id)
            .u32(1)
            .u32(0)
            .u32(0)
            .u32(0)
            .end();
    }
    w.end().end(); // mvex, moov
    Ok(w.finish())
}

fn matrix(w: &mut BoxWriter) {
    for v in UNITY_MATRIX {
        w.u32(v);
    }
}

fn tkhd(w: &mut BoxWriter, id: u32, volume: u16, width: u16, height: u16) {
    // flags: enabled | in_movie
    w.start_full(b"tkhd", 1, 3)
        .u64(0)
        .u64(0)
        .u32(id)
        .u32(0)
        .u64(0) // duration, patched
        .zeros(8)
        .u16(0) // layer
        .u16(0) // alternate group
        .u16(volume)
        .u16(0);
    matrix(w);
    w.u32(u32::from(width) << 16)
        .u32(u32::from(height) << 16)
        .end();
}

fn mdhd(w: &mut BoxWriter, timescale: u32) {
    // Duration 0: the samples are all in fragments.
    w.start_full(b"mdhd", 1, 0)
        .u64(0)
        .u64(0)
        .u32(timescale)
        .u64(0)
        .u16(0x55c4) // "und"
        .u16(0)
        .end();
}

fn hdlr(w: &mut BoxWriter, handler: &[u8; 4], name: &str) {
    w.start_full(b"hdlr", 0, 0)
        .u32(0)
        .bytes(handler)
        .zeros(12)
        .bytes(name.as_bytes())
        .u8(0)
        .end();
}

fn dinf(w: &mut BoxWriter) {
    w.start(b"dinf").start_full(b"dref", 0, 0).u32(1);
    w.start_full(b"url ", 0, 1).end(); // media is in this file
    w.end().end();
}

fn empty_sample_tables(w: &mut BoxWriter) {
    w.start_full(b"stts", 0, 0).u32(0).end();
    w.start_full(b"stsc", 0, 0).u32(0).end();
    w.start_full(b"stsz", 0, 0).u32(0).u32(0).end();
    w.start_full(b"stco", 0, 0).u32(0).end();
}

/// One sample of a track fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleEntry {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// pts - dts in track units.
    pub composition_offset: i32,
}

impl SampleEntry {
    /// Depends on no other sample (a keyframe).
    pub fn is_sync(&self) -> bool {
        self.flags & NON_SYNC_BIT == 0
    }
}

/// The samples of one track in one fragment; `data` is their bytes back to back.
pub struct TrackFragment<'a> {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub samples: &'a [SampleEntry],
    pub data: &'a [u8],
}

/// Builds `moof` + `mdat` for the tracks that have samples (empty ones are left out).
pub fn fragment(sequence: u32, tracks: &[TrackFragment<'_>]) -> Vec<u8> {
    let tracks: Vec<&TrackFragment<'_>> = tracks.iter().filter(|t| !t.samples.is_empty()).collect();
    let mut w = BoxWriter::new();
    w.start(b"moof");
    w.start_full(b"mfhd", 0, 0).u32(sequence).end();
    let mut offset_fields = Vec::with_capacity(tracks.len());
    for t in &tracks {
        w.start(b"traf");
        w.start_full(b"tfhd", 0, 0x02_0000).u32(t.track_id).end(); // default-base-is-moof
        w.start_full(b"tfdt", 1, 0).u64(t.base_decode_time).end();
        // data-offset | duration | size | flags | composition offset (signed, v1)
        w.start_full(b"trun", 1, 0x000f01)
            .u32(t.samples.len() as u32);
        offset_fields.push(w.position());
        w.u32(0);
        for s in t.samples {
            w.u32(s.duration)
                .u32(s.size)
                .u32(s.flags)
                .u32(s.composition_offset as u32);
        }
        w.end().end();
    }
    w.end();
    let moof_len = w.position();
    let mut data_at = moof_len + 8;
    for (t, field) in tracks.iter().zip(offset_fields) {
        w.patch_u32(field, data_at as u32);
        data_at += t.data.len();
    }
    w.start(b"mdat");
    for t in &tracks {
        w.bytes(t.data);
    }
    w.end();
    w.finish()
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

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

/// The bytes to write over the duration fields so that `mvhd`, every `tkhd` and
/// `mehd` report `track_ends` (track units). Fixed-size fields: no byte moves.
pub fn duration_patches(init: &InitInfo, track_ends: &[(u32, u64)]) -> Vec<(u64, [u8; 8])> {
    let mut patches = Vec::new();
    let mut movie = 0;
    for t in &init.tracks {
        let end = track_ends
            .iter()
            .find(|(id, _)| *id == t.track_id)
            .map_or(0, |e| e.1);
        let units = movie_units(end, t.timescale);
        movie = movie.max(units);
        if let Some(at) = t.tkhd_duration_at {
            patches.push((at, units.to_be_bytes()));
        }
    }
    for at in [init.mvhd_duration_at, init.mehd_duration_at]
        .into_iter()
        .flatten()
    {
        patches.push((at, movie.to_be_bytes()));
    }
    patches
}

/// An init segment with its duration fields zeroed: equal for two segments of one
/// recording (durations are patched when each is closed), different when the codec
/// configuration, size or tracks differ.
pub fn stream_configuration(init: &[u8]) -> Result<Vec<u8>, ReadError> {
    let info = read_init(&mut std::io::Cursor::new(init), init.len() as u64)?;
    let mut bytes = init[..(info.len as usize).min(init.len())].to_vec();
    for (at, zero) in duration_patches(&info, &[]) {
        if let Some(field) = bytes.get_mut(at as usize..at as usize + zero.len()) {
            field.copy_from_slice(&zero);
        }
    }
    zero_pre_skip(&info, &mut bytes);
    Ok(bytes)
}

/// The init segment for the segments of a recording after its first: the Opus
/// `PreSkip` is 0. The encoder's warm-up samples are at the very start of the
/// recording only; players drop `PreSkip` samples at the start of every file (ffmpeg
/// and the browsers built on it do), which would cut real audio from each later
/// segment. Same length and layout as `init`, so one [`InitInfo`] serves both.
pub fn continuation_init(init: &[u8]) -> Result<Vec<u8>, ReadError> {
    let info = read_init(&mut std::io::Cursor::new(init), init.len() as u64)?;
    let mut bytes = init.to_vec();
    zero_pre_skip(&info, &mut bytes);
    Ok(bytes)
}

fn zero_pre_skip(info: &InitInfo, bytes: &mut [u8]) {
    for at in info.tracks.iter().filter_map(|t| t.pre_skip_at) {
        if let Some(field) = bytes.get_mut(at as usize..at as usize + 2) {
            field.fill(0);
        }
    }
}

/// Movie duration in microseconds for the given track ends.
pub fn movie_duration_us(init: &InitInfo, track_ends: &[(u32, u64)]) -> u64 {
    track_ends
        .iter()
        .filter_map(|(id, end)| init.timescale(*id).map(|ts| ticks_to_us(*end, ts)))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{AudioCodec, VideoCodec};
    use proptest::prelude::*;
    use std::io::Cursor;

    pub(crate) fn params() -> (VideoParams, AudioParams) {
        let video = VideoParams {
            codec: VideoCodec::H264,
            sps: heapless::Vec::from_slice(&[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01]).unwrap(),
            pps: heapless::Vec::from_slice(&[0x68, 0xce, 0x3c, 0x80]).unwrap(),
            width: 640,
            height: 360,
            fps: 30,
        };
        let audio = AudioParams {
            codec: AudioCodec::Opus,
            sample_rate: 48_000,
            channels: 2,
            pre_skip: 312,
        };
        (video, audio)
    }

    fn sample_fragment(seq: u32, base: u64) -> Vec<u8> {
        let v = [
            SampleEntry {
                duration: 3000,
                size: 3,
                flags: SAMPLE_SYNC,
                composition_offset: 0,
            },
            SampleEntry {
                duration: 3000,
                size: 2,
                flags: SAMPLE_NON_SYNC,
                composition_offset: 0,
            },
        ];
        let a = [SampleEntry {
            duration: 960,
            size: 4,
            flags: SAMPLE_SYNC,
            composition_offset: 0,
        }];
        fragment(
            seq,
            &[
                TrackFragment {
                    track_id: VIDEO_TRACK_ID,
                    base_decode_time: base,
                    samples: &v,
                    data: &[1, 2, 3, 4, 5],
                },
                TrackFragment {
                    track_id: AUDIO_TRACK_ID,
                    base_decode_time: 0,
                    samples: &a,
                    data: &[9; 4],
                },
            ],
        )
    }

    #[test]
    fn a_continuation_init_has_no_pre_skip_and_the_same_layout() {
        let (video, audio) = params();
        let first = init_segment(&video, &audio).unwrap();
        let next = continuation_init(&first).unwrap();
        assert_eq!(first.len(), next.len());
        let read = |b: &[u8]| read_init(&mut Cursor::new(b), b.len() as u64).unwrap();
        let info = read(&first);
        assert_eq!(info, read(&next));
        let at = info.tracks[1].pre_skip_at.unwrap() as usize;
        assert_eq!(
            u16::from_be_bytes([first[at], first[at + 1]]),
            audio.pre_skip
        );
        assert_eq!(&next[at..at + 2], [0, 0]);
        let differ: Vec<usize> = (0..first.len()).filter(|&i| first[i] != next[i]).collect();
        assert!(differ.iter().all(|&i| i == at || i == at + 1), "{differ:?}");
        assert_eq!(
            stream_configuration(&first).unwrap(),
            stream_configuration(&next).unwrap()
        );
    }

    #[test]
    fn init_segment_parses_back() {
        let (v, a) = params();
        let init = init_segment(&v, &a).unwrap();
        let scan = scan(&mut Cursor::new(&init), init.len() as u64).unwrap();
        assert_eq!(scan.init.len, init.len() as u64);
        assert!(scan.fragments.is_empty() && scan.torn.is_none());
        let video = scan.init.track(VIDEO_TRACK_ID).unwrap();
        assert_eq!(
            (&video.codec, video.width, video.height, video.timescale),
            (b"avc1", 640, 360, 90_000)
        );
        let audio = scan.init.track(AUDIO_TRACK_ID).unwrap();
        assert_eq!(
            (
                &audio.codec,
                audio.channels,
                audio.sample_rate,
                audio.timescale
            ),
            (b"Opus", 2, 48_000, 48_000)
        );
        assert!(scan.init.mvhd_duration_at.is_some() && scan.init.mehd_duration_at.is_some());
        // The duration fields are where the patches say: all zero before patching.
        for (at, _) in duration_patches(&scan.init, &[(1, 90_000), (2, 48_000)]) {
            assert_eq!(&init[at as usize..at as usize + 8], &[0; 8]);
        }
    }

    /// The body of the `avcC` box in an init segment.
    fn avcc(init: &[u8]) -> &[u8] {
        let at = init.windows(4).position(|w| w == b"avcC").unwrap();
        let size = u32::from_be_bytes(init[at - 4..at].try_into().unwrap()) as usize;
        &init[at + 4..at - 4 + size]
    }

    #[test]
    fn avcc_repeats_chroma_and_bit_depths_of_a_high_profile_sps() {
        let (mut v, a) = params();
        let init = init_segment(&v, &a).unwrap();
        assert!(
            avcc(&init).ends_with(&v.pps),
            "Constrained Baseline: nothing after the PPS"
        );

        let sps = crate::media::h264::tests::X264_HIGH_SPS;
        v.sps = heapless::Vec::from_slice(&sps).unwrap();
        let init = init_segment(&v, &a).unwrap();
        let body = avcc(&init);
        assert_eq!(&body[1..4], &sps[1..4], "profile, compatibility, level");
        assert!(
            body.ends_with(&[0xfd, 0xf8, 0xf8, 0]),
            "4:2:0, 8 bits: {body:02x?}"
        );

        v.sps = heapless::Vec::from_slice(&sps[..4]).unwrap();
        assert!(matches!(init_segment(&v, &a), Err(InitError::Sps(_))));
    }

    #[test]
    fn duration_patches_use_movie_timescale() {
        let (v, a) = params();
        let mut init = init_segment(&v, &a).unwrap();
        let info = read_init(&mut Cursor::new(&init), init.len() as u64).unwrap();
        for (at, bytes) in duration_patches(&info, &[(1, 180_000), (2, 96_960)]) {
            init[at as usize..at as usize + 8].copy_from_slice(&bytes);
        }
        let mvhd = info.mvhd_duration_at.unwrap() as usize;
        assert_eq!(
            u64::from_be_bytes(init[mvhd..mvhd + 8].try_into().unwrap()),
            2020
        );
        let tkhd = info.track(1).unwrap().tkhd_duration_at.unwrap() as usize;
        assert_eq!(
            u64::from_be_bytes(init[tkhd..tkhd + 8].try_into().unwrap()),
            2000
        );
        assert_eq!(
            movie_duration_us(&info, &[(1, 180_000), (2, 96_960)]),
            2_020_000
        );
    }

    #[test]
    fn fragment_parses_back() {
        let (v, a) = params();
        let mut file = init_segment(&v, &a).unwrap();
        let init_len = file.len() as u64;
        file.extend(sample_fragment(1, 0));
        file.extend(sample_fragment(2, 6000));
        let scan = scan(&mut Cursor::new(&file), file.len() as u64).unwrap();
        assert_eq!(scan.torn, None);
        assert_eq!(scan.fragments.len(), 2);
        assert_eq!(scan.fragments[0].offset, init_len);
        let m = &scan.fragments[1].moof;
        assert_eq!(m.sequence, 2);
        assert_eq!(
            (
                m.trafs[0].base_decode_time,
                m.trafs[0].duration,
                m.trafs[0].sample_count
            ),
            (6000, 6000, 2)
        );
        assert!(m.trafs[0].first_sample_sync);
        let timing = FragmentTiming::of(&scan.init, m).unwrap();
        assert_eq!(
            timing,
            FragmentTiming {
                start_us: 66_666,
                duration_us: 66_667,
                keyframe: true
            }
        );
        // Samples sit where the trun says.
        let f = &scan.fragments[0];
        let at = (f.offset + m.trafs[0].data_offset) as usize;
        assert_eq!(&file[at..at + 5], &[1, 2, 3, 4, 5]);
        assert_eq!(scan.track_ends(), vec![(1, 12_000), (2, 960)]);
    }

    #[test]
    fn samples_parse_back() {
        let frag = sample_fragment(3, 6000);
        let (_, body) = boxes(&frag).next().unwrap().unwrap();
        let (moof, samples) = parse_moof_samples(body).unwrap();
        assert_eq!(moof, parse_moof(body).unwrap());
        assert_eq!(samples.len(), 2);
        assert_eq!(
            samples[0]
                .iter()
                .map(|s| (s.duration, s.size, s.flags & NON_SYNC_BIT == 0))
                .collect::<Vec<_>>(),
            [(3000, 3, true), (3000, 2, false)]
        );
        assert_eq!(
            samples[1][0],
            SampleEntry {
                duration: 960,
                size: 4,
                flags: SAMPLE_SYNC,
                composition_offset: 0
            }
        );
    }

    #[test]
    fn torn_tails_are_found() {
        let (v, a) = params();
        let mut file = init_segment(&v, &a).unwrap();
        file.extend(sample_fragment(1, 0));
        let whole = file.len() as u64;
        let second = sample_fragment(2, 6000);
        for cut in [1, 8, 20, second.len() - 20, second.len() - 1] {
            let mut f = file.clone();
            f.extend_from_slice(&second[..cut]);
            let s = scan(&mut Cursor::new(&f), f.len() as u64).unwrap();
            assert_eq!(s.fragments.len(), 1, "cut {cut}");
            assert_eq!(s.valid_len, whole);
            assert_eq!(s.torn.unwrap().offset(), whole);
        }
        // A zero-filled tail (delayed allocation after a crash).
        let mut f = file.clone();
        f.extend_from_slice(&[0; 100]);
        let s = scan(&mut Cursor::new(&f), f.len() as u64).unwrap();
        assert_eq!((s.valid_len, s.fragments.len()), (whole, 1));
    }

    #[test]
    fn large_size_and_size_zero_headers() {
        let mut buf = vec![0, 0, 0, 1];
        buf.extend_from_slice(b"free");
        buf.extend_from_slice(&20u64.to_be_bytes());
        buf.extend_from_slice(&[7; 4]);
        buf.extend_from_slice(&[0, 0, 0, 0]);
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&[1, 2, 3]);
        let got: Vec<_> = boxes(&buf).map(Result::unwrap).collect();
        assert_eq!(got[0].0.header_len, 16);
        assert_eq!(got[0].1, &[7; 4]);
        assert_eq!(got[1].0.size, 11);
        assert_eq!(got[1].1, &[1, 2, 3]);
        // A size past the end is an error, not a slice panic.
        let bad = [0, 0, 0, 50, b'a', b'b', b'c', b'd'];
        assert!(boxes(&bad).next().unwrap().is_err());
    }

    proptest! {
        #[test]
        fn reader_never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan(&mut Cursor::new(&data), data.len() as u64);
            let _ = parse_moof(&data);
            let _ = parse_moov(&data, 0, 0);
            for b in boxes(&data) {
                if b.is_err() { break; }
            }
        }

        #[test]
        fn reader_never_panics_on_mutated_files(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let (v, a) = params();
            let mut file = init_segment(&v, &a).unwrap();
            file.extend(sample_fragment(1, 0));
            file.extend(sample_fragment(2, 6000));
            for (at, byte) in flips {
                let n = file.len();
                file[at % n] = byte;
            }
            file.truncate(cut % (file.len() + 1));
            let _ = scan(&mut Cursor::new(&file), file.len() as u64);
        }
    }
}
