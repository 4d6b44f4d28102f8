//! The IO shell that writes one recording as one or more segments. A segment is one
//! directory with `recording.mp4` (with its own init segment), `recording.idx` and
//! `recording.m3u8`; segment 0 is `<root>/<room>/<UTC start>-<id>/`, segment n is
//! `<root>/<room>/<UTC start>-<id>.seg<n>/`, where root is the primary storage or the
//! spool. A recording gets a new segment when the service fails over to the spool or
//! moves back ([`RecordingWriter::fail_over`], [`RecordingWriter::move_back`]), and
//! when a recording is continued after its link broke or the recorder restarted
//! ([`RecordingWriter::resume`], see [`super::resume`]); every segment directory then
//! holds a `recording.chain` listing all of them.
//!
//! Durability order per fragment: the fragment is written and synced, then its index
//! record is written and synced, then the playlist line is appended. So the index
//! never points past durable media, and a crash leaves at most a torn tail that
//! recovery cuts off. The playlist is derived data (recovery regenerates it), so it
//! is synced only when the segment is closed.
//!
//! A fragment whose write fails stays queued with the step it reached, and the next
//! call retries it at the same file offsets (positional writes), so a transient error
//! loses nothing and a partial write is overwritten. Fragments are self-contained
//! (`default-base-is-moof`, absolute `tfdt`), so a queued fragment moves to another
//! segment byte for byte; only its offset and segment number change.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use super::fragmenter::{Fragment, FragmentError, Fragmenter};
use super::index::{IndexHeader, IndexRecord, HEADER_SIZE, RECORD_SIZE};
use super::integrity;
use super::layout::{
    encode_chain, remove_dir_synced, replace_file, segment_dir_name, segment_suffix, utc_stamp,
    ChainEntry, FileOpError, SegmentInfo, SegmentState, Target, CHAIN_FILE, DEFAULT_MAX_FRAGMENT,
    INDEX_FILE, MP4_FILE, PLAYLIST_FILE,
};
use super::monitor::WatchedFile;
use super::playlist;
use super::recovery;
use super::resume::{self, track_slot, Existing, ResumeError, Tail};
use crate::link::frame::{FaultTarget, Media, RecordingId, StartParams, Summary};
use crate::media::mp4::{self, InitInfo, MoofInfo, ReadError};
use crate::path_component::{self, UnsafeName};

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
    /// Fragments were dropped to stay within `max_queued_bytes` because `source`
    /// keeps them from being written.
    #[error("{dropped} (queue full); {source}")]
    Dropped {
        dropped: DropCounts,
        #[source]
        source: Box<WriteError>,
    },
    #[error("media rejected: {0}")]
    Media(#[from] FragmentError),
    #[error(transparent)]
    InvalidName(#[from] UnsafeName),
    #[error("own init segment does not parse: {0}")]
    Format(#[from] ReadError),
    #[error("a recording cannot have more than {} segments", u16::MAX)]
    TooManySegments,
    #[error("cannot continue the recording: {0}")]
    Resume(#[from] ResumeError),
}

impl WriteError {
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            WriteError::Io { source, .. } => Some(source),
            WriteError::Dropped { source, .. } => source.io_error(),
            _ => None,
        }
    }

    pub(crate) fn target(&self) -> Option<Target> {
        match self {
            WriteError::Io { target, .. } => Some(*target),
            WriteError::Dropped { source, .. } => source.target(),
            _ => None,
        }
    }

    /// What was dropped, if this error is (or wraps) a drop.
    pub fn dropped(&self) -> Option<DropCounts> {
        match self {
            WriteError::Dropped { dropped, .. } => Some(*dropped),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Longest fragment when keyframes are further apart.
    pub max_fragment: Duration,
    /// Fragments held in memory while no storage takes them; beyond this the oldest
    /// are dropped and counted.
    pub max_queued_bytes: u64,
    /// Most bytes (media and index) one recording may put on the spool.
    pub spool_max_bytes: u64,
    /// Shortest stay on the spool after a failover before moving back to a primary
    /// that is healthy again; doubled (up to a minute) while the primary keeps
    /// failing before it took a fragment, so a flapping disk is not chased.
    pub min_spool_stay: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_fragment: DEFAULT_MAX_FRAGMENT,
            max_queued_bytes: 64 << 20,
            spool_max_bytes: 1 << 30,
            min_spool_stay: Duration::from_secs(1),
        }
    }
}

/// Media dropped because it could not be written anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    pub fragments: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
}

