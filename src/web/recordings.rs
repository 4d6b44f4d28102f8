//! The recordings under the storage and spool roots, as the page lists them: each
//! recording with all its segments in order (wherever each is), every segment as
//! `recbox inspect` reports it, and whether the whole recording can be served as
//! one file.
//!
//! Recordings are named by ids this listing makes; a request's id is looked up in
//! it, never joined onto a path, so nothing outside the roots can be named.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::media::mp4::{self, ReadError};
use crate::recorder::inspect;
use crate::recorder::layout::{parse_chain, parse_utc_stamp, segment_suffix, CHAIN_FILE, MP4_FILE};

/// One segment directory found.
#[derive(Debug, Clone)]
pub struct Segment {
    pub number: u16,
    pub dir: PathBuf,
    /// Under the spool root.
    pub spool: bool,
}

/// One recording: its segments found on the roots, in order.
#[derive(Debug, Clone)]
pub struct Recording {
    pub id: String,
    pub room: String,
    /// `<UTC start>-<recording id>`, the name of segment 0.
    pub base: String,
    pub segments: Vec<Segment>,
    /// Segments the chain lists that are on no root now.
    pub missing: Vec<u16>,
}

impl Recording {
    pub fn segment(&self, number: u16) -> Option<&Segment> {
        self.segments.iter().find(|s| s.number == number)
    }
}

/// Every recording under `roots` (the storage, then the spool), newest first.
pub fn list(roots: &[PathBuf]) -> Vec<Recording> {
    let mut found: BTreeMap<(String, String), Vec<Segment>> = BTreeMap::new();
    for (i, root) in roots.iter().enumerate() {
        for room in subdirs(root) {
            let Some(room_name) = file_name(&room) else {
                continue;
            };
            for dir in subdirs(&room) {
                let Some((base, number)) = file_name(&dir).and_then(|n| parse_name(&n)) else {
                    continue;
                };
                found
                    .entry((room_name.clone(), base))
                    .or_default()
                    .push(Segment {
                        number,
                        dir,
                        spool: i > 0,
                    });
            }
        }
    }
    let mut recordings: Vec<Recording> = found
        .into_iter()
        .map(|((room, base), mut segments)| {
            segments.sort_by_key(|s| (s.number, s.spool));
            segments.dedup_by_key(|s| s.number);
            let missing = chain_numbers(&segments)
                .into_iter()
                .filter(|n| !segments.iter().any(|s| s.number == *n))
                .collect();
            Recording {
                id: format!("{room}~{base}"),
                room,
                base,
                segments,
                missing,
            }
        })
        .collect();
    recordings.sort_by(|a, b| b.base.cmp(&a.base).then_with(|| a.room.cmp(&b.room)));
    recordings
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        // Not followed: a link could lead off the roots.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

/// `<stamp>-<id>[.seg<n>]` as (base name, segment number).
fn parse_name(name: &str) -> Option<(String, u16)> {
    let (base, number) = match segment_suffix(name) {
        Some(n) => (name.rsplit_once(".seg")?.0, n),
        None => (name, 0),
    };
    let (stamp, rest) = base.split_at_checked(16)?;
    parse_utc_stamp(stamp)?;
    rest.strip_prefix('-').filter(|id| !id.is_empty())?;
    Some((base.to_owned(), number))
}

/// The segment numbers the newest readable chain lists.
fn chain_numbers(segments: &[Segment]) -> Vec<u16> {
    segments
        .iter()
        .rev()
        .find_map(|s| parse_chain(&fs::read_to_string(s.dir.join(CHAIN_FILE)).ok()?).ok())
        .map(|chain| chain.iter().map(|e| e.segment).collect())
        .unwrap_or_default()
}

/// A segment as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentView {
    pub segment: u16,
    /// `storage` or `spool`.
    pub root: &'static str,
    pub fragments: usize,
    pub start_s: f64,
    pub end_s: f64,
    pub bytes: u64,
    /// As `recbox inspect` says it.
    pub health: String,
    pub healthy: bool,
    pub mp4: String,
    pub playlist: String,
}

