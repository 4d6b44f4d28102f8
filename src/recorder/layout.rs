//! The recording's on-disk vocabulary, shared by the writer, recovery, resume,
//! inspect and the playlist: the names of a segment's files, how segment directories
//! are named and numbered, the `recording.chain` format, UTC stamps in directory
//! names, and the one durable way to replace a small file.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::link::frame::FaultTarget;

pub const MP4_FILE: &str = "recording.mp4";
pub const INDEX_FILE: &str = "recording.idx";
pub const PLAYLIST_FILE: &str = "recording.m3u8";
pub const CHAIN_FILE: &str = "recording.chain";

/// The longest fragment when keyframes are further apart, unless the writer is told
/// otherwise: what a playlist without a target duration of its own assumes.
pub(crate) const DEFAULT_MAX_FRAGMENT: Duration = Duration::from_secs(2);

/// Which part of the recording an IO error hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `recording.mp4`.
    File,
    /// `recording.idx`.
    Index,
    /// `recording.m3u8`.
    Playlist,
    /// `recording.chain`.
    Chain,
    /// The room or recording directory.
    Directory,
}

impl Target {
    /// The fault target reported over the link.
    pub(crate) fn fault_target(self) -> FaultTarget {
        match self {
            Target::File => FaultTarget::File,
            // The playlist and the chain are metadata like the index.
            Target::Index | Target::Playlist | Target::Chain => FaultTarget::Index,
            Target::Directory => FaultTarget::Storage,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::File => "recording file",
            Target::Index => "index file",
            Target::Playlist => "playlist",
            Target::Chain => "segment chain",
            Target::Directory => "recording directory",
        })
    }
}

/// An IO error with the operation and path it hit.
#[derive(Debug, Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FileOpError {
    pub(crate) op: &'static str,
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: io::Error,
}

/// How a segment was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// The segment being written.
    Open,
    /// Closed cleanly: index complete, durations patched, playlist ended.
    Closed,
    /// Could not be closed (its storage failed): recovery repairs it.
    Unclosed,
}

impl SegmentState {
    fn as_str(self) -> &'static str {
        match self {
            SegmentState::Open => "open",
            SegmentState::Closed => "closed",
            SegmentState::Unclosed => "unclosed",
        }
    }
}

impl fmt::Display for SegmentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SegmentState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        [
            SegmentState::Open,
            SegmentState::Closed,
            SegmentState::Unclosed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or(())
    }
}

/// One segment as the writer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub(crate) segment: u16,
    pub dir: PathBuf,
    /// The segment is on the spool (counts against `spool_max_bytes`).
    pub spool: bool,
    /// Media time where the segment starts.
    pub(crate) first_us: u64,
    pub state: SegmentState,
    /// Fragments whose media is durable (indexed, or indexed by recovery).
    pub(crate) fragments: u32,
    /// Durable bytes of `recording.mp4` and `recording.idx`.
    pub file_bytes: u64,
    pub index_bytes: u64,
    pub(crate) media_end_us: u64,
}

/// One line of `recording.chain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub segment: u16,
    pub first_us: u64,
    pub state: SegmentState,
    pub dir: PathBuf,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("chain line {line}: {reason}")]
pub struct ChainError {
    line: usize,
    reason: &'static str,
}

const CHAIN_HEADER: &str =
    "# recbox segment chain v1: segment, first media time (us), state, directory\n";

/// `recording.chain` text: one tab-separated line per segment, the directory last
/// (room names may contain spaces, never control characters).
pub(crate) fn encode_chain(entries: &[ChainEntry]) -> String {
    let mut text = CHAIN_HEADER.to_owned();
    for e in entries {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            e.segment,
            e.first_us,
            e.state,
            e.dir.display()
        ));
    }
    text
}

pub fn parse_chain(text: &str) -> Result<Vec<ChainEntry>, ChainError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason| ChainError {
            line: i + 1,
            reason,
        };
        let mut fields = line.splitn(4, '\t');
        let mut next = |what| fields.next().ok_or(err(what));
        let segment = next("no segment")?
            .parse()
            .map_err(|_| err("bad segment"))?;
        let first_us = next("no start")?.parse().map_err(|_| err("bad start"))?;
        let state = next("no state")?.parse().map_err(|_| err("bad state"))?;
        let dir = PathBuf::from(next("no directory")?);
        entries.push(ChainEntry {
            segment,
            first_us,
            state,
            dir,
        });
    }
    entries.sort_by_key(|e| e.segment);
    Ok(entries)
}

