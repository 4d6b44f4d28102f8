//! The writer: init segment and fragment builders over a small box writer.

use thiserror::Error;

use super::{SampleEntry, AUDIO_TRACK_ID, MOVIE_TIMESCALE, VIDEO_TRACK_ID};
use crate::link::frame::{AudioParams, Track, VideoParams};
use crate::media::h264::{self, H264Error};

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
