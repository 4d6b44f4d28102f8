//! Recovery of recordings that were not finished cleanly (power loss, crash,
//! storage removed): the MP4 is the source of truth, everything else is rebuilt
//! from it.
//!
//! - a torn tail of `recording.mp4` (partial box, `moof` without its `mdat`,
//!   unparsable `moof`) is cut back to the end of the last whole fragment;
//! - `recording.idx` is rebuilt from the file; since every record field is derived
//!   from the MP4, it is byte-identical to what the live writer wrote, so a torn,
//!   damaged or missing index all end up the same; it is replaced atomically
//!   (temp file, fsync, rename, fsync directory) and only if it differs;
//! - fragments that a later segment of the chain holds too (see
//!   [`super::resume`]) are cut off: the later copy counts;
//! - the playlist is regenerated (ended) and the `moov` durations are patched.
//!
//! Running it again on a recovered (or cleanly finished) recording changes nothing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::index::{encode_index, IndexFile, IndexRecord};
use super::layout::{
    parse_chain, replace_file, segment_of_dir, FileOpError, CHAIN_FILE, DEFAULT_MAX_FRAGMENT,
    INDEX_FILE, MP4_FILE, PLAYLIST_FILE,
};
use super::playlist;
use crate::media::mp4::{self, FileScan, ReadError, TornTail};

#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} cannot be recovered: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
}

impl From<FileOpError> for RecoveryError {
    fn from(e: FileOpError) -> Self {
        RecoveryError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RecoveryError + 'a {
    move |source| RecoveryError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn format_err(path: &Path) -> impl FnOnce(ReadError) -> RecoveryError + '_ {
    move |source| match source {
        ReadError::Io(source) => RecoveryError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        },
        source => RecoveryError::Format {
            path: path.to_owned(),
            source,
        },
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub dir: PathBuf,
    /// Whole fragments kept in the recording file.
    pub fragments: usize,
    /// Why the file had a torn tail, if it had one.
    pub torn: Option<TornTail>,
    /// Whole fragments cut off because the next segment of the chain holds them.
    pub handed_over: usize,
    /// Bytes cut off the end of the recording file.
    pub truncated_bytes: u64,
    /// Readable records in the old index (`None`: missing or unreadable header).
    pub old_index_records: Option<usize>,
    /// Old records that did not survive: torn/damaged tail, or pointing at data that
    /// was cut off or never written.
    pub index_records_dropped: usize,
    /// Records added that the old index lacked.
    pub index_records_added: usize,
    pub index_rewritten: bool,
    pub playlist_rewritten: bool,
    pub durations_patched: bool,
    /// The playlist was already ended: the recording had finished cleanly.
    pub was_finished: bool,
    pub media_duration_us: u64,
}

impl RecoveryReport {
    /// True when nothing had to be changed.
    pub fn was_clean(&self) -> bool {
        self.truncated_bytes == 0
            && !self.index_rewritten
            && !self.playlist_rewritten
            && !self.durations_patched
    }
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "recording {}", self.dir.display())?;
        if self.was_clean() {
            writeln!(f, "  nothing to repair")?;
        }
        writeln!(
            f,
            "  {} whole fragments, {:.3} s of media",
            self.fragments,
            self.media_duration_us as f64 / 1e6
        )?;
        if let Some(torn) = &self.torn {
            writeln!(
                f,
                "  torn tail: {torn:?}; {} bytes cut off",
                self.truncated_bytes
            )?;
        }
        if self.handed_over > 0 {
            writeln!(
                f,
                "  {} fragments cut off: the next segment holds them",
                self.handed_over
            )?;
        }
        match self.old_index_records {
            Some(n) => writeln!(f, "  old index: {n} readable records")?,
            None => writeln!(f, "  old index: missing or unreadable")?,
        }
        if self.index_rewritten {
            writeln!(
                f,
                "  index rebuilt from the file: {} records dropped, {} added",
                self.index_records_dropped, self.index_records_added
            )?;
        }
        if self.playlist_rewritten {
            writeln!(f, "  playlist regenerated")?;
        }
        if self.durations_patched {
            writeln!(f, "  durations in the file header patched")?;
        }
        write!(
            f,
            "  {}",
            if self.was_finished {
                "had been finished cleanly"
            } else {
                "had not been finished (now closed)"
            }
        )
    }
}

fn scan_file(file: &mut File, path: &Path) -> Result<FileScan, RecoveryError> {
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    mp4::scan(file, len).map_err(format_err(path))
}

/// The index records of the whole fragments of `path`, the MP4 of `segment`.
fn records_of(
    scan: &FileScan,
    path: &Path,
    segment: u16,
) -> Result<Vec<IndexRecord>, RecoveryError> {
    scan.fragments
        .iter()
        .map(|f| {
            IndexRecord::derive(&scan.init, &f.moof, f.offset, f.len)
                .map(|r| IndexRecord { segment, ..r })
        })
        .collect::<Result<_, _>>()
        .map_err(format_err(path))
}

/// The index records for the whole fragments of an MP4 (a torn tail is ignored);
/// the segment number comes from the name of its directory.
pub fn index_from_file(mp4: &Path) -> Result<Vec<IndexRecord>, RecoveryError> {
    let mut file = File::open(mp4).map_err(io_err("open", mp4))?;
    let scan = scan_file(&mut file, mp4)?;
    let segment = mp4.parent().map_or(0, segment_of_dir);
    records_of(&scan, mp4, segment)
}

