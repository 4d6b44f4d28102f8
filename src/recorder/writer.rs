//! The writer thread of one recording: feeds the media to a [`RecordingWriter`],
//! tells the storage monitor what every write of the primary did, fails over to the
//! spool while the primary is faulted and moves back when it is healthy, and turns
//! each of these steps into frames for the link. Nothing is dropped without a
//! `MediaDropped` fault that says what.
//!
//! A recording whose room and id exist already is continued ([`super::resume`]);
//! its writer first waits for the writer of the previous session of that recording
//! to be done with it ([`Writers`]).
//!
//! Files are written on a plain thread, not on the async runtime: an fsync can take
//! long on a failing disk, and the session must keep reading and answering meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::fragmenter::FragmentError;
use super::monitor::{FileWatch, StorageMonitor};
use super::recording::{RecordingWriter, WriteError, WriterOptions};
use super::resume::{self, Plan};
use crate::link::frame::{
    now_millis, text, Fault, FaultKind, FaultTarget, Frame, Media, StartParams, Track,
};
use crate::storage::errno;
use crate::storage::health::Observation;

/// Wait after a failed attempt to create a segment.
const RETRY: Duration = Duration::from_secs(1);
/// Longest stay on the spool, however often the primary failed right after a move back.
const MAX_STAY: Duration = Duration::from_secs(60);

/// Where recordings go.
pub struct Storage {
    pub primary: PathBuf,
    /// Where recordings continue while the primary is faulted.
    pub spool: Option<PathBuf>,
    /// Watches the primary.
    pub monitor: StorageMonitor,
    pub writers: Writers,
}

/// The recordings being written, by room and recording id. A session that
/// continues a recording waits until the writer of the previous session is done
/// with it, and asks that writer to finish: its link may have died unnoticed
/// (no data, no error), so it would wait for media that never come.
#[derive(Debug, Default)]
pub struct Writers {
    active: Mutex<HashMap<RecordingKey, Holder>>,
    released: Condvar,
    next_claim: AtomicU64,
}

/// Room and recording id.
type RecordingKey = (String, String);

#[derive(Debug)]
struct Holder {
    claim: u64,
    /// Its queue, to ask it to finish.
    cmds: mpsc::WeakSender<WriterCmd>,
}

/// A writer's hold on its recording; released when dropped.
struct Claim<'a> {
    writers: &'a Writers,
    key: RecordingKey,
    id: u64,
}

impl Writers {
    /// Waits until no other writer holds the recording `key`, then holds it.
    fn claim(&self, key: RecordingKey, own: mpsc::WeakSender<WriterCmd>) -> Claim<'_> {
        let id = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut logged = false;
        while let Some(holder) = active.get(&key) {
            if let Some(holder) = holder.cmds.upgrade() {
                if !logged {
                    logged = true;
                    info!(room = %key.0, recording = %key.1, "waiting for the previous session's writer to finish the recording");
                }
                // Never waits for queue room while holding the lock, which the
                // holder needs to release; a Finish that found no room goes again.
                let _ = holder.try_send(WriterCmd::Finish);
            }
            active = self
                .released
                .wait_timeout(active, RETRY)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        active.insert(
            key.clone(),
            Holder {
                claim: id,
                cmds: own,
            },
        );
        Claim {
            writers: self,
            key,
            id,
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut active = self
            .writers
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if active.get(&self.key).is_some_and(|h| h.claim == self.id) {
            active.remove(&self.key);
        }
        self.writers.released.notify_all();
    }
}

/// What the session reads for `Stats` while the thread writes.
#[derive(Debug, Default)]
pub struct Progress {
    file_bytes: AtomicU64,
    index_bytes: AtomicU64,
    on_spool: AtomicBool,
}

impl Progress {
    /// Durable bytes of the recording files, all segments.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes.load(Ordering::Relaxed)
    }

    /// Durable bytes of the index files, all segments.
    pub fn index_bytes(&self) -> u64 {
        self.index_bytes.load(Ordering::Relaxed)
    }

    /// The recording is being written to the spool now.
    pub fn on_spool(&self) -> bool {
        self.on_spool.load(Ordering::Relaxed)
    }

    fn update(&self, w: &RecordingWriter) {
        self.file_bytes.store(w.file_bytes(), Ordering::Relaxed);
        self.index_bytes.store(w.index_bytes(), Ordering::Relaxed);
        self.on_spool.store(w.on_spool(), Ordering::Relaxed);
    }
}

pub enum WriterCmd {
    Media(Media),
    Finish,
}

pub enum WriterEvent {
    /// The recording's first segment of this session exists in `dir`; the
    /// recording started at `started_at` (earlier, when it is continued).
    Created {
        dir: PathBuf,
        started_at: SystemTime,
    },
    /// A frame for the link: faults, clears, `Stopped` (boxed: frames are large
    /// next to the other events).
    Send(Box<Frame>),
    /// The thread is done; every frame it had to send was sent before.
    Finished,
}

