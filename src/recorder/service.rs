//! The recorder's IO shell: accepts media-link sessions, runs the session state
//! machine, hands media to a writer thread per recording ([`super::writer`]), and
//! sends faults, stats and acknowledgements back on the same link.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::monitor::{MonitorConfig, StorageMonitor};
use super::recording::WriterOptions;
use super::recovery;
use super::writer::{write_recording, Progress, Storage, WriterCmd, WriterEvent, Writers};
use crate::link::codec::DEFAULT_MAX_FRAME;
use crate::link::frame::{now_millis, text, Frame, Media, RecordingId, StartParams, Stats, Track};
use crate::link::handshake::KeyRing;
use crate::link::session::{reject_frame, RecorderEvent, RecorderSession};
use crate::link::transport::{
    Authenticated, FrameReader, FrameSender, Incoming, LinkAddr, LinkListener, TransportError,
};
use crate::storage::health::HealthConfig;
use crate::storage::space;

/// Media frames queued for the writer thread before the link is back-pressured.
const WRITER_QUEUE: usize = 256;
/// How long a shutdown waits for the sessions to finish their recordings.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How often a recording's `Stats` go to the mixer unless configured.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a connection may take to prove the link key unless configured.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections that have not proven the key yet, at most, unless configured.
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 64;
/// Waits after a failed `accept` (out of descriptors): doubling from the first to the
/// second while it keeps failing.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub(crate) storage: PathBuf,
    /// Where recordings continue while the primary storage is faulted.
    pub spool: Option<PathBuf>,
    /// The link keys accepted: the current one and, while rotating, the previous.
    pub(crate) keys: KeyRing,
    pub max_frame: usize,
    /// A connection that has not proven the key within this is closed.
    pub handshake_timeout: Duration,
    /// Beyond this many unauthenticated connections the oldest is closed.
    pub max_unauthenticated: usize,
    pub stats_interval: Duration,
    pub writer: WriterOptions,
    /// How often the storage is polled (space, mount table, probe while faulted).
    pub storage_poll: Duration,
    pub health: HealthConfig,
    /// Told of every media frame as the recorder receives it from the link: the
    /// mixer benchmark measures the latency up to the recorder with it.
    pub(crate) media_tap: Option<mpsc::UnboundedSender<MediaReceived>>,
}

/// A media frame the recorder received, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaReceived {
    pub(crate) track: Track,
    pub(crate) pts: i64,
    pub(crate) at: Instant,
}

impl RecorderConfig {
    pub fn new(storage: PathBuf, keys: impl Into<KeyRing>) -> Self {
        let monitor = MonitorConfig::new(storage.clone());
        Self {
            storage,
            spool: None,
            keys: keys.into(),
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
            stats_interval: DEFAULT_STATS_INTERVAL,
            writer: WriterOptions::default(),
            storage_poll: monitor.poll,
            health: monitor.health,
            media_tap: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("creating storage root {}: {source}", path.display())]
    CreateRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("creating the socket directory {}: {source}", path.display())]
    CreateSocketDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: LinkAddr,
        #[source]
        source: TransportError,
    },
}

/// The spool must be another place than the storage: inside it, it would fail with
/// it and its recordings would be taken for the storage's own.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the spool {} must not be the storage root {} or inside it (nor contain it)", spool.display(), storage.display())]
pub struct SpoolError {
    storage: PathBuf,
    spool: PathBuf,
}

pub(crate) fn check_spool(storage: &Path, spool: &Path) -> Result<(), SpoolError> {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (storage, spool) = (resolve(storage), resolve(spool));
    if spool.starts_with(&storage) || storage.starts_with(&spool) {
        return Err(SpoolError { storage, spool });
    }
    Ok(())
}

