//! Continuing a recording after its media link broke or the recorder restarted.
//!
//! The mixer reconnects, sends the same `Start` again and replays its media from a
//! video keyframe at or before the break, on the same timeline. A `Start` for a room
//! and recording id that already has segments under the primary storage or the spool
//! therefore continues that recording ([`plan`]): the latest recording of that id is
//! found, its unfinished segments are repaired, and if the `Start` would produce the
//! same init segment, `RecordingWriter::resume` opens segment n+1 after the existing
//! ones and writes the chain into all of them. If it would not (other codec
//! configuration, size or audio), the reason is logged and a fresh recording starts
//! beside it: incompatible streams are never mixed in one recording.
//!
//! Overlap: the later segment wins. The tail of the existing recording — its last
//! fragment that starts with a keyframe and the fragments after it ([`Tail`]) — is
//! read back and becomes the beginning of the new segment; media the link then
//! replays is taken only past what the recording already holds (per track, media
//! whose dts is not after the last one held is skipped). So the new segment starts
//! with a keyframe at a fragment boundary of the earlier one, and it holds every frame
//! of that tail, including audio the replay lacks (the packet sent just before a
//! keyframe belongs to the keyframe's fragment). Once the new segment's first fragment
//! is durable, the earlier segment is cut before the tail by recovery, whose rule is
//! the same: fragments that a later segment of the chain holds are cut. Until then
//! the earlier segment's playlist is left without its end, so a crash in between is
//! repaired the same way at the next start. Every frame is then in exactly one
//! segment, and segments join without a gap.

use std::fs::{self, File};
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tracing::{info, warn};

use super::index::IndexRecord;
use super::layout::{
    parse_chain, parse_utc_stamp, replace_file, segment_suffix, ChainEntry, FileOpError,
    SegmentInfo, SegmentState, CHAIN_FILE, INDEX_FILE, MP4_FILE, PLAYLIST_FILE,
};
use super::playlist;
use super::recovery;
use crate::link::frame::{Media, StartParams, Track};
use crate::media::h264::{self, H264Error};
use crate::media::mp4::{self, InitInfo, ReadError, TrackInfo};

#[derive(Debug, Error)]
pub enum ResumeError {
    #[error("{} cannot be read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{} holds a video sample that is not AVCC: {source}", path.display())]
    Sample {
        path: PathBuf,
        #[source]
        source: H264Error,
    },
    #[error(transparent)]
    File(#[from] FileOpError),
}

/// Why a `Start` cannot continue an existing recording.
#[derive(Debug, Error, PartialEq, Eq)]
enum Mismatch {
    #[error("the Start parameters are invalid: {0}")]
    Invalid(String),
    #[error("the recording's init segment cannot be read: {0}")]
    Unreadable(String),
    #[error("the recording has {was}, the Start has {now}")]
    Track { was: String, now: String },
    #[error("the codec configuration (H.264 parameter sets or Opus header) differs")]
    Configuration,
}

/// How a recording begins.
#[derive(Debug)]
pub(crate) enum Plan {
    /// A new recording, whose first directory is named after `started_at`.
    Fresh { started_at: SystemTime },
    /// The continuation of an existing one.
    Resume(Existing),
}

/// A recording found on the storage, repaired, ready to be continued.
#[derive(Debug, Clone)]
pub(crate) struct Existing {
    /// `<UTC start>-<recording id>`: the directory name of segment 0.
    pub(crate) base_name: String,
    pub(crate) started_at: SystemTime,
    /// Every segment, in order, as its chain lists it and the disk holds it now.
    pub(crate) segments: Vec<SegmentInfo>,
    pub(crate) tail: Tail,
}

/// The end of an existing recording, where a resumed one picks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Segment holding the media below, which is cut off it once the new segment
    /// holds that media durably.
    pub(crate) segment: Option<u16>,
    /// The segment's last fragment that starts with a keyframe and every fragment
    /// after it, as media in time order; empty when it has no such fragment.
    pub(crate) media: Vec<Media>,
    /// Media time where the new segment starts.
    pub(crate) start_us: u64,
    /// `mfhd` sequence number of the new segment's first fragment.
    pub(crate) sequence: u32,
    /// Last dts per track (video, audio) the recording holds: media replayed up to
    /// it is skipped.
    pub(crate) last_dts: [Option<i64>; 2],
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            segment: None,
            media: Vec::new(),
            start_us: 0,
            sequence: 1,
            last_dts: [None; 2],
        }
    }
}

