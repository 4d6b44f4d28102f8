//! Every storage fault ends when its cause ends: the real `recbox recorder`, with and
//! without a spool, on a 32 MiB tmpfs and a 32 MiB ext4 loop disk, with the
//! watermarks of a new user (`--full-space 2M --low-space 4M`). The disk is filled to
//! ENOSPC, then freed; filled to between the watermarks, then freed; mounted
//! read-only, then writable again. Each time the mixer's side of the link hears the
//! fault, and its `Cleared` within a second of the cause going away.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::RecorderProcess;
use common::{connect, feed, loop_disk, tmpfs, ROOM};
use recbox::link::frame::{now_millis, FaultKind, FaultTarget, UnixMillis};
use recbox::link::session::MixerEvent;
use recbox::mixer::uplink::{Uplink, UplinkEvent};
use recbox::storage::space;
use recbox::synth::SyntheticFeed;
use recbox::testbed::scratch::Mounted;

const MIB: u64 = 1 << 20;
/// Bounds a broken run only; the recorder reacts within a poll (50 ms).
const PATIENCE: Duration = Duration::from_secs(60);
/// What the issue promises: the meeting hears the end of a fault this soon.
const CLEARED_WITHIN_MS: u64 = 1000;

/// One recording, as the mixer side sees it: media sent at about real time.
struct Meeting {
    up: Uplink,
    feed: SyntheticFeed,
    events: Vec<MixerEvent>,
    /// Where the current phase's events begin.
    cursor: usize,
}

impl Meeting {
    async fn start(recorder: &RecorderProcess, id: &str) -> Self {
        let up = connect(&recorder.addr, id).await;
        let feed = feed();
        up.start(feed.start_params(id, ROOM)).await.unwrap();
        Self {
            up,
            feed,
            events: Vec::new(),
            cursor: 0,
        }
    }

    /// Waits for `Started`, however early it came: one recording per meeting.
    async fn started(&mut self) {
        self.cursor = 0;
        self.until("Started", |e| matches!(e, MixerEvent::Started { .. }))
            .await;
    }

    /// Starts a new phase: waits look only at events from now on.
    fn mark(&mut self) {
        self.collect();
        self.cursor = self.events.len();
    }

    fn collect(&mut self) {
        while let Some(ev) = self.up.try_event() {
            match ev {
                UplinkEvent::Recorder(e) => self.events.push(e),
                UplinkEvent::Closed(reason) => panic!("link closed: {reason:?}"),
            }
        }
    }

    /// Sends media until an event of this phase matches (the order of notices from
    /// different sources is not fixed); returns where it is in `events`.
    async fn until(&mut self, what: &str, matches: impl Fn(&MixerEvent) -> bool) -> usize {
        let from = self.cursor;
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.collect();
            if let Some(at) = self.events[from..].iter().position(&matches) {
                return from + at;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {PATIENCE:?}; events: {:#?}",
                self.events
            );
            let m = self.feed.next_media().unwrap();
            self.up.media(m).await.unwrap();
            // 30 video + 50 audio frames a second.
            tokio::time::sleep(Duration::from_millis(12)).await;
        }
    }

    async fn fault(&mut self, kind: FaultKind) {
        self.until(&format!("{kind:?}"), |e| {
            matches!(e, MixerEvent::Fault(f) if f.kind == kind && f.target == FaultTarget::Storage)
        })
        .await;
    }

    /// Waits for the end of `kind` and checks it came within a second of `since`.
    async fn cleared(&mut self, kind: FaultKind, since: UnixMillis) {
        let found = self
            .until(&format!("Cleared {kind:?}"), |e| {
                matches!(e, MixerEvent::Cleared { kind: k, target: FaultTarget::Storage, .. } if *k == kind)
            })
            .await;
        let MixerEvent::Cleared { at, .. } = self.events[found] else {
            unreachable!()
        };
        assert!(
            at.saturating_sub(since) <= CLEARED_WITHIN_MS,
            "{kind:?} cleared {} ms after its cause went away",
            at.saturating_sub(since)
        );
    }

    /// Whether `kind` was raised and not cleared since.
    fn active(&self, kind: FaultKind) -> bool {
        let mut active = false;
        for e in &self.events {
            match e {
                MixerEvent::Fault(f) if f.kind == kind => active = true,
                MixerEvent::Cleared { kind: k, .. } if *k == kind => active = false,
                _ => {}
            }
        }
        active
    }

