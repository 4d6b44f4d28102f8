//! The IO shell that writes one recording directory: `recording.mp4`, `recording.idx`
//! and `recording.m3u8`.
//!
//! Durability order per fragment: the fragment is written and synced, then its index
//! record is written and synced, then the playlist line is appended. So the index
//! never points past durable media, and a crash leaves at most a torn tail that
//! recovery cuts off. The playlist is derived data (recovery regenerates it), so it
//! is synced only at finish.
//!
//! A fragment whose write fails stays queued with the step it reached, and the next
//! `push`/`finish` retries it at the same file offsets (positional writes), so a
//! transient error loses nothing and a partial write is overwritten.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::fragmenter::{Fragment, FragmentError, Fragmenter};
use super::index::{IndexHeader, IndexRecord, HEADER_SIZE, RECORD_SIZE};
use super::playlist;
use crate::link::frame::{FaultTarget, Media, RecordingId, StartParams, Summary};
use crate::media::mp4::{self, InitInfo, MoofInfo, ReadError};

pub const MP4_FILE: &str = "recording.mp4";
pub const INDEX_FILE: &str = "recording.idx";
pub const PLAYLIST_FILE: &str = "recording.m3u8";

/// Which part of the recording an IO error hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `recording.mp4`.
    File,
    /// `recording.idx`.
    Index,
    /// `recording.m3u8`.
    Playlist,
    /// The room or recording directory.
    Directory,
}

impl Target {
    /// The fault target reported over the link.
    pub fn fault_target(self) -> FaultTarget {
        match self {
            Target::File => FaultTarget::File,
            // The playlist is derived from the index.
            Target::Index | Target::Playlist => FaultTarget::Index,
            Target::Directory => FaultTarget::Storage,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::File => "recording file",
            Target::Index => "index file",
            Target::Playlist => "playlist",
            Target::Directory => "recording directory",
        })
    }
}

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("{op} {target} {}: {source}", path.display())]
    Io {
        target: Target,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("media rejected: {0}")]
    Media(#[from] FragmentError),
    #[error("{what} {value:?} cannot be used in a path: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("own init segment does not parse: {0}")]
    Format(#[from] ReadError),
}

impl WriteError {
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            WriteError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    pub fn target(&self) -> Option<Target> {
        match self {
            WriteError::Io { target, .. } => Some(*target),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Longest fragment when keyframes are further apart.
    pub max_fragment: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_fragment: Duration::from_secs(2),
        }
    }
}

/// Checks that a room name or recording id is safe as one path component.
pub fn validate_component(what: &'static str, value: &str) -> Result<(), WriteError> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value == "." || value == ".." {
        Some("'.' and '..' are not names")
    } else if value.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if value.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(WriteError::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `yyyymmddThhmmssZ` in UTC (times before 1970 are clamped to the epoch).
pub fn utc_stamp(t: SystemTime) -> String {
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

/// How far a queued fragment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Mp4,
    Index,
    Playlist,
}

struct Queued {
    bytes: Vec<u8>,
    record: IndexRecord,
    moof: MoofInfo,
    next: Step,
}

pub struct RecordingWriter {
    dir: PathBuf,
    recording: RecordingId,
    fragmenter: Fragmenter,
    init: InitInfo,
    mp4: File,
    index: File,
    playlist: File,
    queue: VecDeque<Queued>,
    /// Bytes in the mp4 including queued fragments (where the next one goes).
    mp4_end: u64,
    /// Durable bytes of the mp4 and index.
    file_bytes: u64,
    index_bytes: u64,
    fragments: u32,
    track_ends: Vec<(u32, u64)>,
}

fn io_err<'a>(
    target: Target,
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        target,
        op,
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(Target::Directory, "sync", dir))
}

fn create_file(
    dir: &Path,
    name: &str,
    target: Target,
    contents: &[u8],
) -> Result<File, WriteError> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(target, "create", &path))?;
    file.write_all(contents)
        .map_err(io_err(target, "write", &path))?;
    file.sync_all().map_err(io_err(target, "sync", &path))?;
    Ok(file)
}