/// Index of a track in [`Tail::last_dts`].
pub(crate) fn track_slot(track: Track) -> usize {
    match track {
        Track::Video => 0,
        Track::Audio => 1,
    }
}

/// Decides how the recording `start` names begins, given the storage roots (the
/// primary, then the spool): it continues the latest recording of that room and id
/// if there is one the `Start` matches (see the module docs).
pub(crate) fn plan(roots: &[&Path], start: &StartParams, now: SystemTime) -> Plan {
    let Some(found) = find(roots, &start.room, &start.recording) else {
        return Plan::Fresh { started_at: now };
    };
    // After the existing one, so that the latest recording of this id is the new one.
    let fresh = Plan::Fresh {
        started_at: now.max(found.started_at + Duration::from_secs(1)),
    };
    let checked = found
        .dirs
        .iter()
        .find_map(|(_, dir, _)| read_init_bytes(dir).ok())
        .ok_or_else(|| Mismatch::Unreadable("no segment is readable".into()))
        .and_then(|init| compare_init(&init, start));
    if let Err(why) = checked {
        warn!(recording = %start.recording, base = %found.base_name, %why, "the Start does not match the existing recording: starting a fresh one");
        return fresh;
    }
    match prepare(&found) {
        // Recovery removed its segments: nothing to continue.
        Ok(existing) if existing.segments.iter().all(|s| s.fragments == 0) => {
            info!(recording = %start.recording, base = %found.base_name, "the existing recording holds no media: starting a fresh one");
            fresh
        }
        Ok(existing) => {
            info!(recording = %start.recording, base = %existing.base_name, segments = existing.segments.len(), from_us = existing.tail.start_us, "continuing the recording in a new segment");
            Plan::Resume(existing)
        }
        Err(e) => {
            warn!(recording = %start.recording, base = %found.base_name, error = %e, "the existing recording cannot be continued: starting a fresh one");
            fresh
        }
    }
}

/// The segment directories of the latest recording of `id` in `room` under the
/// storage `roots`, in segment order: what the chain lists and what is on disk (a
/// segment on a disk that failed may not have been told of the later ones).
pub fn segment_dirs(roots: &[&Path], room: &str, id: &str) -> Vec<PathBuf> {
    find(roots, room, id).map_or_else(Vec::new, |found| {
        chain_of(&found).into_iter().map(|e| e.dir).collect()
    })
}

/// The segment directories of a recording found on disk, before any repair.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    base_name: String,
    started_at: SystemTime,
    /// Segment number, directory and whether it is on the spool, by number.
    dirs: Vec<(u16, PathBuf, bool)>,
}

fn find(roots: &[&Path], room: &str, id: &str) -> Option<Found> {
    let mut dirs = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let Ok(entries) = fs::read_dir(root.join(room)) else {
            continue;
        };
        dirs.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (e.path(), i > 0)),
        );
    }
    latest(&dirs, id)
}

/// `<stamp>-<id>[.seg<n>]` as (base name, start time, segment).
fn parse_dir_name<'a>(name: &'a str, id: &str) -> Option<(&'a str, SystemTime, u16)> {
    let (base, segment) = match segment_suffix(name) {
        Some(n) => (name.rsplit_once(".seg")?.0, n),
        None => (name, 0),
    };
    let (stamp, rest) = base.split_at_checked(16)?;
    if rest.strip_prefix('-')? != id {
        return None;
    }
    Some((base, parse_utc_stamp(stamp)?, segment))
}

/// The segment directories of the latest recording of `id` among `dirs` (with
/// whether each is on the spool).
fn latest(dirs: &[(PathBuf, bool)], id: &str) -> Option<Found> {
    let parsed: Vec<_> = dirs
        .iter()
        .filter_map(|(dir, spool)| {
            let name = dir.file_name()?.to_str()?;
            let (base, at, n) = parse_dir_name(name, id)?;
            Some((base.to_owned(), at, n, dir, *spool))
        })
        .collect();
    let (base_name, started_at) = parsed
        .iter()
        .max_by_key(|(base, at, ..)| (*at, base.clone()))
        .map(|(base, at, ..)| (base.clone(), *at))?;
    let mut dirs: Vec<_> = parsed
        .into_iter()
        .filter(|(base, ..)| *base == base_name)
        .map(|(_, _, n, dir, spool)| (n, dir.clone(), spool))
        .collect();
    dirs.sort();
    Some(Found {
        base_name,
        started_at,
        dirs,
    })
}