/// A recording as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingView {
    pub id: String,
    pub room: String,
    pub name: String,
    pub segments: Vec<SegmentView>,
    pub missing_segments: Vec<u16>,
    pub duration_s: f64,
    pub bytes: u64,
    /// The whole recording as one file, when that is valid.
    pub whole: Option<String>,
    /// Else why not: then it is served segment by segment.
    pub whole_unavailable: Option<String>,
}

/// Inspects every segment of `rec` (reads the files).
pub fn view(rec: &Recording) -> RecordingView {
    let base_url = format!("/recordings/{}", url_component(&rec.id));
    let segments: Vec<SegmentView> = rec
        .segments
        .iter()
        .map(|s| {
            let inspection = inspect::inspect_segment(&s.dir);
            let url = format!("{base_url}/{}", s.number);
            let (fragments, start_s, end_s, bytes, health, healthy) = match &inspection {
                Ok(i) => (
                    i.fragments,
                    i.start_us as f64 / 1e6,
                    i.end_us as f64 / 1e6,
                    i.file_bytes + i.index_bytes.unwrap_or(0),
                    i.health_text().to_owned(),
                    i.is_healthy(),
                ),
                Err(e) => (0, 0.0, 0.0, 0, format!("cannot be inspected: {e}"), false),
            };
            SegmentView {
                segment: s.number,
                root: if s.spool { "spool" } else { "storage" },
                fragments,
                start_s,
                end_s,
                bytes,
                health,
                healthy,
                mp4: format!("{url}/recording.mp4"),
                playlist: format!("{url}/recording.m3u8"),
            }
        })
        .collect();
    let (whole, whole_unavailable) = match joined(rec) {
        Ok(_) => (Some(format!("{base_url}/recording.mp4")), None),
        Err(e) => (None, Some(e.to_string())),
    };
    RecordingView {
        id: rec.id.clone(),
        room: rec.room.clone(),
        name: rec.base.clone(),
        duration_s: segments.iter().map(|s| s.end_s).fold(0.0, f64::max)
            - segments.first().map_or(0.0, |s| s.start_s),
        bytes: segments.iter().map(|s| s.bytes).sum(),
        segments,
        missing_segments: rec.missing.clone(),
        whole,
        whole_unavailable,
    }
}