impl DropCounts {
    fn add(&mut self, other: DropCounts) {
        self.fragments += other.fragments;
        self.video_frames += other.video_frames;
        self.audio_frames += other.audio_frames;
        self.bytes += other.bytes;
    }
}

impl fmt::Display for DropCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dropped {} fragments ({} video frames, {} audio frames, {} bytes)",
            self.fragments, self.video_frames, self.audio_frames, self.bytes
        )
    }
}

/// What one `push` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushOutcome {
    /// The index record of the last fragment that became durable in this call.
    pub durable: Option<IndexRecord>,
    /// Fragments dropped in this call to bound memory (never silently: the service
    /// reports them). With an error, see [`WriteError::Dropped`] instead.
    pub dropped: Option<DropCounts>,
}

/// A segment change made by [`RecordingWriter::fail_over`] or
/// [`RecordingWriter::move_back`].
#[derive(Debug)]
pub struct SegmentSwitch {
    pub from: PathBuf,
    pub to: PathBuf,
    pub segment: u16,
    /// Queued fragments that went to the new segment instead of the old one.
    pub moved_fragments: usize,
    /// The switch happened, but writing into the new segment failed (its chain file
    /// or a moved fragment): the fragments stay queued there and are retried.
    pub error: Option<WriteError>,
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

fn chain_entries(segments: &[SegmentInfo]) -> Vec<ChainEntry> {
    segments
        .iter()
        .map(|s| ChainEntry {
            segment: s.segment,
            first_us: s.first_us,
            state: s.state,
            dir: s.dir.clone(),
        })
        .collect()
}

/// Removes a segment directory that holds no fragment (best effort: one left
/// behind is removed by recovery).
fn remove_segment_dir(dir: &Path) {
    match remove_dir_synced(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "segment without any fragment removed"),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "segment without any fragment not removed")
        }
    }
}

fn file_op_err(target: Target) -> impl FnOnce(FileOpError) -> WriteError {
    move |e| WriteError::Io {
        target,
        op: e.op,
        path: e.path,
        source: e.source,
    }
}

/// The files of one segment and the fragments not yet durable in it.
struct Segment {
    number: u16,
    root: PathBuf,
    dir: PathBuf,
    spool: bool,
    first_us: u64,
    /// Most bytes (mp4 + index) this segment may hold: the spool bound.
    budget: Option<u64>,
    mp4: File,
    index: File,
    playlist: File,
    /// The target duration the playlist declares, in seconds.
    playlist_target: u64,
    queue: VecDeque<Queued>,
    /// Bytes in the mp4 including queued fragments (where the next one goes).
    mp4_end: u64,
    /// Durable bytes of the mp4 and index.
    file_bytes: u64,
    index_bytes: u64,
    fragments: u32,
    track_ends: Vec<(u32, u64)>,
}

struct SegmentPlace<'a> {
    root: &'a Path,
    room: &'a str,
    name: String,
    number: u16,
    spool: bool,
    first_us: u64,
    budget: Option<u64>,
}