/// The chain of a recording found on disk (see [`merge_chain`]).
fn chain_of(found: &Found) -> Vec<ChainEntry> {
    let listed = found
        .dirs
        .iter()
        .rev()
        .find_map(|(_, dir, _)| {
            let text = fs::read_to_string(dir.join(CHAIN_FILE)).ok()?;
            parse_chain(&text)
                .inspect_err(|e| warn!(dir = %dir.display(), error = %e, "chain unreadable"))
                .ok()
        })
        .unwrap_or_default();
    merge_chain(listed, &found.dirs)
}

/// The chain of a recording: the one the newest segment that has a readable chain
/// file lists, plus segments found on disk that it lacks (one made just before a
/// crash), in order.
fn merge_chain(listed: Vec<ChainEntry>, found: &[(u16, PathBuf, bool)]) -> Vec<ChainEntry> {
    let mut chain = listed;
    for (n, dir, _) in found {
        if !chain.iter().any(|e| e.segment == *n) {
            chain.push(ChainEntry {
                segment: *n,
                // Read from its media by `read_segment`.
                first_us: 0,
                state: SegmentState::Unclosed,
                dir: dir.clone(),
            });
        }
    }
    chain.sort_by_key(|e| e.segment);
    chain
}

/// Repairs the segments of `found` that were not finished and reads what they hold
/// and where the new segment picks up.
fn prepare(found: &Found) -> Result<Existing, ResumeError> {
    let chain = chain_of(found);
    for e in &chain {
        let ended =
            fs::read_to_string(e.dir.join(PLAYLIST_FILE)).is_ok_and(|t| playlist::is_ended(&t));
        if !ended && e.dir.join(MP4_FILE).is_file() {
            match recovery::recover(&e.dir) {
                Ok(report) => info!(%report, "recovered a segment of the recording to continue"),
                Err(error) => warn!(dir = %e.dir.display(), %error, "segment not recovered"),
            }
        }
    }
    let segments: Vec<SegmentInfo> = chain
        .iter()
        .map(|e| {
            let spool = found.dirs.iter().any(|(_, d, s)| *s && *d == e.dir);
            read_segment(e, spool)
        })
        .collect();
    let tail = read_tail(&segments)?;
    Ok(Existing {
        base_name: found.base_name.clone(),
        started_at: found.started_at,
        segments,
        tail,
    })
}

/// What a segment holds now, from its files; an unreadable segment holds nothing.
pub(crate) fn read_segment(entry: &ChainEntry, spool: bool) -> SegmentInfo {
    let mut info = SegmentInfo {
        segment: entry.segment,
        dir: entry.dir.clone(),
        spool,
        first_us: entry.first_us,
        state: SegmentState::Unclosed,
        fragments: 0,
        file_bytes: 0,
        index_bytes: 0,
        media_end_us: 0,
    };
    let Ok(scan) = scan(&entry.dir.join(MP4_FILE)) else {
        return info;
    };
    let ended =
        fs::read_to_string(entry.dir.join(PLAYLIST_FILE)).is_ok_and(|t| playlist::is_ended(&t));
    if ended {
        info.state = SegmentState::Closed;
    }
    if let (0, Some(first)) = (entry.first_us, scan.fragments.first()) {
        // Not listed by a chain (see `merge_chain`), or segment 0: where its media
        // starts.
        info.first_us = mp4::FragmentTiming::of(&scan.init, &first.moof).map_or(0, |t| t.start_us);
    }
    info.fragments = scan.fragments.len() as u32;
    info.file_bytes = scan.valid_len;
    info.index_bytes = fs::metadata(entry.dir.join(INDEX_FILE)).map_or(0, |m| m.len());
    info.media_end_us = mp4::movie_duration_us(&scan.init, &scan.track_ends());
    info
}

fn scan(path: &Path) -> Result<mp4::FileScan, ResumeError> {
    let read = |source| ResumeError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(|e| read(e.into()))?;
    let len = file.metadata().map_err(|e| read(e.into()))?.len();
    mp4::scan(&mut file, len).map_err(read)
}