/// Where the media of the later segments of the chain in `dir` begins: the first
/// whole fragment any later segment holds. A later segment that is empty or cannot
/// be read is passed over: what no readable segment holds is never cut. `None` for
/// a recording of one segment, or the last one.
fn later_segments_start(dir: &Path, segment: u16) -> Option<u64> {
    let text = fs::read_to_string(dir.join(CHAIN_FILE)).ok()?;
    let chain = parse_chain(&text)
        .inspect_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "chain unreadable"))
        .ok()?;
    chain
        .iter()
        .filter(|e| e.segment > segment)
        .find_map(|e| match index_from_file(&e.dir.join(MP4_FILE)) {
            Ok(records) => records.first().map(|r| r.start_us),
            Err(error) => {
                tracing::warn!(dir = %e.dir.display(), %error, "later segment unreadable: nothing cut for it");
                None
            }
        })
}

/// Recovers one recording directory (see the module docs).
pub fn recover(dir: &Path) -> Result<RecoveryReport, RecoveryError> {
    let mp4_path = dir.join(MP4_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&mp4_path)
        .map_err(io_err("open", &mp4_path))?;
    let mut scan = scan_file(&mut file, &mp4_path)?;
    let segment = segment_of_dir(dir);
    let mut records = records_of(&scan, &mp4_path, segment)?;
    // A fragment whose write was reported failed went on in the next segment, but
    // the failing disk may have kept it after all; a resumed recording replays its
    // last group of pictures into the next segment: the later copy counts.
    let handed_over = later_segments_start(dir, segment)
        .and_then(|next| records.iter().position(|r| r.start_us >= next))
        .map_or(0, |k| {
            scan.valid_len = records[k].offset;
            scan.fragments.truncate(k);
            records.drain(k..).count()
        });
    let truncated_bytes = scan.file_len - scan.valid_len;
    if truncated_bytes > 0 {
        tracing::warn!(path = %mp4_path.display(), torn = ?scan.torn, handed_over, truncated_bytes, "cutting the tail");
        file.set_len(scan.valid_len)
            .map_err(io_err("truncate", &mp4_path))?;
        file.sync_all().map_err(io_err("sync", &mp4_path))?;
    }

    // The index.
    let index_path = dir.join(INDEX_FILE);
    let old = match IndexFile::open(&index_path).and_then(|mut f| f.read_all()) {
        Ok(contents) => Some(contents.records),
        Err(e) => {
            tracing::warn!(path = %index_path.display(), error = %e, "index unreadable, rebuilding");
            None
        }
    };
    let old_records = old.as_deref().unwrap_or(&[]);
    let kept = old_records
        .iter()
        .zip(&records)
        .take_while(|(a, b)| a == b)
        .count();
    let new_index = encode_index(&records);
    let index_rewritten = fs::read(&index_path).map_or(true, |bytes| bytes != new_index);
    if index_rewritten {
        replace_file(dir, INDEX_FILE, &new_index)?;
    }

    // Durations in moov.
    let track_ends = scan.track_ends();
    let mut durations_patched = false;
    for (at, bytes) in mp4::duration_patches(&scan.init, &track_ends) {
        let mut current = [0; 8];
        file.read_exact_at(&mut current, at)
            .map_err(io_err("read", &mp4_path))?;
        if current != bytes {
            file.write_all_at(&bytes, at)
                .map_err(io_err("write", &mp4_path))?;
            durations_patched = true;
        }
    }
    if durations_patched {
        file.sync_data().map_err(io_err("sync", &mp4_path))?;
    }

    // The playlist: keep its target duration unless a fragment needs more.
    let playlist_path = dir.join(PLAYLIST_FILE);
    let old_playlist = fs::read_to_string(&playlist_path).ok();
    let was_finished = old_playlist.as_deref().is_some_and(playlist::is_ended);
    let target = old_playlist
        .as_deref()
        .and_then(playlist::parse_target_duration)
        .unwrap_or_else(|| playlist::target_duration_secs(DEFAULT_MAX_FRAGMENT))
        .max(playlist::covering_target_duration(&records));
    let text = playlist::playlist(target, scan.init.len, &records, true);
    let playlist_rewritten = old_playlist.as_deref() != Some(text.as_str());
    if playlist_rewritten {
        replace_file(dir, PLAYLIST_FILE, text.as_bytes())?;
    }

    let report = RecoveryReport {
        dir: dir.to_owned(),
        fragments: records.len(),
        torn: scan.torn,
        handed_over,
        truncated_bytes,
        old_index_records: old.as_ref().map(Vec::len),
        index_records_dropped: old_records.len() - kept,
        index_records_added: records.len() - kept,
        index_rewritten,
        playlist_rewritten,
        durations_patched,
        was_finished,
        media_duration_us: mp4::movie_duration_us(&scan.init, &track_ends),
    };
    if report.was_clean() {
        tracing::debug!(dir = %dir.display(), "recording is clean");
    } else {
        tracing::info!(?report, "recording recovered");
    }
    Ok(report)
}

/// Recording directories under `<storage_root>/<room>/` that were not finished
/// cleanly: they hold a recording file but their playlist is missing or not ended.
pub fn find_unfinished(storage_root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for room in read_dirs(storage_root) {
        for dir in read_dirs(&room) {
            if !dir.join(MP4_FILE).is_file() {
                continue;
            }
            let ended =
                fs::read_to_string(dir.join(PLAYLIST_FILE)).is_ok_and(|t| playlist::is_ended(&t));
            if !ended {
                found.push(dir);
            }
        }
    }
    found.sort();
    found
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list directory");
            Vec::new()
        }
    }
}