impl RecordingWriter {
    /// Creates `<root>/<room>/<UTC start>-<recording id>/` with the init segment,
    /// an index with just its header and a playlist with just its header, all synced.
    pub fn create(
        root: &Path,
        start: &StartParams,
        started_at: SystemTime,
        opts: WriterOptions,
    ) -> Result<Self, WriteError> {
        validate_component("room", &start.room)?;
        validate_component("recording id", &start.recording)?;
        let fragmenter = Fragmenter::new(start, opts.max_fragment)?;
        let init_bytes = fragmenter.init_segment();
        let init = mp4::read_init(&mut Cursor::new(&init_bytes), init_bytes.len() as u64)?;

        let room_dir = root.join(start.room.as_str());
        fs::create_dir_all(&room_dir).map_err(io_err(Target::Directory, "create", &room_dir))?;
        let dir = room_dir.join(format!("{}-{}", utc_stamp(started_at), start.recording));
        fs::create_dir(&dir).map_err(io_err(Target::Directory, "create", &dir))?;

        let mp4 = create_file(&dir, MP4_FILE, Target::File, &init_bytes)?;
        let index = create_file(
            &dir,
            INDEX_FILE,
            Target::Index,
            &IndexHeader::default().encode(),
        )?;
        let header = playlist::header(playlist::target_duration_secs(opts.max_fragment), init.len);
        let playlist = create_file(&dir, PLAYLIST_FILE, Target::Playlist, header.as_bytes())?;
        sync_dir(&dir)?;
        sync_dir(&room_dir)?;
        tracing::info!(dir = %dir.display(), "recording created");

        Ok(Self {
            dir,
            recording: start.recording.clone(),
            fragmenter,
            mp4,
            index,
            playlist,
            queue: VecDeque::new(),
            mp4_end: init.len,
            file_bytes: init.len,
            index_bytes: HEADER_SIZE as u64,
            fragments: 0,
            track_ends: Vec::new(),
            init,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds one frame. Returns the index record of the fragment this frame closed
    /// once it is durable (the last one, if queued fragments were written too).
    /// A `Media` error means the frame was refused; an `Io` error means the frame
    /// was taken but a fragment is not durable yet: it is retried on the next call.
    pub fn push(&mut self, media: &Media) -> Result<Option<IndexRecord>, WriteError> {
        if let Some(fragment) = self.fragmenter.push(media)? {
            self.enqueue(fragment)?;
        }
        self.drain()
    }

    /// Writes the last fragment, patches the durations in `moov` and ends the playlist.
    pub fn finish(mut self) -> Result<Summary, WriteError> {
        if let Some(fragment) = self.fragmenter.finish() {
            self.enqueue(fragment)?;
        }
        self.drain()?;
        let path = self.dir.join(MP4_FILE);
        for (at, bytes) in mp4::duration_patches(&self.init, &self.track_ends) {
            self.mp4
                .write_all_at(&bytes, at)
                .map_err(io_err(Target::File, "write", &path))?;
        }
        self.mp4
            .sync_data()
            .map_err(io_err(Target::File, "sync", &path))?;
        let path = self.dir.join(PLAYLIST_FILE);
        self.playlist
            .write_all(playlist::END.as_bytes())
            .map_err(io_err(Target::Playlist, "write", &path))?;
        self.playlist
            .sync_data()
            .map_err(io_err(Target::Playlist, "sync", &path))?;
        let summary = Summary {
            recording: self.recording.clone(),
            fragments: self.fragments,
            file_bytes: self.file_bytes,
            index_bytes: self.index_bytes,
            media_ms: self.media_duration_us() / 1000,
        };
        tracing::info!(dir = %self.dir.display(), ?summary, "recording finished");
        Ok(summary)
    }

    /// Durable bytes of `recording.mp4`.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Durable bytes of `recording.idx`.
    pub fn index_bytes(&self) -> u64 {
        self.index_bytes
    }

    /// Fragments written and indexed.
    pub fn fragments(&self) -> u32 {
        self.fragments
    }

    /// Media time covered by the indexed fragments (longest track).
    pub fn media_duration_us(&self) -> u64 {
        mp4::movie_duration_us(&self.init, &self.track_ends)
    }

    fn enqueue(&mut self, fragment: Fragment) -> Result<(), WriteError> {
        let Fragment { bytes, .. } = fragment;
        let moof = match mp4::boxes(&bytes).next() {
            Some(Ok((_, body))) => mp4::parse_moof(body)?,
            _ => return Err(ReadError::Missing("moof").into()),
        };
        // Derived from the bytes exactly as recovery derives it from the file.
        let record = IndexRecord::derive(&self.init, &moof, self.mp4_end, bytes.len() as u64)?;
        self.mp4_end += bytes.len() as u64;
        self.queue.push_back(Queued {
            bytes,
            record,
            moof,
            next: Step::Mp4,
        });
        Ok(())
    }

    fn drain(&mut self) -> Result<Option<IndexRecord>, WriteError> {
        let mut last = None;
        while let Some(q) = self.queue.front_mut() {
            if q.next == Step::Mp4 {
                let path = self.dir.join(MP4_FILE);
                self.mp4
                    .write_all_at(&q.bytes, q.record.offset)
                    .map_err(io_err(Target::File, "write", &path))?;
                self.mp4
                    .sync_data()
                    .map_err(io_err(Target::File, "sync", &path))?;
                self.file_bytes = q.record.offset + q.bytes.len() as u64;
                q.next = Step::Index;
            }
            if q.next == Step::Index {
                let path = self.dir.join(INDEX_FILE);
                let at = self.index_bytes;
                self.index
                    .write_all_at(&q.record.encode(), at)
                    .map_err(io_err(Target::Index, "write", &path))?;
                self.index
                    .sync_data()
                    .map_err(io_err(Target::Index, "sync", &path))?;
                self.index_bytes += RECORD_SIZE as u64;
                self.fragments += 1;
                mp4::extend_track_ends(&mut self.track_ends, &q.moof);
                q.next = Step::Playlist;
            }
            let path = self.dir.join(PLAYLIST_FILE);
            self.playlist
                .write_all(playlist::entry(&q.record).as_bytes())
                .map_err(io_err(Target::Playlist, "write", &path))?;
            tracing::debug!(record = ?q.record, "fragment written");
            last = Some(q.record);
            self.queue.pop_front();
        }
        Ok(last)
    }
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
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", "x\u{7f}"] {
            assert!(
                matches!(
                    validate_component("room", bad),
                    Err(WriteError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        for good in ["room-1", "Salle Ä", "a..b", ".hidden"] {
            validate_component("room", good).unwrap();
        }
    }

    #[test]
    fn error_exposes_target_and_io_error() {
        let e = io_err(Target::Index, "sync", Path::new("/x/recording.idx"))(
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(e.target(), Some(Target::Index));
        assert_eq!(
            e.io_error().and_then(io::Error::raw_os_error),
            Some(libc::ENOSPC)
        );
        assert!(
            e.to_string()
                .starts_with("sync index file /x/recording.idx: "),
            "{e}"
        );
        assert_eq!(Target::Playlist.fault_target(), FaultTarget::Index);
    }
}