/// The init segment (`ftyp` + `moov`) of a segment's recording file.
fn read_init_bytes(dir: &Path) -> Result<Vec<u8>, ResumeError> {
    let path = dir.join(MP4_FILE);
    let read = |source| ResumeError::Read {
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(|e| read(e.into()))?;
    let len = file.metadata().map_err(|e| read(e.into()))?.len();
    let init = mp4::read_init(&mut &file, len).map_err(read)?;
    let mut bytes = vec![0; init.len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| read(e.into()))?;
    Ok(bytes)
}

/// Checks that `start` yields the init segment `existing` has, durations aside
/// (they are patched when a segment is closed).
fn compare_init(existing: &[u8], start: &StartParams) -> Result<(), Mismatch> {
    let fresh = mp4::init_segment(&start.video, &start.audio)
        .map_err(|e| Mismatch::Invalid(e.to_string()))?;
    let parse = |bytes: &[u8]| mp4::read_init(&mut Cursor::new(bytes), bytes.len() as u64);
    let was = parse(existing).map_err(|e| Mismatch::Unreadable(e.to_string()))?;
    let now = parse(&fresh).map_err(|e| Mismatch::Invalid(e.to_string()))?;
    for (w, n) in was.tracks.iter().zip(&now.tracks) {
        let (w, n) = (describe(w), describe(n));
        if w != n {
            return Err(Mismatch::Track { was: w, now: n });
        }
    }
    if was.tracks.len() != now.tracks.len() {
        return Err(Mismatch::Track {
            was: format!("{} tracks", was.tracks.len()),
            now: format!("{} tracks", now.tracks.len()),
        });
    }
    let unpatched =
        mp4::stream_configuration(existing).map_err(|e| Mismatch::Unreadable(e.to_string()))?;
    let fresh = mp4::stream_configuration(&fresh).map_err(|e| Mismatch::Invalid(e.to_string()))?;
    if unpatched == fresh {
        Ok(())
    } else {
        Err(Mismatch::Configuration)
    }
}

/// A track as a mismatch names it.
fn describe(t: &TrackInfo) -> String {
    let codec = mp4::fourcc_str(&t.codec);
    match &t.handler {
        b"vide" => format!("video {codec} {}x{}", t.width, t.height),
        b"soun" => format!(
            "audio {codec} {} ch at {} Hz (timescale {})",
            t.channels, t.sample_rate, t.timescale
        ),
        h => format!("{} track {codec}", mp4::fourcc_str(h)),
    }
}

/// Reads the tail of the last segment that holds media (see [`Tail`]).
fn read_tail(segments: &[SegmentInfo]) -> Result<Tail, ResumeError> {
    let Some(last) = segments.iter().rev().find(|s| s.fragments > 0) else {
        return Ok(Tail::default());
    };
    let path = last.dir.join(MP4_FILE);
    let scan = scan(&path)?;
    let records: Vec<IndexRecord> = scan
        .fragments
        .iter()
        .map(|f| IndexRecord::derive(&scan.init, &f.moof, f.offset, f.len))
        .collect::<Result<_, _>>()
        .map_err(|source| ResumeError::Read {
            path: path.clone(),
            source,
        })?;
    let Some(end) = records.last() else {
        return Ok(Tail::default());
    };
    let keyframe = records.iter().rposition(IndexRecord::keyframe);
    // Without a keyframe fragment nothing can be carried; the last fragment still
    // says what the recording holds.
    let from = keyframe.unwrap_or(records.len() - 1);
    let file = File::open(&path).map_err(|e| ResumeError::Read {
        path: path.clone(),
        source: e.into(),
    })?;
    let mut media = Vec::new();
    for f in &scan.fragments[from..] {
        media.extend(fragment_media(&file, &path, &scan.init, f)?);
    }
    // Time order, video first on a tie: as the mixer sends.
    media.sort_by_key(|m| {
        let us = i128::from(m.dts) * 1_000_000 / i128::from(m.track.timescale());
        (us, track_slot(m.track))
    });
    let mut last_dts = [None; 2];
    for m in &media {
        let slot = &mut last_dts[track_slot(m.track)];
        *slot = Some(slot.map_or(m.dts, |d: i64| d.max(m.dts)));
    }
    Ok(match keyframe {
        Some(k) => Tail {
            segment: Some(last.segment),
            media,
            start_us: records[k].start_us,
            sequence: records[k].sequence,
            last_dts,
        },
        None => Tail {
            segment: None,
            media: Vec::new(),
            start_us: end.end_us(),
            sequence: end.sequence + 1,
            last_dts,
        },
    })
}

/// The samples of one fragment as media frames.
fn fragment_media(
    file: &File,
    path: &Path,
    init: &InitInfo,
    f: &mp4::FragmentLocation,
) -> Result<Vec<Media>, ResumeError> {
    let read = |source| ResumeError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = vec![0; f.len as usize];
    file.read_exact_at(&mut bytes, f.offset)
        .map_err(|e| read(e.into()))?;
    let moof = match mp4::boxes(&bytes).next() {
        Some(Ok((_, body))) => body,
        _ => return Err(read(ReadError::Missing("moof"))),
    };
    let (moof, runs) = mp4::parse_moof_samples(moof).map_err(read)?;
    let mut media = Vec::new();
    for (traf, samples) in moof.trafs.iter().zip(runs) {
        let track = if init.is_video(traf.track_id) {
            Track::Video
        } else {
            Track::Audio
        };
        let mut dts = traf.base_decode_time as i64;
        let mut at = traf.data_offset as usize;
        for s in samples {
            let data = bytes
                .get(at..at + s.size as usize)
                .ok_or_else(|| read(ReadError::Malformed("trun (sample past mdat)")))?;
            let data = match track {
                Track::Video => {
                    h264::avcc_to_annex_b(data).map_err(|source| ResumeError::Sample {
                        path: path.to_owned(),
                        source,
                    })?
                }
                Track::Audio => data.to_vec(),
            };
            media.push(Media {
                track,
                pts: dts + i64::from(s.composition_offset),
                dts,
                keyframe: s.is_sync(),
                data,
            });
            dts += i64::from(s.duration);
            at += s.size as usize;
        }
    }
    Ok(media)
}

/// Leaves the playlist of the segment whose tail a new segment carries without its
/// end, so that it counts as unfinished until the tail is cut off it: recovery at
/// the next start then cuts it, should the recorder stop before.
pub(crate) fn reopen(dir: &Path) -> Result<(), ResumeError> {
    let path = dir.join(PLAYLIST_FILE);
    let text = fs::read_to_string(&path).map_err(|source| FileOpError {
        op: "read",
        path: path.clone(),
        source,
    })?;
    let open: String = text
        .lines()
        .filter(|l| l.trim() != playlist::END.trim())
        .flat_map(|l| [l, "\n"])
        .collect();
    replace_file(dir, PLAYLIST_FILE, open.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::fragmenter::tests::start_params;
    use crate::recorder::layout::utc_stamp;
    use crate::recorder::recording::{RecordingWriter, WriterOptions};
    use std::time::UNIX_EPOCH;

    const T0: u64 = 1_709_210_096; // 2024-02-29 12:34:56

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn directory_names_parse() {
        let at0 = at(T0);
        assert_eq!(
            parse_dir_name("20240229T123456Z-rec-1", "rec-1"),
            Some(("20240229T123456Z-rec-1", at0, 0))
        );
        assert_eq!(
            parse_dir_name("20240229T123456Z-rec-1.seg12", "rec-1"),
            Some(("20240229T123456Z-rec-1", at0, 12))
        );
        for other in [
            "20240229T123456Z-rec-10",
            "20240229T123456Z-rec",
            "20240229T123456Z_rec-1",
            "20240230T123456Z-rec-1",
            "20240229T123456Z-rec-1.seg0",
            "x",
        ] {
            assert_eq!(parse_dir_name(other, "rec-1"), None, "{other}");
        }
    }

    #[test]
    fn the_latest_recording_of_the_id_is_found_with_all_its_segments() {
        let name = |secs, suffix: &str| format!("{}-rec-1{suffix}", utc_stamp(at(secs)));
        let dirs = vec![
            (PathBuf::from("/p/r").join(name(T0, "")), false),
            (PathBuf::from("/p/r").join(name(T0 + 60, "")), false),
            (PathBuf::from("/s/r").join(name(T0 + 60, ".seg1")), true),
            (PathBuf::from("/p/r").join(name(T0 + 60, ".seg2")), false),
            (
                PathBuf::from("/p/r").join(name(T0 + 120, "").replace("rec-1", "rec-2")),
                false,
            ),
        ];
        let found = latest(&dirs, "rec-1").unwrap();
        assert_eq!(found.base_name, name(T0 + 60, ""));
        assert_eq!(found.started_at, at(T0 + 60));
        assert_eq!(
            found
                .dirs
                .iter()
                .map(|(n, d, spool)| (*n, d.clone(), *spool))
                .collect::<Vec<_>>(),
            vec![
                (0, dirs[1].0.clone(), false),
                (1, dirs[2].0.clone(), true),
                (2, dirs[3].0.clone(), false),
            ]
        );
        assert_eq!(latest(&dirs, "rec-3"), None);
    }

    #[test]
    fn a_segment_the_chain_lacks_is_added_in_order() {
        let entry = |segment, dir: &str| ChainEntry {
            segment,
            first_us: u64::from(segment) * 1_000_000,
            state: SegmentState::Closed,
            dir: dir.into(),
        };
        let listed = vec![entry(0, "/p/a"), entry(1, "/s/a.seg1")];
        let found = vec![
            (0, PathBuf::from("/p/a"), false),
            (2, PathBuf::from("/p/a.seg2"), false),
        ];
        let chain = merge_chain(listed.clone(), &found);
        assert_eq!(chain[..2], listed[..]);
        assert_eq!(
            (chain[2].segment, chain[2].dir.as_path(), chain[2].state),
            (2, Path::new("/p/a.seg2"), SegmentState::Unclosed)
        );
    }

    #[test]
    fn start_params_are_compared_with_the_init_segment() {
        let start = start_params();
        let mut init = mp4::init_segment(&start.video, &start.audio).unwrap();
        assert_eq!(compare_init(&init, &start), Ok(()));
        // Durations patched at close do not count.
        let info = mp4::read_init(&mut Cursor::new(&init), init.len() as u64).unwrap();
        for (at, bytes) in mp4::duration_patches(&info, &[(1, 900_000), (2, 480_000)]) {
            init[at as usize..at as usize + 8].copy_from_slice(&bytes);
        }
        assert_eq!(compare_init(&init, &start), Ok(()));

        let mut bigger = start.clone();
        bigger.video.width = 640;
        let why = compare_init(&init, &bigger).unwrap_err();
        assert_eq!(
            why,
            Mismatch::Track {
                was: "video avc1 320x240".into(),
                now: "video avc1 640x240".into()
            }
        );
        let mut stereo = start.clone();
        stereo.audio.channels = 2;
        assert!(
            matches!(compare_init(&init, &stereo), Err(Mismatch::Track { now, .. }) if now.contains("2 ch"))
        );
        let mut other_pps = start.clone();
        other_pps.video.pps[1] ^= 1;
        assert_eq!(
            compare_init(&init, &other_pps),
            Err(Mismatch::Configuration)
        );
        let mut invalid = start.clone();
        invalid.video.sps.clear();
        assert!(matches!(
            compare_init(&init, &invalid),
            Err(Mismatch::Invalid(_))
        ));
        assert!(matches!(
            compare_init(&init[..20], &start),
            Err(Mismatch::Unreadable(_))
        ));
    }

    /// 30 fps video with a keyframe every 30 frames and 20 ms audio, interleaved
    /// in time order from frame `from` to `to`, as the mixer sends it.
    fn media(from: i64, to: i64) -> Vec<Media> {
        let mut out = Vec::new();
        // The first audio packet not before frame `from`.
        let mut a = (from * 3000 * 48_000 + 90_000 * 960 - 1) / (90_000 * 960);
        for n in from..to {
            while a * 960 * 90_000 < n * 3000 * 48_000 {
                out.push(Media {
                    track: Track::Audio,
                    pts: a * 960,
                    dts: a * 960,
                    keyframe: true,
                    data: vec![0xfc, a as u8],
                });
                a += 1;
            }
            let nal = if n % 30 == 0 { 0x65 } else { 0x41 };
            out.push(Media {
                track: Track::Video,
                pts: n * 3000,
                dts: n * 3000,
                keyframe: n % 30 == 0,
                data: vec![0, 0, 0, 1, nal, 0x88, n as u8, 7],
            });
        }
        out
    }

    /// (track slot, dts) of every sample of a segment.
    fn samples(dir: &Path) -> Vec<(usize, i64)> {
        let path = dir.join(MP4_FILE);
        let scan = scan(&path).unwrap();
        let file = File::open(&path).unwrap();
        scan.fragments
            .iter()
            .flat_map(|f| fragment_media(&file, &path, &scan.init, f).unwrap())
            .map(|m| (track_slot(m.track), m.dts))
            .collect()
    }

    #[test]
    fn a_resumed_recording_continues_after_the_tail_it_carries() {
        let root = tempfile::tempdir().unwrap();
        let start = start_params();
        let opts = WriterOptions::default();
        let mut w = RecordingWriter::create(root.path(), &start, at(T0), opts).unwrap();
        // The link breaks 10 frames into the third group of pictures.
        for m in media(0, 70) {
            w.push(&m).unwrap();
        }
        let first = w.dir().to_owned();
        w.finish().unwrap();

        let Plan::Resume(existing) = plan(&[root.path()], &start, at(T0 + 5)) else {
            panic!("the recording is continued");
        };
        assert_eq!(existing.started_at, at(T0));
        assert_eq!(existing.tail.segment, Some(0));
        assert_eq!(existing.tail.start_us, 2_000_000);
        assert_eq!(existing.tail.sequence, 3);
        assert_eq!(existing.tail.last_dts[0], Some(69 * 3000));
        let mut w = RecordingWriter::resume(root.path(), false, &start, &existing, opts).unwrap();
        assert_eq!(w.segment(), 1);
        // The replay from the last keyframe, then more.
        for m in media(60, 120) {
            w.push(&m).unwrap();
        }
        let summary = w.finish().unwrap();
        let second = w.dir().to_owned();
        assert!(
            second.ends_with("20240229T123456Z-rec-1.seg1"),
            "{second:?}"
        );

        // Segment 0 ends where segment 1 begins; every frame is in one of them once.
        let (a, b) = (samples(&first), samples(&second));
        assert_eq!(a.iter().filter(|(t, _)| *t == 0).count(), 60);
        // Segment 1 starts with the keyframe of the carried group and the audio
        // packet sent just before it, which the replay lacks.
        assert_eq!(b.iter().find(|(t, _)| *t == 0), Some(&(0, 60 * 3000)));
        assert!(b.contains(&(1, 99 * 960)));
        let mut all: Vec<_> = a.iter().chain(&b).copied().collect();
        let mut expected: Vec<_> = media(0, 120)
            .iter()
            .map(|m| (track_slot(m.track), m.dts))
            .collect();
        all.sort();
        expected.sort();
        assert_eq!(all, expected);
        assert_eq!(summary.fragments, 4);
        assert_eq!(summary.media_ms, 4_000);
        for dir in [&first, &second] {
            assert!(
                recovery::recover(dir).unwrap().was_clean(),
                "{}",
                dir.display()
            );
            let chain = parse_chain(&fs::read_to_string(dir.join(CHAIN_FILE)).unwrap()).unwrap();
            assert_eq!(
                chain
                    .iter()
                    .map(|e| (e.segment, e.first_us))
                    .collect::<Vec<_>>(),
                [(0, 0), (1, 2_000_000)]
            );
        }
    }

    #[test]
    fn a_start_that_does_not_match_begins_a_fresh_recording_after_it() {
        let root = tempfile::tempdir().unwrap();
        let start = start_params();
        let mut w =
            RecordingWriter::create(root.path(), &start, at(T0), WriterOptions::default()).unwrap();
        for m in media(0, 2) {
            w.push(&m).unwrap();
        }
        w.finish().unwrap();
        let mut other = start.clone();
        other.video.height = 480;
        match plan(&[root.path()], &other, at(T0)) {
            Plan::Fresh { started_at } => assert_eq!(started_at, at(T0 + 1)),
            Plan::Resume(_) => panic!("another size is another recording"),
        }
        let mut renamed = start.clone();
        renamed.recording = "rec-2".try_into().unwrap();
        assert!(matches!(
            plan(&[root.path()], &renamed, at(T0)),
            Plan::Fresh { started_at } if started_at == at(T0)
        ));
    }
}