/// Frames that reached no storage because the recording could not be created.
#[derive(Debug, Default)]
struct Unwritten {
    video: u64,
    audio: u64,
    bytes: u64,
}

/// Runs one recording until `Finish` or until the session drops the queue; `own`
/// is the queue's sending side, by which a later session of the same recording can
/// ask this writer to finish.
pub fn write_recording(
    storage: Arc<Storage>,
    start: StartParams,
    opts: WriterOptions,
    progress: Arc<Progress>,
    cmds: mpsc::Receiver<WriterCmd>,
    own: mpsc::WeakSender<WriterCmd>,
    report: &mut dyn FnMut(WriterEvent),
) {
    let key = (start.room.to_string(), start.recording.to_string());
    let writers = storage.clone();
    let _claim = writers.writers.claim(key, own);
    RecordingThread {
        storage,
        start,
        opts,
        progress,
        report,
        spool_fault: None,
        retry_at: None,
        stay_until: Instant::now(),
        stay: opts.min_spool_stay,
        primary_wrote: true,
        created: false,
        unwritten: Unwritten::default(),
        refused: 0,
        watch: None,
    }
    .run(cmds);
}

struct RecordingThread<'a> {
    storage: Arc<Storage>,
    start: StartParams,
    opts: WriterOptions,
    progress: Arc<Progress>,
    report: &'a mut dyn FnMut(WriterEvent),
    /// A fault of the spool that was reported and has not cleared (the monitor
    /// watches only the primary).
    spool_fault: Option<(FaultKind, FaultTarget)>,
    /// No segment is created before this, after a failed attempt.
    retry_at: Option<Instant>,
    /// No move back to the primary before this.
    stay_until: Instant,
    stay: Duration,
    /// A fragment became durable on the primary since the last failover.
    primary_wrote: bool,
    created: bool,
    unwritten: Unwritten,
    refused: u64,
    /// The monitor checks the files of this segment of the primary.
    watch: Option<(u16, FileWatch)>,
}