/// The segment number in a segment directory name (`….seg<n>`, n >= 1).
pub(crate) fn segment_suffix(name: &str) -> Option<u16> {
    let (_, digits) = name.rsplit_once(".seg")?;
    let n: u16 = digits.parse().ok()?;
    // Only the canonical spelling, so a name maps to one number and back.
    (n >= 1 && n.to_string() == digits).then_some(n)
}

/// The segment a recording directory holds, from its name (0 without a suffix).
pub(crate) fn segment_of_dir(dir: &Path) -> u16 {
    let name = match dir.file_name() {
        Some(name) => name.to_owned(),
        // `.` or `..`: the name of what it resolves to.
        None => fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(ToOwned::to_owned))
            .unwrap_or_default(),
    };
    name.to_str().and_then(segment_suffix).unwrap_or(0)
}

/// The directory name of segment `n` of the recording whose segment 0 is `base`.
pub(crate) fn segment_dir_name(base: &str, n: u16) -> String {
    if n == 0 {
        base.to_owned()
    } else {
        format!("{base}.seg{n}")
    }
}

/// The time a [`utc_stamp`] names (`None` for anything else).
pub(crate) fn parse_utc_stamp(stamp: &str) -> Option<SystemTime> {
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = &stamp[from..to];
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (h, m, sec) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    if !(1..=12).contains(&month) {
        return None;
    }
    // Days since 1970-01-01 from the civil date (Howard Hinnant's algorithm).
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let secs = (era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + m * 60 + sec;
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?);
    // Only the canonical spelling (no 31 February, no second 60).
    (utc_stamp(t) == stamp).then_some(t)
}

/// `yyyymmddThhmmssZ` in UTC (times before 1970 are clamped to the epoch).
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Replaces `dir/name` with `contents` atomically and durably (temp file, fsync,
/// rename, fsync of the directory).
pub(crate) fn replace_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), FileOpError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let err = |op, path: &Path| {
        let path = path.to_owned();
        move |source| FileOpError { op, path, source }
    };
    let mut f = File::create(&tmp).map_err(err("create", &tmp))?;
    f.write_all(contents).map_err(err("write", &tmp))?;
    f.sync_all().map_err(err("sync", &tmp))?;
    fs::rename(&tmp, &path).map_err(err("rename", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("sync", dir))
}

/// Removes the segment directory `dir` and syncs its parent, so the removal is
/// durable.
pub(crate) fn remove_dir_synced(dir: &Path) -> Result<(), FileOpError> {
    let err = |op, path: &Path| {
        let path = path.to_owned();
        move |source| FileOpError { op, path, source }
    };
    fs::remove_dir_all(dir).map_err(err("remove", dir))?;
    if let Some(parent) = dir.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(err("sync", parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(utc_stamp(t), "20240229T123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // 2099-12-31 23:59:59
        assert_eq!(utc_stamp(t), "20991231T235959Z");
        for secs in [0, 951_782_400, 1_709_210_096, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_utc_stamp(&utc_stamp(t)), Some(t));
        }
        for bad in [
            "20240229T123456",
            "20240229 123456Z",
            "20230229T123456Z",
            "20240229T123460Z",
            "2024022xT123456Z",
            "+2024029T123456Z",
        ] {
            assert_eq!(parse_utc_stamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_dir_name("T-rec", 0), "T-rec");
        for n in [1, 7, u16::MAX] {
            assert_eq!(segment_suffix(&segment_dir_name("T-rec", n)), Some(n));
        }
        for bad in [
            "T-rec",
            "T-rec.seg0",
            "T-rec.seg01",
            "T-rec.seg+1",
            "T-rec.seg",
        ] {
            assert_eq!(segment_suffix(bad), None, "{bad}");
        }
        assert_eq!(segment_of_dir(Path::new("/r/room/T-rec.seg3/")), 3);
    }

    #[test]
    fn chain_round_trips() {
        let entries = vec![
            ChainEntry {
                segment: 0,
                first_us: 0,
                state: SegmentState::Unclosed,
                dir: "/disk/Salle Ä/T-rec".into(),
            },
            ChainEntry {
                segment: 1,
                first_us: 4_000_000,
                state: SegmentState::Open,
                dir: "/spool/Salle Ä/T-rec.seg1".into(),
            },
        ];
        assert_eq!(parse_chain(&encode_chain(&entries)).unwrap(), entries);
        assert_eq!(
            parse_chain("0\t0\tgone\t/x\n"),
            Err(ChainError {
                line: 1,
                reason: "bad state"
            })
        );
    }
}
