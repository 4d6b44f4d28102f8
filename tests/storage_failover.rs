//! Storage faults during a recording, end to end: a real recorder writing to a small
//! real filesystem with a spool beside it, a real link client sending real H.264 and
//! Opus. Each fault reaches the client once, the recording continues on the spool and
//! comes back, and every frame sent is found in exactly one segment. Cases that need
//! to mount (root) or a loop device are skipped, with the reason printed, elsewhere.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::segments::{
    check_segments, check_segments_but_a_gap_after, check_segments_from, segment_contents,
};
use common::{connect, feed, loop_disk, start_recorder, tmpfs, ROOM};
use recbox::link::frame::{FaultKind, FaultTarget, Summary, Track};
use recbox::link::session::MixerEvent;
use recbox::mixer::uplink::{Uplink, UplinkEvent};
use recbox::recorder::index::{IndexRecord, HEADER_SIZE, RECORD_SIZE};
use recbox::recorder::layout::{parse_chain, CHAIN_FILE, INDEX_FILE, MP4_FILE};
use recbox::recorder::recovery::recover;
use recbox::storage::health::HealthConfig;
use recbox::synth::SyntheticFeed;
use recbox::testbed::scratch::Mounted;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// How long a test waits for a notice before it fails (the recorder reacts in
/// milliseconds; this only bounds a broken run).
const PATIENCE: Duration = Duration::from_secs(60);

/// A recording in progress, as the mixer side sees it.
struct Recording {
    uplink: Uplink,
    feed: SyntheticFeed,
    /// Track and media time (µs) of every frame sent.
    sent: Vec<(Track, u64)>,
    events: Vec<MixerEvent>,
    /// Where the current phase's events begin.
    cursor: usize,
    /// Segment 0, from `Started`.
    first_dir: Option<PathBuf>,
}