impl Segment {
    /// Creates the segment directory with the init segment, an index with just its
    /// header and a playlist with just its header, all synced. A directory left half
    /// made is removed (best effort), so recovery never meets it.
    fn create(
        place: SegmentPlace<'_>,
        init_bytes: &[u8],
        init: &InitInfo,
        opts: &WriterOptions,
    ) -> Result<Self, WriteError> {
        let room_dir = place.root.join(place.room);
        fs::create_dir_all(&room_dir).map_err(io_err(Target::Directory, "create", &room_dir))?;
        let dir = room_dir.join(&place.name);
        fs::create_dir(&dir).map_err(io_err(Target::Directory, "create", &dir))?;
        let playlist_target = playlist::target_duration_secs(opts.max_fragment);
        let files = (|| -> Result<(File, File, File), WriteError> {
            if let Some(budget) = place.budget {
                check_budget(
                    budget,
                    0,
                    init.len + HEADER_SIZE as u64,
                    &dir.join(MP4_FILE),
                )?;
            }
            let mp4 = create_file(&dir, MP4_FILE, Target::File, init_bytes)?;
            let index = create_file(
                &dir,
                INDEX_FILE,
                Target::Index,
                &IndexHeader::default().encode(),
            )?;
            let header = playlist::header(playlist_target, init.len);
            let playlist = create_file(&dir, PLAYLIST_FILE, Target::Playlist, header.as_bytes())?;
            sync_dir(&dir)?;
            sync_dir(&room_dir)?;
            Ok((mp4, index, playlist))
        })();
        let (mp4, index, playlist) = files.inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })?;
        tracing::info!(dir = %dir.display(), segment = place.number, "recording segment created");
        Ok(Self {
            number: place.number,
            root: place.root.to_owned(),
            dir,
            spool: place.spool,
            first_us: place.first_us,
            budget: place.budget,
            mp4,
            index,
            playlist,
            playlist_target,
            queue: VecDeque::new(),
            mp4_end: init.len,
            file_bytes: init.len,
            index_bytes: HEADER_SIZE as u64,
            fragments: 0,
            track_ends: Vec::new(),
        })
    }

    fn info(&self, init: &InitInfo, state: SegmentState) -> SegmentInfo {
        SegmentInfo {
            segment: self.number,
            dir: self.dir.clone(),
            spool: self.spool,
            first_us: self.first_us,
            state,
            fragments: self.fragments,
            file_bytes: self.file_bytes,
            index_bytes: self.index_bytes,
            media_end_us: mp4::movie_duration_us(init, &self.track_ends),
        }
    }

    /// Queues a fragment at the end of the file; every field of its record but the
    /// position is derived from the bytes exactly as recovery derives it.
    fn enqueue(
        &mut self,
        init: &InitInfo,
        bytes: Vec<u8>,
        moof: MoofInfo,
    ) -> Result<(), WriteError> {
        let mut record = IndexRecord::derive(init, &moof, self.mp4_end, bytes.len() as u64)?;
        record.segment = self.number;
        record.checksum = Some(integrity::checksum(&bytes));
        self.mp4_end += bytes.len() as u64;
        self.queue.push_back(Queued {
            bytes,
            record,
            moof,
            next: Step::Mp4,
        });
        Ok(())
    }

    /// Lays the fragments not yet in the file out again from its durable end, after
    /// some were taken away or when they came from another segment. Only the offset
    /// and the segment number of a record depend on where a fragment is stored.
    fn relocate(&mut self) {
        self.mp4_end = self.file_bytes;
        for q in self.queue.iter_mut().filter(|q| q.next == Step::Mp4) {
            q.record.offset = self.mp4_end;
            q.record.segment = self.number;
            self.mp4_end += q.bytes.len() as u64;
        }
    }

    /// Bytes of the queued fragments whose media is not durable yet.
    fn pending_bytes(&self) -> u64 {
        self.queue
            .iter()
            .filter(|q| q.next == Step::Mp4)
            .map(|q| q.bytes.len() as u64)
            .sum()
    }

    /// Writes the queued fragments in order; stops at the first error, leaving that
    /// fragment queued with the step it reached.
    fn drain(&mut self) -> Result<Option<IndexRecord>, WriteError> {
        let mut last = None;
        while let Some(q) = self.queue.front_mut() {
            if q.next == Step::Mp4 {
                let path = self.dir.join(MP4_FILE);
                if let Some(budget) = self.budget {
                    let adding = (q.bytes.len() + RECORD_SIZE) as u64;
                    check_budget(budget, self.file_bytes + self.index_bytes, adding, &path)?;
                }
                self.mp4
                    .write_all_at(&q.bytes, q.record.offset)
                    .map_err(io_err(Target::File, "write", &path))?;
                self.mp4
                    .sync_data()
                    .map_err(io_err(Target::File, "sync", &path))?;
                self.file_bytes = q.record.offset + q.bytes.len() as u64;
                // Counted once the media is durable: recovery indexes it even if its
                // record never gets written here.
                self.fragments += 1;
                mp4::extend_track_ends(&mut self.track_ends, &q.moof);
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
                q.next = Step::Playlist;
            }
            let record = q.record;
            self.append_to_playlist(&record)?;
            tracing::debug!(?record, "fragment written");
            last = Some(record);
            self.queue.pop_front();
        }
        Ok(last)
    }

    /// Appends a fragment's line to the playlist. A fragment longer than the target
    /// duration the playlist declares (media missing inside it, as after a broken
    /// link) would make the playlist invalid, so it is written again with a target
    /// that covers the fragment.
    fn append_to_playlist(&mut self, record: &IndexRecord) -> Result<(), WriteError> {
        let path = self.dir.join(PLAYLIST_FILE);
        let entry = playlist::entry(record);
        let needed = playlist::covering_target_duration(std::slice::from_ref(record));
        if needed <= self.playlist_target {
            return self.playlist.write_all(entry.as_bytes()).map_err(io_err(
                Target::Playlist,
                "write",
                &path,
            ));
        }
        let text = fs::read_to_string(&path).map_err(io_err(Target::Playlist, "read", &path))?;
        let text = playlist::retarget(&text, needed) + &entry;
        replace_file(&self.dir, PLAYLIST_FILE, text.as_bytes())
            .map_err(file_op_err(Target::Playlist))?;
        self.playlist = OpenOptions::new().append(true).open(&path).map_err(io_err(
            Target::Playlist,
            "open",
            &path,
        ))?;
        tracing::debug!(target_duration = needed, "playlist target duration raised");
        self.playlist_target = needed;
        Ok(())
    }

    /// Writes what is queued, cuts anything after the durable end (a failed partial
    /// write), patches the durations in `moov` and ends the playlist.
    fn close(&mut self, init: &InitInfo) -> Result<(), WriteError> {
        self.drain()?;
        let path = self.dir.join(MP4_FILE);
        self.mp4
            .set_len(self.file_bytes)
            .map_err(io_err(Target::File, "truncate", &path))?;
        for (at, bytes) in mp4::duration_patches(init, &self.track_ends) {
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
            .map_err(io_err(Target::Playlist, "sync", &path))
    }
}