    async fn stop(mut self) {
        self.up.stop().await.unwrap();
        let stopped = tokio::time::timeout(PATIENCE, async {
            loop {
                match self.up.next_event().await {
                    Some(UplinkEvent::Recorder(MixerEvent::Stopped(_))) => return,
                    Some(UplinkEvent::Recorder(_)) => {}
                    other => panic!("link closed before Stopped: {other:?}"),
                }
            }
        });
        stopped.await.expect("the recorder answers Stop");
    }
}

/// Takes `len` bytes of the file system in a file at `path`.
fn fill(path: &Path, len: u64) {
    let file = File::create(path).unwrap();
    // SAFETY: a valid open descriptor and plain integer arguments.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    file.sync_all().unwrap();
}

/// Takes every free block in a file at `path`: what is free, then block by block
/// until ENOSPC (tmpfs undoes a whole fallocate that does not fit).
fn fill_up(path: &Path) {
    fill(
        path,
        space::statvfs(path.parent().unwrap()).unwrap().free_bytes,
    );
    let file = File::options().append(true).open(path).unwrap();
    let mut end = file.metadata().unwrap().len();
    // SAFETY: as in `fill`.
    while unsafe { libc::fallocate(file.as_raw_fd(), 0, end as libc::off_t, 4096) } == 0 {
        end += 4096;
    }
    let err = std::io::Error::last_os_error();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "fallocate: {err}");
}

/// Remounts `fs` with `opts`; a write under way (the recorder's probe) may make the
/// kernel refuse a read-only remount for a moment.
fn remount(fs: &dyn Mounted, opts: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !fs.remount(opts) {
        assert!(Instant::now() < deadline, "mount -o remount,{opts} fails");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn every_fault_ends_with_its_cause(fs: &dyn Mounted, spool: bool) {
    let root = fs.path();
    let spool_dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--full-space",
        "2M",
        "--low-space",
        "4M",
        "--stats-interval",
        "1s",
    ];
    let spool_path = spool_dir.path().to_str().unwrap();
    if spool {
        args.extend(["--spool", spool_path]);
    }
    let recorder = RecorderProcess::spawn(root, &args);
    let filler = root.join("filler");

    let mut m = Meeting::start(&recorder, "rec-full").await;
    m.started().await;
    m.until("Stats", |e| matches!(e, MixerEvent::Stats(_)))
        .await;
    // Full: every block taken, writes fail with ENOSPC.
    m.mark();
    fill_up(&filler);
    m.fault(FaultKind::DiskFull).await;
    m.fault(FaultKind::LowSpace).await;
    m.mark();
    std::fs::remove_file(&filler).unwrap();
    let freed = now_millis();
    m.cleared(FaultKind::DiskFull, freed).await;
    m.cleared(FaultKind::LowSpace, freed).await;

    // Low: 3 MiB left, between the watermarks.
    let free = space::statvfs(root).unwrap().free_bytes;
    m.mark();
    fill(&filler, free - 3 * MIB);
    m.fault(FaultKind::LowSpace).await;
    m.mark();
    std::fs::remove_file(&filler).unwrap();
    let freed = now_millis();
    m.cleared(FaultKind::LowSpace, freed).await;
    // A stats notice later nothing is left of either.
    m.mark();
    m.until("Stats", |e| matches!(e, MixerEvent::Stats(_)))
        .await;
    assert!(!m.active(FaultKind::DiskFull) && !m.active(FaultKind::LowSpace));
    m.stop().await;

    // Read-only: found by the next recording (a file system with files open for
    // writing cannot be remounted read-only), over once it is writable again.
    remount(fs, "ro");
    let mut m = Meeting::start(&recorder, "rec-ro").await;
    m.fault(FaultKind::ReadOnly).await;
    m.mark();
    remount(fs, "rw");
    let writable = now_millis();
    m.cleared(FaultKind::ReadOnly, writable).await;
    // Without a spool the recording is created once the storage takes it.
    m.started().await;
    m.mark();
    m.until("Stats", |e| matches!(e, MixerEvent::Stats(_)))
        .await;
    assert!(!m.active(FaultKind::ReadOnly), "{:#?}", m.events);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmpfs_without_spool() {
    let Some(fs) = tmpfs("32m") else { return };
    every_fault_ends_with_its_cause(&fs, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmpfs_with_spool() {
    let Some(fs) = tmpfs("32m") else { return };
    every_fault_ends_with_its_cause(&fs, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_without_spool() {
    let Some(disk) = loop_disk(32 * MIB) else {
        return;
    };
    every_fault_ends_with_its_cause(&disk, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_with_spool() {
    let Some(disk) = loop_disk(32 * MIB) else {
        return;
    };
    every_fault_ends_with_its_cause(&disk, true).await;
}
