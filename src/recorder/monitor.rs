//! The storage monitor of one storage root: every source of truth about that storage
//! feeds one `StorageHealth` — the writers' own results, `statvfs` watermarks, the
//! mount table, block-device uevents, checks of the files being recorded, and a
//! probe write while the storage is faulted.
//! Sessions subscribe to its events and writers read whether the root is usable.
//!
//! Polling runs on a plain thread: `statvfs` or a probe write on a dying disk can
//! block for long, and must not stall the async runtime that carries the link.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::link::frame::now_millis;
use crate::link::frame::FaultTarget;
use crate::storage::device::BackingDevice;
use crate::storage::errno;
use crate::storage::health::{HealthConfig, HealthEvent, Observation, StorageHealth};
use crate::storage::inode;
use crate::storage::mountinfo;
use crate::storage::mounts::{MountChange, MountWatch};
use crate::storage::netlink::{NetlinkError, UeventSource};
use crate::storage::space;

/// Name of the file the probe writes (and removes) in the storage root.
const PROBE_FILE: &str = ".recbox-probe";
/// Shortest time between two probes: each is a synced write to a disk in trouble,
/// and knowing a few polls later that it is back costs nothing.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The mount table is read at every this many polls while the storage is usable,
/// besides at once when it changes or `statvfs` sees the read-only flag change.
/// What the table alone shows, ext4's emergency read-only and a shut-down file
/// system, is then seen within that many polls when nothing is written, and at once
/// from the writers' own `EROFS` or `EIO` while recording. Generating the table is
/// most of a poll's cost.
const MOUNT_TABLE_EVERY: u32 = 10;

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub root: PathBuf,
    /// How often space and the mount table are read (and the probe runs while faulted).
    pub poll: Duration,
    pub health: HealthConfig,
}

impl MonitorConfig {
    /// A space or super-block change (full disk, ext4 error) has no event; a poll
    /// costs a statvfs, and a read of the mount table at every
    /// [`MOUNT_TABLE_EVERY`]th.
    pub const DEFAULT_POLL: Duration = Duration::from_millis(50);

    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            poll: Self::DEFAULT_POLL,
            health: HealthConfig::default(),
        }
    }
}

/// What the poller thread is told.
enum Msg {
    Observe(Observation),
    /// The mount table changed: read it now rather than at the next poll.
    MountsChanged,
    Watch(u64, Vec<WatchedFile>),
    Unwatch(u64),
}

/// A file the recording writes on the storage, checked at every poll.
#[derive(Debug)]
pub(crate) struct WatchedFile {
    pub(crate) target: FaultTarget,
    pub(crate) path: PathBuf,
    /// A descriptor of the very file being written: its path may lead elsewhere
    /// or nowhere by now.
    pub(crate) file: File,
}

/// Files checked at every poll while this lives ([`StorageMonitor::watch`]).
#[must_use = "the files are watched only while the handle lives"]
pub(crate) struct FileWatch {
    id: u64,
    observations: mpsc::Sender<Msg>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        let _ = self.observations.send(Msg::Unwatch(self.id));
    }
}

/// Handle on a running monitor; cheap to clone.
#[derive(Clone)]
pub struct StorageMonitor {
    observations: mpsc::Sender<Msg>,
    events: broadcast::Sender<HealthEvent>,
    usable: watch::Receiver<bool>,
    /// Faults active now, so a recording that starts late still hears of them.
    active: Arc<Mutex<Vec<HealthEvent>>>,
    next_watch: Arc<AtomicU64>,
}