impl Recording {
    async fn start(primary: &Path, spool: Option<&Path>) -> Self {
        let spool = spool.map(Path::to_path_buf);
        let addr = start_recorder("127.0.0.1:0", primary, |c| {
            c.spool = spool;
            c.storage_poll = Duration::from_millis(50);
            c.stats_interval = Duration::from_secs(3600);
            c.health = HealthConfig {
                low_space_bytes: Some(2 * MIB),
                full_space_bytes: MIB,
                hysteresis_bytes: 512 * KIB,
            };
        })
        .await;
        let uplink = connect(&addr, "rec-1").await;
        let feed = feed();
        uplink
            .start(feed.start_params("rec-1", ROOM))
            .await
            .unwrap();
        let mut rec = Self {
            uplink,
            feed,
            sent: Vec::new(),
            events: Vec::new(),
            cursor: 0,
            first_dir: None,
        };
        rec.until("Started", |e| matches!(e, MixerEvent::Started { .. }))
            .await;
        // Some healthy recording before any fault, until segment 0 holds a durable
        // fragment: a fault before that leaves it empty (recovery removes it), which
        // is not the case these tests are about.
        rec.send(2.0).await;
        let index = rec.first_dir.clone().expect("Started").join(INDEX_FILE);
        let durable = || {
            std::fs::metadata(&index).is_ok_and(|m| m.len() >= (HEADER_SIZE + RECORD_SIZE) as u64)
        };
        let deadline = Instant::now() + PATIENCE;
        while !durable() {
            assert!(
                Instant::now() < deadline,
                "no fragment durable within {PATIENCE:?}"
            );
            rec.send_one().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rec
    }

    async fn send_one(&mut self) {
        let m = self.feed.next_media().unwrap();
        let t_us = m.dts as u64 * 1_000_000 / u64::from(m.track.timescale());
        self.sent.push((m.track, t_us));
        self.uplink.media(m).await.unwrap();
    }

    /// Sends `seconds` of media.
    async fn send(&mut self, seconds: f64) {
        let end = self.feed.next_time_us() + (seconds * 1e6) as u64;
        while self.feed.next_time_us() < end {
            self.send_one().await;
            self.collect();
        }
    }

    /// Reads what the recorder sent so far.
    fn collect(&mut self) {
        while let Some(ev) = self.uplink.try_event() {
            match ev {
                UplinkEvent::Recorder(e) => {
                    if let MixerEvent::Started { path, .. } = &e {
                        self.first_dir = Some(PathBuf::from(path.as_str()));
                    }
                    self.events.push(e);
                }
                UplinkEvent::Closed(reason) => panic!("link closed: {reason:?}"),
            }
        }
    }

    /// Starts a new phase: waits look only at events from now on.
    fn mark(&mut self) {
        self.collect();
        self.cursor = self.events.len();
    }

    /// Keeps sending media (a little faster than real time) until an event of this
    /// phase matches; the order of notices from different sources is not fixed.
    async fn until(&mut self, what: &str, matches: impl Fn(&MixerEvent) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.collect();
            if self.events[self.cursor..].iter().any(&matches) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {PATIENCE:?}; events: {:#?}",
                self.events
            );
            self.send_one().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops, and checks the notices and the segments of a recording that failed
    /// over to `spool` and came back.
    async fn stop_and_check(self, spool: &Path, loss: Loss) -> Vec<MixerEvent> {
        let (summary, events, sent, first) = self.stop().await;
        check_notices(&events);
        check_recording(&first, spool, &sent, &summary, loss);
        events
    }

    async fn stop(mut self) -> (Summary, Vec<MixerEvent>, Vec<(Track, u64)>, PathBuf) {
        let summary = common::stop(&mut self.uplink, &mut self.events).await;
        let dir = self.first_dir.expect("Started names segment 0");
        (summary, self.events, self.sent, dir)
    }
}

fn fault(kind: FaultKind) -> impl Fn(&MixerEvent) -> bool {
    move |e| matches!(e, MixerEvent::Fault(f) if f.kind == kind)
}

fn cleared(kind: FaultKind) -> impl Fn(&MixerEvent) -> bool {
    move |e| matches!(e, MixerEvent::Cleared { kind: k, .. } if *k == kind)
}

/// No fault is reported twice while it persists, and nothing was dropped.
fn check_notices(events: &[MixerEvent]) {
    let mut active: HashSet<(FaultKind, FaultTarget)> = HashSet::new();
    for e in events {
        match e {
            MixerEvent::Fault(f) => {
                assert_ne!(f.kind, FaultKind::MediaDropped, "{f:?}");
                // `Recovered` is a notice, not a state.
                if f.kind != FaultKind::Recovered {
                    assert!(
                        active.insert((f.kind, f.target)),
                        "{f:?} reported twice; events: {events:#?}"
                    );
                }
            }
            MixerEvent::Cleared { kind, target, .. } => {
                assert!(
                    active.remove(&(*kind, *target)),
                    "{kind:?}/{target:?} cleared but not active; events: {events:#?}"
                );
            }
            _ => {}
        }
    }
    assert!(active.is_empty(), "still active at the end: {active:?}");
}

/// The segments of the recording whose segment 0 is `first`, in order, each
/// recovered first as the recorder does at its next start (a segment whose disk
/// failed could not be closed).
fn segments(first: &Path) -> Vec<PathBuf> {
    let chain = std::fs::read_to_string(first.join(CHAIN_FILE)).unwrap();
    let dirs: Vec<PathBuf> = parse_chain(&chain)
        .unwrap()
        .into_iter()
        .map(|e| e.dir)
        .collect();
    for dir in &dirs {
        recover(dir).unwrap();
    }
    dirs
}

/// What a disk error may take with it: media that `fdatasync` had reported durable
/// on the failing disk before the error. Nothing else may ever be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    None,
    DurableBeforeTheError,
}

/// Checks a recording that failed over at least once and came back: every frame
/// sent is in exactly one segment (but what `loss` allows), segments on primary and
/// spool alternate.
fn check_recording(
    first: &Path,
    spool: &Path,
    sent: &[(Track, u64)],
    summary: &Summary,
    loss: Loss,
) {
    let dirs = segments(first);
    assert!(dirs.len() >= 3, "primary, spool, primary: {dirs:?}");
    for (n, dir) in dirs.iter().enumerate() {
        assert_eq!(dir.starts_with(spool), n % 2 == 1, "{}", dir.display());
    }
    let gap = (loss == Loss::DurableBeforeTheError).then_some(0);
    let found = check_segments_but_a_gap_after(&dirs, gap);

    // Media between the end of what segment 0 still holds and the start of segment 1.
    let (_, _, records) = segment_contents(&dirs[0]);
    let kept_until = records.last().map_or(0, IndexRecord::end_us);
    let chain = parse_chain(&std::fs::read_to_string(first.join(CHAIN_FILE)).unwrap()).unwrap();
    let lost = kept_until..chain[1].first_us;
    if loss == Loss::None {
        assert!(lost.is_empty(), "media lost: {lost:?} us");
        let records: u64 = dirs
            .iter()
            .map(|d| std::fs::metadata(d.join(INDEX_FILE)).unwrap().len() - HEADER_SIZE as u64)
            .sum();
        assert_eq!(
            u64::from(summary.fragments),
            records / RECORD_SIZE as u64,
            "the summary counts every indexed fragment"
        );
    }
    let count = |track| {
        sent.iter()
            .filter(|(t, at)| *t == track && !lost.contains(at))
            .count() as u64
    };
    assert_eq!(found.0, count(Track::Video));
    // Fragments are cut at video keyframes; an audio frame that straddles the cut
    // belongs to either side, so a lost range may take one less or one more.
    let slack = u64::from(!lost.is_empty());
    let audio = count(Track::Audio);
    assert!(
        found.1.abs_diff(audio) <= slack,
        "audio frames: found {}, sent {audio} outside {lost:?} us",
        found.1
    );
}

fn chattr(flag: &str, file: &Path) {
    let ok = Command::new("chattr")
        .arg(flag)
        .arg(file)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chattr {flag} {}", file.display());
}

/// Fills `dir`'s filesystem until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

/// Fills the primary during a recording, then frees it again.
async fn fill_and_free(primary: &Path) {
    let spool = tempfile::tempdir().unwrap();
    let mut rec = Recording::start(primary, Some(spool.path())).await;

    rec.mark();
    let filler = fill(primary);
    rec.until("DiskFull", fault(FaultKind::DiskFull)).await;
    rec.until("Failover", fault(FaultKind::Failover)).await;
    rec.send(2.0).await;

    rec.mark();
    std::fs::remove_file(filler).unwrap();
    rec.until("Recovered", fault(FaultKind::Recovered)).await;
    rec.send(1.0).await;

    rec.stop_and_check(spool.path(), Loss::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tmpfs_fails_over_to_the_spool_and_back() {
    if let Some(primary) = tmpfs("16m") {
        fill_and_free(primary.path()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ext4_disk_fails_over_to_the_spool_and_back() {
    if let Some(disk) = loop_disk(32 * MIB) {
        fill_and_free(disk.path()).await;
    }
}

/// A file system cannot be remounted read-only while files are open for writing;
/// the kernel does it by force when ext4 meets an error (`errors=remount-ro`), which
/// is how a failing recording disk turns read-only. It comes back after a repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_turned_read_only_by_an_error_fails_over_and_back_after_repair() {
    let Some(disk) = loop_disk(32 * MIB) else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let mut rec = Recording::start(disk.path(), Some(spool.path())).await;

    rec.mark();
    if !disk.trigger_fs_error() {
        eprintln!("SKIPPED: this kernel's ext4 cannot be made to report an error");
        return;
    }
    rec.until("ReadOnly", fault(FaultKind::ReadOnly)).await;
    rec.until("Failover", fault(FaultKind::Failover)).await;
    rec.send(1.0).await;

    // The operator's repair: unmount, check, mount again.
    rec.mark();
    assert!(disk.lazy_unmount());
    rec.until("DiskOffline", fault(FaultKind::DiskOffline))
        .await;
    assert!(disk.repair());
    rec.mark();
    assert!(disk.mount_again());
    rec.until("Recovered", fault(FaultKind::Recovered)).await;
    rec.send(1.0).await;

    rec.stop_and_check(spool.path(), Loss::DurableBeforeTheError)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazily_unmounted_disk_fails_over_and_back_when_mounted_again() {
    let Some(disk) = loop_disk(32 * MIB) else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let mut rec = Recording::start(disk.path(), Some(spool.path())).await;

    rec.mark();
    assert!(disk.lazy_unmount());
    rec.until("DiskOffline", fault(FaultKind::DiskOffline))
        .await;
    rec.until("Failover", fault(FaultKind::Failover)).await;
    rec.send(1.0).await;

    // The same disk comes back (the detached mount let go of it at failover).
    rec.mark();
    assert!(disk.mount_again());
    rec.until("Recovered", fault(FaultKind::Recovered)).await;
    rec.send(1.0).await;

    rec.stop_and_check(spool.path(), Loss::None).await;
}

/// The index file refuses writes (immutable) while the media file takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_only_failure_is_reported_for_the_index_and_fails_over() {
    let Some(disk) = loop_disk(32 * MIB) else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let mut rec = Recording::start(disk.path(), Some(spool.path())).await;

    let index = rec.first_dir.clone().unwrap().join(INDEX_FILE);
    rec.mark();
    chattr("+i", &index);
    let index_fault = |e: &MixerEvent| matches!(e, MixerEvent::Fault(f) if f.target == FaultTarget::Index && f.kind == FaultKind::IndexWriteFailed);
    rec.until("index fault", index_fault).await;
    rec.until("Failover", fault(FaultKind::Failover)).await;
    // The probe finds the disk writable, so the recording moves back into new files;
    // the index fault clears with the first index record written there.
    rec.until("Recovered", fault(FaultKind::Recovered)).await;
    rec.until("index fault cleared", cleared(FaultKind::IndexWriteFailed))
        .await;
    rec.send(1.0).await;
    rec.mark();
    chattr("-i", &index);

    let events = rec.stop_and_check(spool.path(), Loss::None).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, MixerEvent::Fault(f) if f.target == FaultTarget::File)),
        "the media file never failed: {events:#?}"
    );
}

/// The recording's media file removed under it: writes into it still succeed, so
/// only the storage monitor's check of the open file can tell. The fault is
/// announced, and the recording goes on in new files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_recording_file_is_announced_and_the_recording_goes_on_in_new_files() {
    let (primary, spool) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut rec = Recording::start(primary.path(), Some(spool.path())).await;

    let first = rec.first_dir.clone().unwrap();
    rec.mark();
    std::fs::remove_file(first.join(MP4_FILE)).unwrap();
    let file_fault = |e: &MixerEvent| matches!(e, MixerEvent::Fault(f) if f.target == FaultTarget::File && f.kind == FaultKind::FileWriteFailed && f.detail.contains("removed"));
    rec.until("file fault", file_fault).await;
    rec.until("Failover", fault(FaultKind::Failover)).await;
    rec.until("Recovered", fault(FaultKind::Recovered)).await;
    rec.until("file fault cleared", cleared(FaultKind::FileWriteFailed))
        .await;
    rec.send(1.0).await;

    let (_, events, sent, first) = rec.stop().await;
    check_notices(&events);
    let chain = parse_chain(&std::fs::read_to_string(first.join(CHAIN_FILE)).unwrap()).unwrap();
    let dirs: Vec<PathBuf> = chain.iter().map(|e| e.dir.clone()).collect();
    assert!(dirs.len() >= 3, "primary, spool, primary again: {dirs:?}");
    assert!(dirs[1].starts_with(spool.path()) && dirs[2].starts_with(primary.path()));
    for dir in &dirs[1..] {
        recover(dir).unwrap();
    }
    // What went into the removed file is gone with it; from the switch on, nothing.
    let found = check_segments_from(&dirs, 1, None);
    let count = |track| {
        sent.iter()
            .filter(|(t, at)| *t == track && *at >= chain[1].first_us)
            .count() as u64
    };
    assert_eq!(found.0, count(Track::Video));
    assert!(found.1.abs_diff(count(Track::Audio)) <= 1, "{found:?}");
}

/// Without a spool, the failing write is retried: the fault is reported once, and
/// nothing is lost once the index takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_a_failed_index_write_is_retried_until_it_succeeds() {
    let Some(disk) = loop_disk(32 * MIB) else {
        return;
    };
    let mut rec = Recording::start(disk.path(), None).await;

    let index = rec.first_dir.clone().unwrap().join(INDEX_FILE);
    rec.mark();
    chattr("+i", &index);
    rec.until("index fault", fault(FaultKind::IndexWriteFailed))
        .await;
    // Several fragments' worth of retries, each failing, none reported again.
    rec.send(4.0).await;
    rec.mark();
    chattr("-i", &index);
    rec.until("index fault cleared", cleared(FaultKind::IndexWriteFailed))
        .await;

    let (summary, events, sent, first) = rec.stop().await;
    check_notices(&events);
    let dirs = vec![first];
    assert!(recover(&dirs[0]).unwrap().was_clean());
    let count = |track| sent.iter().filter(|(t, _)| *t == track).count() as u64;
    assert_eq!(
        check_segments(&dirs),
        (count(Track::Video), count(Track::Audio))
    );
    assert!(summary.fragments > 0);
}