/// Percent-encodes what is not unreserved (RFC 3986) in one path segment.
pub fn url_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Part of a body served from files and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Bytes(Vec<u8>),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Piece {
    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

/// Why a recording cannot be served as one file.
#[derive(Debug, Error)]
pub enum JoinError {
    #[error("segment {0} is missing")]
    Missing(u16),
    #[error("segment {segment} cannot be read: {source}")]
    Read {
        segment: u16,
        #[source]
        source: ReadError,
    },
    #[error("segment {0} has another init segment (codec configuration) than segment 0")]
    Configuration(u16),
    #[error("segment {0} begins before the segment before it ends (its overlap is not cut yet)")]
    Overlap(u16),
}

/// The whole recording as one fragmented MP4: the first segment's init segment with
/// the durations of the whole, then every segment's whole fragments in order. Valid
/// because segments share their codec configuration (checked), lie on one timeline
/// without overlap (checked), and fragments address their media relative to their
/// own `moof`.
pub fn joined(rec: &Recording) -> Result<Vec<Piece>, JoinError> {
    if let Some(&n) = rec.missing.first() {
        return Err(JoinError::Missing(n));
    }
    let mut pieces = Vec::new();
    let mut first_init: Option<(Vec<u8>, mp4::InitInfo)> = None;
    let mut ends: Vec<(u32, u64)> = Vec::new();
    for s in &rec.segments {
        let read = |source| JoinError::Read {
            segment: s.number,
            source,
        };
        let path = s.dir.join(MP4_FILE);
        let file = File::open(&path).map_err(|e| read(e.into()))?;
        let len = file.metadata().map_err(|e| read(e.into()))?.len();
        let scan = mp4::scan(&mut &file, len).map_err(read)?;
        let mut init = vec![0; scan.init.len as usize];
        file.read_exact_at(&mut init, 0)
            .map_err(|e: io::Error| read(e.into()))?;
        let comparable = mp4::stream_configuration(&init).map_err(read)?;
        match &first_init {
            None => first_init = Some((comparable, scan.init.clone())),
            Some((first, _)) if *first != comparable => {
                return Err(JoinError::Configuration(s.number))
            }
            Some(_) => {}
        }
        if let Some(f) = scan.fragments.first() {
            let overlaps = f.moof.trafs.iter().any(|t| {
                ends.iter()
                    .any(|&(id, end)| id == t.track_id && t.base_decode_time < end)
            });
            if overlaps {
                return Err(JoinError::Overlap(s.number));
            }
        }
        for (id, end) in scan.track_ends() {
            match ends.iter_mut().find(|(i, _)| *i == id) {
                Some(e) => e.1 = e.1.max(end),
                None => ends.push((id, end)),
            }
        }
        if pieces.is_empty() {
            pieces.push(Piece::Bytes(init));
        }
        pieces.push(Piece::File {
            path,
            offset: scan.init.len,
            len: scan.valid_len - scan.init.len,
        });
    }
    let Some((_, info)) = first_init else {
        return Err(JoinError::Missing(0));
    };
    if let Some(Piece::Bytes(init)) = pieces.first_mut() {
        for (at, bytes) in mp4::duration_patches(&info, &ends) {
            if let Some(field) = init.get_mut(at as usize..at as usize + bytes.len()) {
                field.copy_from_slice(&bytes);
            }
        }
    }
    Ok(pieces)
}

/// Bytes `start..end` of the body made of `pieces`.
pub fn slice(pieces: &[Piece], start: u64, end: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0;
    for p in pieces {
        let (from, to) = (start.max(at), end.min(at + p.len()));
        if from < to {
            let (skip, take) = (from - at, to - from);
            out.push(match p {
                Piece::Bytes(b) => Piece::Bytes(b[skip as usize..(skip + take) as usize].to_vec()),
                Piece::File { path, offset, .. } => Piece::File {
                    path: path.clone(),
                    offset: offset + skip,
                    len: take,
                },
            });
        }
        at += p.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_recordings_and_segments() {
        assert_eq!(
            parse_name("20261207T070000Z-rec-1"),
            Some(("20261207T070000Z-rec-1".into(), 0))
        );
        assert_eq!(
            parse_name("20261207T070000Z-rec-1.seg2"),
            Some(("20261207T070000Z-rec-1".into(), 2))
        );
        for bad in [
            "spool",
            "20261207T070000Z-",
            "2026120xT070000Z-a",
            "..",
            "x.seg1",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_listing_groups_segments_across_roots_and_ignores_the_rest() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [
            a.path().join("room 1/20261207T070000Z-r1"),
            b.path().join("room 1/20261207T070000Z-r1.seg1"),
            a.path().join("room 1/20261207T070000Z-r1.seg2"),
            a.path().join("room 1/20261207T080000Z-r2"),
            a.path().join("room 1/not-a-recording"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(a.path().join("room 1/20261207T090000Z-file"), b"").unwrap();
        let recs = list(&[a.path().to_owned(), b.path().to_owned()]);
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["room 1~20261207T080000Z-r2", "room 1~20261207T070000Z-r1"]
        );
        let segs: Vec<(u16, bool)> = recs[1]
            .segments
            .iter()
            .map(|s| (s.number, s.spool))
            .collect();
        assert_eq!(segs, [(0, false), (1, true), (2, false)]);
        assert_eq!(url_component(&recs[1].id), "room%201~20261207T070000Z-r1");
    }

    #[test]
    fn slices_cross_pieces() {
        let file = |offset, len| Piece::File {
            path: "f".into(),
            offset,
            len,
        };
        let pieces = [Piece::Bytes(vec![1, 2, 3]), file(100, 10), file(500, 5)];
        assert_eq!(
            slice(&pieces, 2, 15),
            [Piece::Bytes(vec![3]), file(100, 10), file(500, 2)]
        );
        assert_eq!(slice(&pieces, 4, 5), [file(101, 1)]);
        assert_eq!(slice(&pieces, 0, 18), pieces);
        assert!(slice(&pieces, 18, 18).is_empty());
    }
}