impl StorageMonitor {
    /// Starts watching `config.root`. Uevents are watched when called inside a tokio
    /// runtime and the kernel lets us open the netlink socket; otherwise the other
    /// sources still work, and the reason is logged.
    pub fn spawn(config: MonitorConfig) -> Self {
        let (obs_tx, obs_rx) = mpsc::channel();
        let (events, _) = broadcast::channel(256);
        let (usable_tx, usable) = watch::channel(true);
        let active = Arc::new(Mutex::new(Vec::new()));
        let monitor = Self {
            observations: obs_tx.clone(),
            events: events.clone(),
            usable,
            active: active.clone(),
            next_watch: Arc::default(),
        };
        let root = config.root.clone();
        // Built here, not on the thread: the mount table read now is the baseline,
        // and a change right after `spawn` returns must be a change from it.
        let poller = Poller::new(config, events, usable_tx, active);
        std::thread::Builder::new()
            .name("storage-monitor".into())
            .spawn(move || poller.run(obs_rx))
            .expect("spawning a thread only fails when the process is out of resources");
        let mounts_tx = obs_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("mount-events".into())
            .spawn(move || watch_mount_table(&mounts_tx));
        if let Err(e) = spawned {
            warn!(error = %e, "mount-table changes are seen only at each poll");
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(watch_uevents(root, obs_tx));
        }
        monitor
    }

    /// Feeds a writer's result into the health state machine.
    pub(crate) fn report(&self, obs: Observation) {
        // The poller only ends when every handle is gone, so this cannot fail while
        // `self` exists.
        let _ = self.observations.send(Msg::Observe(obs));
    }