/// The spool bound: refuses a write as if the disk were full, so it is classified
/// like one.
fn check_budget(budget: u64, used: u64, adding: u64, path: &Path) -> Result<(), WriteError> {
    if used + adding <= budget {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), budget, used, adding, "spool bound reached");
    Err(io_err(Target::File, "write", path)(
        io::Error::from_raw_os_error(libc::ENOSPC),
    ))
}

pub struct RecordingWriter {
    recording: RecordingId,
    room: String,
    /// Directory name of segment 0: `<UTC start>-<recording id>`.
    base_name: String,
    started_at: SystemTime,
    opts: WriterOptions,
    fragmenter: Fragmenter,
    init: InitInfo,
    /// The init segment of the segments after the first (no Opus pre-skip).
    init_bytes: Vec<u8>,
    current: Segment,
    /// Earlier segments, in order.
    closed: Vec<SegmentInfo>,
    dropped: DropCounts,
    /// End of the last fragment the fragmenter produced.
    last_end_us: u64,
    /// Last dts per track (video, audio) the recording held when it was resumed:
    /// replayed media up to it is skipped.
    held_until: [Option<i64>; 2],
    /// Replayed media skipped since media was last taken.
    skipped: u64,
    /// The earlier segment whose tail the recording continues with: cut once that
    /// tail is durable in a later segment.
    superseded: Option<u16>,
}

/// Where a recording's first new segment comes from.
struct Origin<'a> {
    base_name: String,
    started_at: SystemTime,
    /// Segments of the recording that exist already.
    earlier: Vec<SegmentInfo>,
    tail: &'a Tail,
}

impl RecordingWriter {
    /// Creates segment 0, `<root>/<room>/<UTC start>-<recording id>/`, on the
    /// primary storage.
    pub fn create(
        root: &Path,
        start: &StartParams,
        started_at: SystemTime,
        opts: WriterOptions,
    ) -> Result<Self, WriteError> {
        Self::create_in(root, false, start, started_at, opts)
    }

    /// Creates segment 0 on the spool, for a recording that starts while the
    /// primary storage is faulted; [`RecordingWriter::move_back`] moves it later.
    pub(crate) fn create_on_spool(
        spool: &Path,
        start: &StartParams,
        started_at: SystemTime,
        opts: WriterOptions,
    ) -> Result<Self, WriteError> {
        Self::create_in(spool, true, start, started_at, opts)
    }