/// Everything before the recorder can serve: the storage roots (and a Unix socket's
/// directory) exist, recordings a crash or power cut left unfinished are recovered,
/// and `listen` is bound.
pub async fn open(listen: &LinkAddr, config: &RecorderConfig) -> Result<LinkListener, StartError> {
    let roots = std::iter::once(&config.storage).chain(&config.spool);
    for root in roots.clone() {
        std::fs::create_dir_all(root).map_err(|source| StartError::CreateRoot {
            path: root.clone(),
            source,
        })?;
    }
    if let Some(spool) = &config.spool {
        check_spool(&config.storage, spool)?;
    }
    for root in roots {
        let root = root.clone();
        // Recovery reads and rewrites files: off the async threads.
        let recovered = tokio::task::spawn_blocking(move || (recover_unfinished(&root), root))
            .await
            .expect("recovery does not panic");
        if recovered.0 > 0 {
            info!(recovered = recovered.0, root = %recovered.1.display(), "unfinished recordings recovered");
        }
    }
    if let LinkAddr::Unix(path) = listen {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StartError::CreateSocketDir {
                path: dir.to_owned(),
                source,
            })?;
        }
    }
    LinkListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen.clone(),
            source,
        })
}

/// Recovers every recording under the storage root that was not finished cleanly
/// (power cut, crash, pulled disk). Returns how many were recovered.
pub fn recover_unfinished(storage: &Path) -> usize {
    let dirs = recovery::find_unfinished(storage);
    for dir in &dirs {
        match recovery::recover(dir) {
            Ok(report) => info!(dir = %dir.display(), %report, "recovered unfinished recording"),
            Err(e) => warn!(dir = %dir.display(), error = %e, "could not recover recording"),
        }
    }
    dirs.len()
}

/// Accepts sessions for ever; each connection is authenticated on its own task
/// within the handshake deadline, then runs its session on another.
///
/// A flood of connections that never authenticate cannot starve a mixer: the oldest
/// unauthenticated one is closed when there are too many, and when `accept` fails
/// (out of descriptors) the oldest is closed too and accepting resumes after a pause.
pub async fn serve(listener: LinkListener, config: Arc<RecorderConfig>) {
    serve_until(listener, config, std::future::pending()).await
}

/// [`serve`] until `shutdown` completes: then nothing is accepted any more, and every
/// session finishes its recording as on the mixer's `Stop` (`Stopped` to the mixer,
/// index and playlist closed) and ends. Sessions still busy after [`SHUTDOWN_LIMIT`]
/// (a dying disk) are left to recovery at the next start.
pub async fn serve_until(
    listener: LinkListener,
    config: Arc<RecorderConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let monitor = storage_monitor(&config);
    serve_monitored(listener, config, monitor, shutdown).await
}

/// The monitor of the recorder's storage, started before [`serve_monitored`] so
/// that the box can follow the storage's health while no recording runs.
pub fn storage_monitor(config: &RecorderConfig) -> StorageMonitor {
    StorageMonitor::spawn(MonitorConfig {
        root: config.storage.clone(),
        poll: config.storage_poll,
        health: config.health,
    })
}