impl RecordingThread<'_> {
    fn run(mut self, mut cmds: mpsc::Receiver<WriterCmd>) {
        let mut writer = self.create();
        // `None` also when the session vanished without Stop: close what we have.
        while let Some(WriterCmd::Media(media)) = cmds.blocking_recv() {
            if writer.is_none() && self.may_retry() {
                writer = self.create();
            }
            match writer.as_mut() {
                Some(w) => self.push(w, &media),
                None => self.unwritten(&media),
            }
        }
        if let Some(w) = writer.as_mut() {
            self.finish(w);
        }
        self.watch = None;
        self.report_unwritten();
        if self.refused > 1 {
            self.fault(
                FaultKind::MediaDropped,
                FaultTarget::File,
                &format!("{} media frames were refused in all", self.refused),
            );
        }
        (self.report)(WriterEvent::Finished);
    }

    /// Creates the first segment of this session, a new recording's or the next one
    /// of a recording continued, on the primary, or on the spool while the primary
    /// is faulted or refuses.
    fn create(&mut self) -> Option<RecordingWriter> {
        let storage = self.storage.clone();
        let roots: Vec<&Path> = std::iter::once(storage.primary.as_path())
            .chain(storage.spool.as_deref())
            .collect();
        let plan = resume::plan(&roots, &self.start, SystemTime::now());
        let (start, opts) = (self.start.clone(), self.opts);
        let open = |root: &Path, spool: bool| match &plan {
            Plan::Fresh { started_at } if spool => {
                RecordingWriter::create_on_spool(root, &start, *started_at, opts)
            }
            Plan::Fresh { started_at } => RecordingWriter::create(root, &start, *started_at, opts),
            Plan::Resume(existing) => RecordingWriter::resume(root, spool, &start, existing, opts),
        };
        if storage.monitor.is_usable() || storage.spool.is_none() {
            match open(&storage.primary, false) {
                Ok(w) => return Some(self.created(w)),
                Err(e) => self.write_failed(false, &e),
            }
        }
        if let Some(spool) = &storage.spool {
            match open(spool, true) {
                Ok(w) => {
                    self.failed_over(w.dir());
                    return Some(self.created(w));
                }
                Err(e) => self.write_failed(true, &e),
            }
        }
        self.retry_at = Some(Instant::now() + RETRY);
        None
    }

    fn created(&mut self, w: RecordingWriter) -> RecordingWriter {
        self.retry_at = None;
        self.created = true;
        (self.report)(WriterEvent::Created {
            dir: w.dir().to_path_buf(),
            started_at: w.started_at(),
        });
        self.report_unwritten();
        self.progress.update(&w);
        self.watch_files(&w);
        w
    }

    /// Has the monitor check the files of the current segment while it is on the
    /// primary (the monitor watches only the primary).
    fn watch_files(&mut self, w: &RecordingWriter) {
        let segment = (!w.on_spool()).then(|| w.segment());
        if self.watch.as_ref().map(|(s, _)| *s) == segment {
            return;
        }
        // The old segment's files are unwatched first.
        self.watch = None;
        let Some(segment) = segment else {
            return;
        };
        match w.watched_files() {
            Ok(files) => self.watch = Some((segment, self.storage.monitor.watch(files))),
            Err(e) => {
                warn!(recording = %self.start.recording, error = %e, "the recording's files are not checked between writes")
            }
        }
    }

    fn push(&mut self, w: &mut RecordingWriter, media: &Media) {
        self.follow_health(w);
        match w.push(media) {
            Ok(outcome) => {
                if let Some(dropped) = outcome.dropped {
                    self.fault(
                        FaultKind::MediaDropped,
                        FaultTarget::Storage,
                        &dropped.to_string(),
                    );
                }
                if outcome.durable.is_some() {
                    self.wrote(w);
                }
            }
            Err(WriteError::Media(e)) => self.refuse(&e),
            Err(e) => {
                let on_spool = w.on_spool();
                self.write_failed(on_spool, &e);
                if !on_spool {
                    self.fail_over(w);
                }
            }
        }
        self.progress.update(w);
        self.watch_files(w);
    }

    /// Fails over while the monitor says the primary is faulted (often before any
    /// write of ours failed: a full watermark, an unmount, a removed disk), and
    /// moves back once it is healthy.
    fn follow_health(&mut self, w: &mut RecordingWriter) {
        let usable = self.storage.monitor.is_usable();
        if w.on_spool() && usable {
            self.move_back(w);
        } else if !w.on_spool() && !usable {
            self.fail_over(w);
        }
    }

    fn fail_over(&mut self, w: &mut RecordingWriter) {
        let Some(spool) = self.storage.spool.clone() else {
            // Fragments stay queued in memory (bounded) and are retried.
            return;
        };
        if !self.may_retry() {
            return;
        }
        match w.fail_over(&spool) {
            Ok(switch) => {
                self.failed_over(&switch.to);
                if let Some(e) = switch.error {
                    self.write_failed(true, &e);
                }
            }
            Err(e) => {
                self.write_failed(true, &e);
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }

    fn failed_over(&mut self, dir: &Path) {
        // A primary that failed again before taking one fragment is given longer.
        self.stay = if self.primary_wrote {
            self.opts.min_spool_stay
        } else {
            (self.stay * 2).min(MAX_STAY)
        };
        self.primary_wrote = false;
        self.stay_until = Instant::now() + self.stay;
        self.fault(
            FaultKind::Failover,
            FaultTarget::Storage,
            &format!("recording continues on the spool in {}", dir.display()),
        );
    }

    fn move_back(&mut self, w: &mut RecordingWriter) {
        if !self.may_retry() || Instant::now() < self.stay_until {
            return;
        }
        match w.move_back(&self.storage.primary) {
            Ok(switch) => {
                self.fault(
                    FaultKind::Recovered,
                    FaultTarget::Storage,
                    &format!(
                        "recording is back on the primary storage in {}",
                        switch.to.display()
                    ),
                );
                self.clear(FaultKind::Failover, FaultTarget::Storage);
                if let Some((kind, target)) = self.spool_fault.take() {
                    self.clear(kind, target);
                }
                if let Some(e) = switch.error {
                    self.write_failed(false, &e);
                }
            }
            Err(e) => {
                self.write_failed(false, &e);
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }

    /// A fragment became durable where the recording is now.
    fn wrote(&mut self, w: &RecordingWriter) {
        if w.on_spool() {
            if let Some((kind, target)) = self.spool_fault.take() {
                self.clear(kind, target);
            }
        } else {
            self.primary_wrote = true;
            for target in [FaultTarget::File, FaultTarget::Index] {
                self.storage.monitor.report(Observation::WriteOk { target });
            }
        }
    }

    /// Writes the last fragment and closes; a primary that fails now still gets
    /// its queued fragments to the spool.
    fn finish(&mut self, w: &mut RecordingWriter) {
        let mut spool = self.storage.spool.clone();
        loop {
            match w.finish() {
                Ok(summary) => {
                    self.wrote(w);
                    self.progress.update(w);
                    info!(recording = %summary.recording, fragments = summary.fragments, bytes = summary.file_bytes, "recording finished");
                    (self.report)(WriterEvent::Send(Box::new(Frame::Stopped { summary })));
                    return;
                }
                Err(e) => {
                    let on_spool = w.on_spool();
                    self.write_failed(on_spool, &e);
                    match spool.take() {
                        Some(spool) if !on_spool && w.fail_over(&spool).is_ok() => {
                            self.failed_over(w.dir());
                            self.watch_files(w);
                        }
                        _ => break,
                    }
                }
            }
        }
        let dropped = w.abandon();
        self.progress.update(w);
        if dropped.fragments > 0 {
            let detail = format!("recording could not be closed; {dropped}");
            self.fault(FaultKind::MediaDropped, FaultTarget::Storage, &detail);
        } else {
            let detail = "recording could not be closed; recovery will repair it at the next start";
            self.fault(FaultKind::FileWriteFailed, FaultTarget::File, detail);
        }
    }

    /// Reports a failed write: of the primary to the monitor (which raises each
    /// fault once and clears it), of the spool directly.
    fn write_failed(&mut self, on_spool: bool, e: &WriteError) {
        warn!(recording = %self.start.recording, on_spool, error = %e, "recording write failed");
        if let Some(dropped) = e.dropped() {
            self.fault(
                FaultKind::MediaDropped,
                FaultTarget::Storage,
                &dropped.to_string(),
            );
        }
        let (kind, target) = classify(e);
        match (on_spool, e.target()) {
            (false, Some(_)) => self.storage.monitor.report(Observation::WriteError {
                target,
                kind,
                detail: e.to_string(),
            }),
            (true, _) if self.spool_fault == Some((kind, target)) => {}
            (true, _) => {
                self.spool_fault = Some((kind, target));
                self.fault(kind, target, &format!("spool: {e}"));
            }
            // Not a storage error (a bad name): the monitor has nothing to track.
            (false, None) => self.fault(kind, target, &e.to_string()),
        }
    }

    fn refuse(&mut self, e: &FragmentError) {
        self.refused += 1;
        warn!(recording = %self.start.recording, error = %e, "media frame refused");
        if self.refused == 1 {
            self.fault(
                FaultKind::MediaDropped,
                FaultTarget::File,
                &format!("media frame refused: {e}"),
            );
        }
    }

    fn unwritten(&mut self, media: &Media) {
        match media.track {
            Track::Video => self.unwritten.video += 1,
            Track::Audio => self.unwritten.audio += 1,
        }
        self.unwritten.bytes += media.data.len() as u64;
    }

    fn report_unwritten(&mut self) {
        let u = std::mem::take(&mut self.unwritten);
        if u.video + u.audio == 0 {
            return;
        }
        let when = if self.created {
            "before the recording could be created"
        } else {
            "because the recording could not be created"
        };
        self.fault(
            FaultKind::MediaDropped,
            FaultTarget::Storage,
            &format!(
                "dropped {} video frames, {} audio frames ({} bytes) {when}",
                u.video, u.audio, u.bytes
            ),
        );
    }

    fn may_retry(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn fault(&mut self, kind: FaultKind, target: FaultTarget, detail: &str) {
        warn!(recording = %self.start.recording, ?kind, ?target, %detail, "recording fault");
        (self.report)(WriterEvent::Send(Box::new(Frame::Fault(Fault {
            recording: self.start.recording.clone(),
            kind,
            target,
            detail: text(detail),
            at: now_millis(),
        }))));
    }

    fn clear(&mut self, kind: FaultKind, target: FaultTarget) {
        info!(recording = %self.start.recording, ?kind, ?target, "recording fault cleared");
        (self.report)(WriterEvent::Send(Box::new(Frame::Cleared {
            kind,
            target,
            at: now_millis(),
        })));
    }
}

/// The fault kind and target of a write error.
fn classify(e: &WriteError) -> (FaultKind, FaultTarget) {
    let mut kind = e.io_error().map_or(FaultKind::FsError, errno::classify);
    // Any other failure of one file (permissions, an immutable index) is that
    // file's write failing, unless the file system says it is damaged.
    if kind == FaultKind::FsError && !e.io_error().is_some_and(errno::is_corruption) {
        match e.target().map(|t| t.fault_target()) {
            Some(FaultTarget::File) => kind = FaultKind::FileWriteFailed,
            Some(FaultTarget::Index) => kind = FaultKind::IndexWriteFailed,
            _ => {}
        }
    }
    let target = match kind {
        // The whole storage is full, read-only, failing or gone, whichever file
        // found out: the same fault the storage monitor raises, so the meeting hears
        // it once.
        FaultKind::DiskFull | FaultKind::ReadOnly | FaultKind::DiskOffline | FaultKind::IoError => {
            FaultTarget::Storage
        }
        _ => e
            .target()
            .map_or(FaultTarget::Storage, |t| t.fault_target()),
    };
    (kind, target)
}