    /// Checks `files` at every poll until the handle is dropped: a file removed or
    /// flagged so that it takes no writes is a fault of that file within one poll,
    /// not only at its next write (which may be a fragment away, or succeed into a
    /// file nobody will find).
    pub(crate) fn watch(&self, files: Vec<WatchedFile>) -> FileWatch {
        let id = self.next_watch.fetch_add(1, Ordering::Relaxed);
        let _ = self.observations.send(Msg::Watch(id, files));
        FileWatch {
            id,
            observations: self.observations.clone(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    /// Whether the root can take writes now (a LowSpace warning alone still can).
    pub fn is_usable(&self) -> bool {
        *self.usable.borrow()
    }

    /// Faults active now, as the `Fault` events that raised them.
    pub fn active_faults(&self) -> Vec<HealthEvent> {
        self.active.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

struct Poller {
    config: MonitorConfig,
    health: StorageHealth,
    mounts: Option<MountWatch>,
    events: broadcast::Sender<HealthEvent>,
    usable: watch::Sender<bool>,
    active: Arc<Mutex<Vec<HealthEvent>>>,
    last_probe: Option<Instant>,
    watched: Vec<(u64, Vec<WatchedFile>)>,
    /// Polls since the mount table was last read.
    polls_since_mounts: u32,
}

impl Poller {
    fn new(
        config: MonitorConfig,
        events: broadcast::Sender<HealthEvent>,
        usable: watch::Sender<bool>,
        active: Arc<Mutex<Vec<HealthEvent>>>,
    ) -> Self {
        let mounts = mountinfo::read(Path::new(mountinfo::SELF_MOUNTINFO))
            .ok()
            .and_then(|text| MountWatch::new(&text, &config.root).ok());
        if mounts.is_none() {
            warn!(root = %config.root.display(), "mount table unreadable: unmounts are seen only through write errors");
        }
        let mut poller = Self {
            health: StorageHealth::new(config.health),
            config,
            mounts,
            events,
            usable,
            active,
            last_probe: None,
            watched: Vec::new(),
            polls_since_mounts: 0,
        };
        if poller
            .mounts
            .as_ref()
            .is_some_and(|m| m.snapshot().read_only)
        {
            poller.apply(Observation::Mount(MountChange::ReadOnly));
        }
        poller
    }

    fn run(mut self, observations: mpsc::Receiver<Msg>) {
        let mut next_poll = Instant::now();
        loop {
            let wait = next_poll.saturating_duration_since(Instant::now());
            match observations.recv_timeout(wait) {
                Ok(Msg::Observe(obs)) => self.apply(obs),
                Ok(Msg::MountsChanged) => self.read_mounts(),
                Ok(Msg::Watch(id, files)) => self.watched.push((id, files)),
                Ok(Msg::Unwatch(id)) => self.unwatch(id),
                Err(RecvTimeoutError::Timeout) => {
                    self.poll();
                    next_poll = Instant::now() + self.config.poll;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn poll(&mut self) {
        let root = self.config.root.clone();
        let read_only = match space::statvfs(&root) {
            Ok(s) => {
                self.apply(s.into());
                Some(s.read_only)
            }
            Err(e) => {
                self.apply(Observation::WriteError {
                    target: FaultTarget::Storage,
                    kind: errno::classify(&e),
                    detail: format!("statvfs {}: {e}", root.display()),
                });
                None
            }
        };
        self.polls_since_mounts += 1;
        let seen_read_only = self.mounts.as_ref().map(|m| m.snapshot().read_only);
        if self.polls_since_mounts >= MOUNT_TABLE_EVERY
            || !self.health.usable()
            || read_only != seen_read_only
        {
            self.read_mounts();
        }
        self.check_files();
        let due = self
            .last_probe
            .is_none_or(|at| at.elapsed() >= PROBE_INTERVAL);
        if !self.health.usable() && due {
            self.last_probe = Some(Instant::now());
            let ok = self.probe();
            self.apply(Observation::Probe { ok });
        }
    }

    /// One check per target, a problem with any file of it winning: the files of
    /// two recordings must not clear each other's fault.
    fn check_files(&mut self) {
        let mut checks: Vec<(FaultTarget, Option<String>)> = Vec::new();
        for file in self.watched.iter().flat_map(|(_, files)| files) {
            let problem = match inode::check(&file.file) {
                Ok(problem) => problem.map(|p| format!("{}: {p}", file.path.display())),
                // The storage's own trouble (EIO on a dying disk): the other
                // sources report it.
                Err(e) => {
                    debug!(path = %file.path.display(), error = %e, "file check failed");
                    continue;
                }
            };
            match checks.iter_mut().find(|(t, _)| *t == file.target) {
                Some((_, found)) => *found = found.take().or(problem),
                None => checks.push((file.target, problem)),
            }
        }
        for (target, problem) in checks {
            self.apply(Observation::FileCheck { target, problem });
        }
    }

    fn unwatch(&mut self, id: u64) {
        let Some(at) = self.watched.iter().position(|(i, _)| *i == id) else {
            return;
        };
        for file in self.watched.remove(at).1 {
            self.apply(Observation::FileUnwatched {
                target: file.target,
            });
        }
    }

    fn read_mounts(&mut self) {
        self.polls_since_mounts = 0;
        let change = self.mounts.as_mut().and_then(|m| {
            mountinfo::read(Path::new(mountinfo::SELF_MOUNTINFO))
                .ok()
                .and_then(|text| m.update(&text))
        });
        if let Some(change) = change {
            self.apply(Observation::Mount(change));
        }
    }

    /// A small synced write in the root. It only counts while the storage is still
    /// mounted where it was: after an unmount the root path belongs to the parent
    /// filesystem, where a write would succeed and prove nothing.
    fn probe(&self) -> bool {
        if let Some(m) = &self.mounts {
            let s = m.snapshot();
            if !s.present || s.read_only {
                return false;
            }
        }
        let path = self.config.root.join(PROBE_FILE);
        let result = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&[0u8; 4096])?;
                f.sync_data()
            })
            .and_then(|()| fs::remove_file(&path));
        debug!(ok = result.is_ok(), "storage probe");
        result.is_ok()
    }

    fn apply(&mut self, obs: Observation) {
        let events = self.health.observe(obs, now_millis());
        // State first, then the events: whoever hears an event and asks
        // `is_usable` or `active_faults` gets the state that event describes.
        if let Ok(mut active) = self.active.lock() {
            for event in &events {
                update_active(&mut active, event);
            }
        }
        let usable = self.health.usable();
        self.usable
            .send_if_modified(|u| std::mem::replace(u, usable) != usable);
        for event in events {
            match &event {
                HealthEvent::Fault {
                    kind,
                    target,
                    detail,
                    ..
                } => {
                    warn!(?kind, ?target, %detail, root = %self.config.root.display(), "storage fault");
                }
                HealthEvent::Cleared { kind, target, .. } => {
                    info!(?kind, ?target, root = %self.config.root.display(), "storage fault cleared");
                }
            }
            // No subscriber (no session right now) is fine: `active` keeps the state.
            let _ = self.events.send(event);
        }
    }
}

/// Keeps the list of active faults in step with the events.
fn update_active(active: &mut Vec<HealthEvent>, event: &HealthEvent) {
    match event {
        HealthEvent::Fault { .. } => active.push(event.clone()),
        HealthEvent::Cleared { kind, target, .. } => active.retain(|e| {
            !matches!(e, HealthEvent::Fault { kind: k, target: t, .. } if k == kind && t == target)
        }),
    }
}

/// Wakes the poller whenever the mount table changes: the kernel flags
/// `/proc/self/mountinfo` with POLLPRI on every mount, unmount or remount, so an
/// unmount or a read-only remount is seen at once instead of at the next poll.
fn watch_mount_table(tx: &mpsc::Sender<Msg>) {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let mut file = match fs::File::open(mountinfo::SELF_MOUNTINFO) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "mount-table changes are seen only at each poll");
            return;
        }
    };
    let mut sink = Vec::new();
    loop {
        // Reading the table to its end re-arms the notification.
        sink.clear();
        if file
            .rewind()
            .and_then(|()| file.read_to_end(&mut sink))
            .is_err()
        {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLPRI | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if tx.send(Msg::MountsChanged).is_err() {
            return;
        }
    }
}

/// Forwards the uevents that concern the device behind `root` to the poller.
async fn watch_uevents(root: PathBuf, observations: mpsc::Sender<Msg>) {
    let device = match BackingDevice::resolve(&root) {
        Ok(d) => d,
        Err(e) => {
            info!(root = %root.display(), error = %e, "no block device behind the storage root: uevents not watched");
            return;
        }
    };
    let mut source = match UeventSource::open() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch block-device uevents");
            return;
        }
    };
    info!(root = %root.display(), device = ?device.devpath, "watching block-device uevents");
    loop {
        match source.recv().await {
            Ok(ev) => {
                if let Some(dev_event) = device.matches(&ev) {
                    if observations
                        .send(Msg::Observe(Observation::Device(dev_event)))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            // Lost events: the next poll re-reads space and the mount table.
            Err(NetlinkError::Overrun) => warn!("uevent buffer overrun"),
            Err(e) => {
                warn!(error = %e, "uevent socket failed; uevents no longer watched");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::FaultKind;

    fn fault(kind: FaultKind) -> HealthEvent {
        HealthEvent::Fault {
            kind,
            target: FaultTarget::Storage,
            detail: String::new(),
            at: 0,
        }
    }

    #[test]
    fn active_list_follows_events() {
        let mut active = Vec::new();
        update_active(&mut active, &fault(FaultKind::DiskFull));
        update_active(&mut active, &fault(FaultKind::LowSpace));
        update_active(
            &mut active,
            &HealthEvent::Cleared {
                kind: FaultKind::DiskFull,
                target: FaultTarget::Storage,
                at: 1,
            },
        );
        assert_eq!(active, vec![fault(FaultKind::LowSpace)]);
    }

    #[test]
    fn write_errors_reported_once_and_usable_follows() {
        let dir = tempfile::tempdir().unwrap();
        let monitor = StorageMonitor::spawn(MonitorConfig {
            // Polls would also run the probe; keep them out of this test.
            poll: Duration::from_secs(3600),
            ..MonitorConfig::new(dir.path().to_path_buf())
        });
        let mut events = monitor.subscribe();
        let mut usable = monitor.usable.clone();
        for _ in 0..3 {
            monitor.report(Observation::WriteError {
                target: FaultTarget::File,
                kind: FaultKind::IoError,
                detail: "EIO".into(),
            });
        }
        monitor.report(Observation::WriteOk {
            target: FaultTarget::File,
        });
        let first = events.blocking_recv().unwrap();
        assert!(matches!(
            first,
            HealthEvent::Fault {
                kind: FaultKind::IoError,
                ..
            }
        ));
        let second = events.blocking_recv().unwrap();
        assert!(matches!(
            second,
            HealthEvent::Cleared {
                kind: FaultKind::IoError,
                ..
            }
        ));
        // The usable flag went false and back to true; the last value is true.
        assert!(*usable.borrow_and_update());
        assert!(monitor.active_faults().is_empty());
    }
}