    fn create_in(
        root: &Path,
        spool: bool,
        start: &StartParams,
        started_at: SystemTime,
        opts: WriterOptions,
    ) -> Result<Self, WriteError> {
        let origin = Origin {
            base_name: format!("{}-{}", utc_stamp(started_at), start.recording),
            started_at,
            earlier: Vec::new(),
            tail: &Tail::default(),
        };
        Self::open(root, spool, start, opts, origin)
    }

    /// Continues `existing` (see [`super::resume`]) in a new segment under `root`
    /// (the spool if `spool`): the segment after the existing ones, starting with
    /// the existing recording's tail, chained after them.
    pub(crate) fn resume(
        root: &Path,
        spool: bool,
        start: &StartParams,
        existing: &Existing,
        opts: WriterOptions,
    ) -> Result<Self, WriteError> {
        let origin = Origin {
            base_name: existing.base_name.clone(),
            started_at: existing.started_at,
            earlier: existing.segments.clone(),
            tail: &existing.tail,
        };
        Self::open(root, spool, start, opts, origin)
    }

    fn open(
        root: &Path,
        spool: bool,
        start: &StartParams,
        opts: WriterOptions,
        origin: Origin<'_>,
    ) -> Result<Self, WriteError> {
        path_component::check("room", &start.room)?;
        path_component::check("recording id", &start.recording)?;
        if segment_suffix(&start.recording).is_some() {
            return Err(WriteError::InvalidName(UnsafeName {
                what: "recording id",
                value: start.recording.to_string(),
                reason: "ends like a segment directory (.seg<n>)",
            }));
        }
        let Origin {
            base_name,
            started_at,
            earlier,
            tail,
        } = origin;
        let mut fragmenter = Fragmenter::new(start, opts.max_fragment)?;
        fragmenter.number_from(tail.sequence);
        let first_init = fragmenter.init_segment();
        let init = mp4::read_init(&mut Cursor::new(&first_init), first_init.len() as u64)?;
        // Only segment 0 holds the encoder's warm-up (the Opus pre-skip).
        let init_bytes = mp4::continuation_init(&first_init)?;
        // Through the fragmenter before any file is made, so a refusal leaves none.
        let mut carried = Vec::new();
        for m in &tail.media {
            carried.extend(fragmenter.push(m)?);
        }
        let number = match earlier.iter().map(|s| s.segment).max() {
            Some(n) => n.checked_add(1).ok_or(WriteError::TooManySegments)?,
            None => 0,
        };
        let spool_used: u64 = earlier
            .iter()
            .filter(|s| s.spool)
            .map(|s| s.file_bytes + s.index_bytes)
            .sum();
        let current = Segment::create(
            SegmentPlace {
                root,
                room: &start.room,
                name: segment_dir_name(&base_name, number),
                number,
                spool,
                first_us: tail.start_us,
                budget: spool.then(|| opts.spool_max_bytes.saturating_sub(spool_used)),
            },
            if number == 0 {
                &first_init
            } else {
                &init_bytes
            },
            &init,
            &opts,
        )?;
        let mut w = Self {
            recording: start.recording.clone(),
            room: start.room.to_string(),
            base_name,
            started_at,
            opts,
            fragmenter,
            init,
            init_bytes,
            current,
            closed: earlier,
            dropped: DropCounts::default(),
            last_end_us: tail.start_us,
            held_until: tail.last_dts,
            skipped: 0,
            superseded: tail.segment,
        };
        let linked = (|| {
            for f in carried {
                w.enqueue(f)?;
            }
            if w.closed.is_empty() {
                return Ok(());
            }
            w.write_chain(&w.segments())
        })();
        if let Err(e) = linked {
            // Unlinked, it would be a stray segment: gone, it is simply not made yet.
            let _ = fs::remove_dir_all(w.dir());
            return Err(e);
        }
        if let Some(dir) = w.superseded_dir() {
            if let Err(e) = resume::reopen(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "earlier segment not marked unfinished; a crash before its tail is cut would leave that tail twice");
            }
        }
        Ok(w)
    }

    /// Wall-clock start of the recording (of its first segment, when resumed).
    pub(crate) fn started_at(&self) -> SystemTime {
        self.started_at
    }

    fn superseded_dir(&self) -> Option<&Path> {
        let n = self.superseded?;
        self.closed
            .iter()
            .find(|s| s.segment == n)
            .map(|s| s.dir.as_path())
    }

    /// Cuts the tail this recording carried over off the earlier segment that held
    /// it, once a fragment of it is durable here (see [`super::resume`]).
    fn cut_superseded(&mut self) {
        let Some(n) = self.superseded.take() else {
            return;
        };
        let Some(info) = self.closed.iter_mut().find(|s| s.segment == n) else {
            return;
        };
        match recovery::recover(&info.dir) {
            Ok(report) => {
                tracing::info!(dir = %info.dir.display(), cut = report.handed_over, "earlier segment cut before the tail the recording continues with");
            }
            Err(e) => {
                tracing::warn!(dir = %info.dir.display(), error = %e, "earlier segment not cut; recovery cuts it at the next start");
            }
        }
        let entry = ChainEntry {
            segment: info.segment,
            first_us: info.first_us,
            state: info.state,
            dir: info.dir.clone(),
        };
        *info = resume::read_segment(&entry, info.spool);
    }

    /// Directory of the current segment.
    pub fn dir(&self) -> &Path {
        &self.current.dir
    }

    /// Storage root of the current segment (the primary root or the spool root).
    pub fn location(&self) -> &Path {
        &self.current.root
    }

    /// The current segment is on the spool.
    pub(crate) fn on_spool(&self) -> bool {
        self.current.spool
    }

    /// Number of the current segment.
    pub fn segment(&self) -> u16 {
        self.current.number
    }

    /// The media file and the index of the current segment, for the storage
    /// monitor to check (descriptors of their own).
    pub(crate) fn watched_files(&self) -> io::Result<Vec<WatchedFile>> {
        let seg = &self.current;
        [
            (FaultTarget::File, MP4_FILE, &seg.mp4),
            (FaultTarget::Index, INDEX_FILE, &seg.index),
        ]
        .into_iter()
        .map(|(target, name, file)| {
            Ok(WatchedFile {
                target,
                path: seg.dir.join(name),
                file: file.try_clone()?,
            })
        })
        .collect()
    }

    /// All segments so far, in order; the last one is the current one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let mut all = self.closed.clone();
        all.push(self.current.info(&self.init, SegmentState::Open));
        all
    }

    /// Fragments queued in memory, not yet durable in the current segment.
    pub fn queued_fragments(&self) -> usize {
        self.current.queue.len()
    }

    /// Everything dropped so far to bound memory.
    pub fn dropped(&self) -> DropCounts {
        self.dropped
    }

    /// Adds one frame. A `Media` error means the frame was refused; an `Io` error
    /// means the frame was taken but a fragment is not durable yet: it stays queued
    /// and is retried on the next call (or moved by a segment switch). Queued
    /// fragments beyond `max_queued_bytes` are dropped oldest first and reported in
    /// the outcome, or by [`WriteError::Dropped`] wrapping the error.
    pub fn push(&mut self, media: &Media) -> Result<PushOutcome, WriteError> {
        if self.held_until[track_slot(media.track)].is_some_and(|last| media.dts <= last) {
            self.skipped += 1;
            return Ok(PushOutcome::default());
        }
        if self.skipped > 0 {
            tracing::info!(
                skipped = self.skipped,
                "replayed media the recording already holds was skipped"
            );
            self.skipped = 0;
        }
        let mut dropped = None;
        if let Some(fragment) = self.fragmenter.push(media)? {
            self.enqueue(fragment)?;
            dropped = self.bound_queue();
        }
        match self.current.drain() {
            Ok(durable) => {
                if durable.is_some() {
                    self.cut_superseded();
                }
                Ok(PushOutcome { durable, dropped })
            }
            Err(source) => Err(match dropped {
                Some(dropped) => WriteError::Dropped {
                    dropped,
                    source: Box::new(source),
                },
                None => source,
            }),
        }
    }

    /// Writes the last fragment and closes the current segment. The last fragment is
    /// queued even beyond `max_queued_bytes`: there is no later call to report a
    /// drop to, and the fragment is at most `max_fragment` long. After an error the
    /// fragments stay queued: switch segments and call `finish` again, or
    /// [`RecordingWriter::abandon`] them.
    pub fn finish(&mut self) -> Result<Summary, WriteError> {
        if let Some(fragment) = self.fragmenter.finish() {
            self.enqueue(fragment)?;
        }
        self.current.close(&self.init)?;
        self.cut_superseded();
        let mut segments = self.segments_with(SegmentState::Closed);
        if self.current.fragments == 0 {
            // An init segment alone is nothing a player opens (a recording stopped
            // before its first fragment): removed, as recovery removes it, rather
            // than left "finished cleanly".
            remove_segment_dir(&self.current.dir);
            segments.pop();
            if !segments.is_empty() {
                self.write_chain_into_earlier(&segments);
            }
        } else if segments.len() > 1 {
            if let Err(e) = self.write_chain(&segments) {
                // Only the states in the chain are stale; the media is complete.
                tracing::warn!(error = %e, "chain not updated at finish");
            }
        }
        let summary = Summary {
            recording: self.recording.clone(),
            fragments: segments.iter().map(|s| s.fragments).sum(),
            file_bytes: segments.iter().map(|s| s.file_bytes).sum(),
            index_bytes: segments.iter().map(|s| s.index_bytes).sum(),
            media_ms: segments.iter().map(|s| s.media_end_us).max().unwrap_or(0) / 1000,
        };
        tracing::info!(dir = %self.current.dir.display(), ?summary, "recording finished");
        Ok(summary)
    }

    /// Continues the recording in a new segment under `spool` (see
    /// [`RecordingWriter::switch_to`]).
    pub fn fail_over(&mut self, spool: &Path) -> Result<SegmentSwitch, WriteError> {
        self.switch_to(spool, true)
    }

    /// Continues the recording in a new segment under the `primary` root again.
    pub fn move_back(&mut self, primary: &Path) -> Result<SegmentSwitch, WriteError> {
        self.switch_to(primary, false)
    }

    /// Opens the next segment under `root` and moves there every queued fragment
    /// whose media is not durable in the current one; a fragment whose media is
    /// durable stays (its index and playlist lines are written when the old segment
    /// is closed, or rebuilt by recovery). The old segment is closed best effort.
    /// The fragmenter holds the open fragment in memory, so between two calls is
    /// always a fragment boundary: every frame lands in exactly one segment.
    /// An error means no switch happened.
    fn switch_to(&mut self, root: &Path, spool: bool) -> Result<SegmentSwitch, WriteError> {
        let number = self
            .current
            .number
            .checked_add(1)
            .ok_or(WriteError::TooManySegments)?;
        let first_us = self
            .current
            .queue
            .iter()
            .find(|q| q.next == Step::Mp4)
            .map_or(self.last_end_us, |q| q.record.start_us);
        let spool_used: u64 = self
            .segments()
            .iter()
            .filter(|s| s.spool)
            .map(|s| s.file_bytes + s.index_bytes)
            .sum();
        let next = Segment::create(
            SegmentPlace {
                root,
                room: &self.room,
                name: segment_dir_name(&self.base_name, number),
                number,
                spool,
                first_us,
                budget: spool.then(|| self.opts.spool_max_bytes.saturating_sub(spool_used)),
            },
            &self.init_bytes,
            &self.init,
            &self.opts,
        )?;
        let mut old = std::mem::replace(&mut self.current, next);

        // Only the front fragment can have got past the media step.
        let durable = old.queue.iter().take_while(|q| q.next > Step::Mp4).count();
        self.current.queue = old.queue.split_off(durable);
        self.current.relocate();
        let moved_fragments = self.current.queue.len();

        let state = match old.close(&self.init) {
            Ok(()) => SegmentState::Closed,
            Err(e) => {
                tracing::warn!(dir = %old.dir.display(), error = %e, "segment left unclosed; recovery will repair it");
                SegmentState::Unclosed
            }
        };
        self.closed.push(old.info(&self.init, state));

        let segments = self.segments();
        let mut error = self.write_chain(&segments).err();
        if let Err(e) = self.current.drain() {
            error.get_or_insert(e);
        }
        tracing::info!(
            from = %old.dir.display(),
            to = %self.current.dir.display(),
            segment = number,
            moved_fragments,
            "recording switched segment"
        );
        Ok(SegmentSwitch {
            from: old.dir,
            to: self.current.dir.clone(),
            segment: number,
            moved_fragments,
            error,
        })
    }

    fn segments_with(&self, current: SegmentState) -> Vec<SegmentInfo> {
        let mut all = self.segments();
        if let Some(last) = all.last_mut() {
            last.state = current;
        }
        all
    }

    /// Writes the chain into the current segment (the error is returned) and into
    /// every earlier one (best effort: their storage may be gone). An earlier segment
    /// without any fragment is not listed: no player opens an init segment alone
    /// (recovery removes its directory).
    fn write_chain(&self, segments: &[SegmentInfo]) -> Result<(), WriteError> {
        let text = self.write_chain_into_earlier(segments);
        replace_file(&self.current.dir, CHAIN_FILE, text.as_bytes())
            .map_err(file_op_err(Target::Chain))
    }

    /// The earlier segments' half of [`RecordingWriter::write_chain`]; returns the
    /// chain.
    fn write_chain_into_earlier(&self, segments: &[SegmentInfo]) -> String {
        let listed: Vec<SegmentInfo> = segments
            .iter()
            .filter(|s| s.fragments > 0 || s.segment == self.current.number)
            .cloned()
            .collect();
        let text = encode_chain(&chain_entries(&listed));
        for s in &self.closed {
            if let Err(e) = replace_file(&s.dir, CHAIN_FILE, text.as_bytes()) {
                tracing::debug!(error = %e, "chain not updated in an earlier segment");
            }
        }
        text
    }

    /// Durable bytes of the recording files over all segments.
    pub fn file_bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.file_bytes).sum::<u64>() + self.current.file_bytes
    }

    /// Durable bytes of the index files over all segments.
    pub fn index_bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.index_bytes).sum::<u64>() + self.current.index_bytes
    }

    fn enqueue(&mut self, fragment: Fragment) -> Result<(), WriteError> {
        let Fragment { bytes, .. } = fragment;
        let moof = match mp4::boxes(&bytes).next() {
            Some(Ok((_, body))) => mp4::parse_moof(body)?,
            _ => return Err(ReadError::Missing("moof").into()),
        };
        self.current.enqueue(&self.init, bytes, moof)?;
        if let Some(q) = self.current.queue.back() {
            self.last_end_us = q.record.end_us();
        }
        Ok(())
    }

    /// Drops the oldest fragments whose media is not durable while they take more
    /// than `max_queued_bytes`.
    fn bound_queue(&mut self) -> Option<DropCounts> {
        let mut dropped = DropCounts::default();
        while self.current.pending_bytes() > self.opts.max_queued_bytes {
            let Some(i) = self.current.queue.iter().position(|q| q.next == Step::Mp4) else {
                break;
            };
            let Some(q) = self.current.queue.remove(i) else {
                break;
            };
            dropped.add(self.count(&q));
        }
        if dropped.fragments == 0 {
            return None;
        }
        self.current.relocate();
        self.dropped.add(dropped);
        tracing::error!(dir = %self.current.dir.display(), %dropped, total = %self.dropped, "queue full: media dropped");
        Some(dropped)
    }

    /// Gives up on every queued fragment whose media is not durable (no storage
    /// takes them and the recording is over) and says what that was.
    pub(crate) fn abandon(&mut self) -> DropCounts {
        let mut dropped = DropCounts::default();
        let queue = std::mem::take(&mut self.current.queue);
        for q in queue {
            if q.next == Step::Mp4 {
                dropped.add(self.count(&q));
            } else {
                self.current.queue.push_back(q);
            }
        }
        self.current.relocate();
        self.dropped.add(dropped);
        if dropped.fragments > 0 {
            tracing::error!(dir = %self.current.dir.display(), %dropped, "recording abandoned with media unwritten");
        }
        dropped
    }

    fn count(&self, q: &Queued) -> DropCounts {
        let mut counts = DropCounts {
            fragments: 1,
            bytes: q.bytes.len() as u64,
            ..DropCounts::default()
        };
        for t in &q.moof.trafs {
            let frames = u64::from(t.sample_count);
            if self.init.is_video(t.track_id) {
                counts.video_frames += frames;
            } else {
                counts.audio_frames += frames;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