/// [`serve_until`] with a storage monitor the caller started (and subscribed to).
pub async fn serve_monitored(
    listener: LinkListener,
    config: Arc<RecorderConfig>,
    monitor: StorageMonitor,
    shutdown: impl std::future::Future<Output = ()>,
) {
    info!(
        addr = %listener.local_addr(),
        storage = %config.storage.display(),
        spool = ?config.spool,
        "recorder listening"
    );
    let storage = Arc::new(Storage {
        primary: config.storage.clone(),
        spool: config.spool.clone(),
        monitor,
        writers: Writers::default(),
    });
    let cap = unauthenticated_cap(config.max_unauthenticated, descriptor_limit());
    let mut handshakes = JoinSet::new();
    let mut pending: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    let mut sessions = JoinSet::new();
    let (stop, stopping) = watch::channel(false);
    let mut backoff = ACCEPT_BACKOFF.0;
    tokio::pin!(shutdown);
    loop {
        pending.retain(|h| !h.is_finished());
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(done) = handshakes.join_next() => {
                if let Ok(Some((peer, link))) = done {
                    let (config, storage) = (config.clone(), storage.clone());
                    sessions.spawn(run_link(peer, link, config, storage, stopping.clone()));
                }
                continue;
            }
            // Reaps the sessions that ended, so the set holds only live ones.
            Some(_) = sessions.join_next() => continue,
            () = &mut shutdown => break,
        };
        let incoming = match accepted {
            Ok(incoming) => {
                backoff = ACCEPT_BACKOFF.0;
                incoming
            }
            Err(e) => {
                let dropped = pending.pop_front().inspect(|h| h.abort()).is_some();
                warn!(error = %e, ?backoff, dropped_unauthenticated = dropped, "accept failed: backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        while pending.len() >= cap {
            if let Some(oldest) = pending.pop_front() {
                oldest.abort();
            }
        }
        pending.push_back(handshakes.spawn(authenticate(incoming, config.clone())));
    }
    drop(listener);
    handshakes.abort_all();
    info!(
        sessions = sessions.len(),
        "recorder shutting down: finishing the recordings"
    );
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_LIMIT, async {
        while sessions.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        warn!(
            sessions = sessions.len(),
            limit = ?SHUTDOWN_LIMIT,
            "recordings not finished in time: recovery repairs them at the next start"
        );
    }
}

/// The soft limit on open descriptors, if there is one.
fn descriptor_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Unauthenticated connections never hold more than half the descriptors: the
/// recordings' files and the mixer's connection need the rest.
fn unauthenticated_cap(configured: usize, nofile: Option<u64>) -> usize {
    let half = nofile.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
    configured.min(half).max(1)
}

/// Runs the handshake within the deadline; the link, once authenticated, gets its
/// session task from [`serve_until`] (so dropping this task, as the oldest
/// unauthenticated, never ends a session).
async fn authenticate(
    incoming: Incoming,
    config: Arc<RecorderConfig>,
) -> Option<(String, Authenticated)> {
    let peer = incoming.peer.clone();
    let deadline = config.handshake_timeout;
    match tokio::time::timeout(
        deadline,
        incoming.authenticate(&config.keys, config.max_frame),
    )
    .await
    {
        Ok(Ok(link)) => Some((peer, link)),
        Ok(Err(e)) => {
            warn!(%peer, reason = %e, "media link refused: authentication failed");
            None
        }
        Err(_) => {
            debug!(%peer, ?deadline, "media link refused: no authentication within the deadline");
            None
        }
    }
}

/// One authenticated link's session, until its end or the recorder's shutdown.
async fn run_link(
    peer: String,
    link: Authenticated,
    config: Arc<RecorderConfig>,
    storage: Arc<Storage>,
    stopping: watch::Receiver<bool>,
) {
    let Authenticated {
        reader,
        sender,
        key,
    } = link;
    info!(%peer, %key, "media link session opened");
    match run_session(reader, sender, &config, &storage, stopping).await {
        Ok(()) => info!(%peer, "media link session closed"),
        Err(reason) => warn!(%peer, %reason, "media link session closed with an error"),
    }
}

/// Writer events are tagged with the recording they belong to: a session may start
/// a new recording while the previous one is still being closed.
type Tagged = (u64, WriterEvent);

/// One recording being written: the session's handle on its writer thread.
struct Active {
    id: RecordingId,
    /// When the recording started (its first session's start, when continued);
    /// known once the writer has made or found its files.
    started: Option<SystemTime>,
    progress: Arc<Progress>,
    cmds: Option<mpsc::Sender<WriterCmd>>,
}

impl Active {
    fn spawn(
        tag: u64,
        start: StartParams,
        config: &RecorderConfig,
        storage: &Arc<Storage>,
        events: mpsc::UnboundedSender<Tagged>,
    ) -> Self {
        let (cmds, rx) = mpsc::channel(WRITER_QUEUE);
        let progress = Arc::new(Progress::default());
        let id = start.recording.clone();
        let (storage, opts, thread_progress) = (storage.clone(), config.writer, progress.clone());
        let own = cmds.downgrade();
        std::thread::Builder::new()
            .name(format!("writer-{}", start.recording))
            .spawn(move || {
                write_recording(storage, start, opts, thread_progress, rx, own, &mut |e| {
                    let _ = events.send((tag, e));
                })
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Self {
            id,
            started: None,
            progress,
            cmds: Some(cmds),
        }
    }

    async fn push(&mut self, media: Media) {
        if let Some(cmds) = &self.cmds {
            // The writer thread outlives the queue, so this only fails after Finish.
            let _ = cmds.send(WriterCmd::Media(media)).await;
        }
    }

    async fn finish(&mut self) {
        if let Some(cmds) = self.cmds.take() {
            let _ = cmds.send(WriterCmd::Finish).await;
        }
    }

    /// Durable bytes over all segments, and the free space where the recording is
    /// being written now; `None` until the writer has its files (the figures would
    /// say nothing is recorded, for a recording that is being continued).
    fn stats(&self, storage: &Storage) -> Option<Stats> {
        let started = self.started?;
        let root = match (&storage.spool, self.progress.on_spool()) {
            (Some(spool), true) => spool,
            _ => &storage.primary,
        };
        Some(Stats {
            file_bytes: self.progress.file_bytes(),
            index_bytes: self.progress.index_bytes(),
            duration_ms: SystemTime::now()
                .duration_since(started)
                .map_or(0, |d| d.as_millis() as u64),
            free_bytes: space::statvfs(root).map_or(0, |s| s.free_bytes),
            at: now_millis(),
        })
    }
}

/// The recordings of one session: the current one receives media; earlier ones
/// may still be closing on their writer threads.
#[derive(Default)]
struct Recordings {
    all: HashMap<u64, Active>,
    current: Option<u64>,
    next_tag: u64,
}

impl Recordings {
    fn current(&mut self) -> Option<&mut Active> {
        self.all.get_mut(&self.current?)
    }

    /// Asks the current recording to close; its writer reports when it is done.
    async fn finish_current(&mut self) {
        if let Some(a) = self.current() {
            a.finish().await;
        }
        self.current = None;
    }
}

/// Runs one session to its end. `Err` carries the reason the session was closed.
async fn run_session(
    mut reader: FrameReader,
    sender: FrameSender,
    config: &RecorderConfig,
    storage: &Arc<Storage>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut health = storage.monitor.subscribe();
    let mut session = RecorderSession::new();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut recs = Recordings::default();
    let mut ticker = tokio::time::interval(config.stats_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // Set once the link can no longer deliver media: the loop then only drains the
    // writers so every recording is closed properly.
    let mut closing: Option<Result<(), String>> = None;

    loop {
        if let Some(outcome) = closing.as_ref() {
            if recs.all.is_empty() {
                // Everything queued (the `Stopped` among it) is on the wire before
                // the session ends: a recorder shutting down exits right after.
                let _ = sender.close().await;
                return outcome.clone();
            }
        }
        tokio::select! {
            frame = reader.next(), if closing.is_none() => {
                let outcome = match frame {
                    Ok(Some(frame)) => match session.on_frame(frame) {
                        Ok(event) => {
                            handle_event(event, &sender, &mut recs, config, storage, &events_tx).await;
                            continue;
                        }
                        Err(e) => {
                            let _ = sender.send(reject_frame(&e)).await;
                            Err(e.to_string())
                        }
                    },
                    Ok(None) => Ok(()),
                    Err(e) => {
                        let _ = sender.send(Frame::Reject { reason: text(&e.to_string()) }).await;
                        Err(e.to_string())
                    }
                };
                recs.finish_current().await;
                closing = Some(outcome);
            }
            // The recorder shuts down: close as on Stop, then end the session.
            Ok(()) = stopping.changed(), if closing.is_none() => {
                recs.finish_current().await;
                closing = Some(Ok(()));
            }
            Some((tag, event)) = events.recv() => {
                on_writer_event(tag, event, &sender, &mut recs).await;
            }
            event = health.recv() => match event {
                Ok(event) => {
                    if let Some(a) = recs.current() {
                        let _ = sender.send(event.to_frame(&a.id)).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "storage events came faster than the link took them");
                }
                // The monitor lives as long as the recorder.
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = ticker.tick(), if recs.current.is_some() => {
                if let Some(stats) = recs.current().and_then(|a| a.stats(storage)) {
                    let _ = sender.send(Frame::Stats(stats)).await;
                }
            }
        }
    }
}

async fn handle_event(
    event: RecorderEvent,
    sender: &FrameSender,
    recs: &mut Recordings,
    config: &RecorderConfig,
    storage: &Arc<Storage>,
    events: &mpsc::UnboundedSender<Tagged>,
) {
    match event {
        RecorderEvent::Accepted { recording, reply } => {
            info!(%recording, "mixer authenticated");
            let _ = sender.send(reply).await;
        }
        RecorderEvent::Start(start) => {
            info!(recording = %start.recording, room = %start.room, "recording starts");
            recs.finish_current().await;
            let tag = recs.next_tag;
            recs.next_tag += 1;
            // Faults raised before this recording began still concern it.
            for fault in storage.monitor.active_faults() {
                let _ = sender.send(fault.to_frame(&start.recording)).await;
            }
            recs.all.insert(
                tag,
                Active::spawn(tag, start, config, storage, events.clone()),
            );
            recs.current = Some(tag);
        }
        RecorderEvent::Media(media) => {
            if let Some(tap) = &config.media_tap {
                let _ = tap.send(MediaReceived {
                    track: media.track,
                    pts: media.pts,
                    at: Instant::now(),
                });
            }
            if let Some(a) = recs.current() {
                a.push(media).await;
            }
        }
        RecorderEvent::Stop => recs.finish_current().await,
        RecorderEvent::Ping { reply } => {
            let _ = sender.send(reply).await;
        }
    }
}

/// Reports on the link what a writer thread did.
async fn on_writer_event(
    tag: u64,
    event: WriterEvent,
    sender: &FrameSender,
    recs: &mut Recordings,
) {
    let Some(a) = recs.all.get_mut(&tag) else {
        return;
    };
    match event {
        WriterEvent::Created { dir, started_at } => {
            debug!(dir = %dir.display(), "recording files created");
            a.started = Some(started_at);
            let _ = sender
                .send(Frame::Started {
                    recording: a.id.clone(),
                    path: text(&dir.display().to_string()),
                })
                .await;
        }
        WriterEvent::Send(frame) => {
            let _ = sender.send(*frame).await;
        }
        WriterEvent::Finished => {
            recs.all.remove(&tag);
            if recs.current == Some(tag) {
                recs.current = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_connections_keep_half_the_descriptors_free() {
        assert_eq!(unauthenticated_cap(64, Some(1024)), 64);
        assert_eq!(unauthenticated_cap(10_000, Some(256)), 128);
        assert_eq!(unauthenticated_cap(10_000, None), 10_000);
        assert_eq!(unauthenticated_cap(0, Some(1)), 1);
    }

    #[test]
    fn the_spool_must_be_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        assert!(check_spool(&storage, &dir.path().join("spool")).is_ok());
        for bad in [
            storage.clone(),
            storage.join("spool"),
            dir.path().to_path_buf(),
        ] {
            let err = check_spool(&storage, &bad).unwrap_err().to_string();
            assert!(err.contains("must not be the storage root"), "{err}");
        }
        // Spelled differently, still the same place.
        assert!(check_spool(&storage, &storage.join("x/..")).is_err());
    }
}
