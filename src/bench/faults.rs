//! Fault latency: from the moment a storage fault happens to the `Fault` frame read
//! by a mixer-side link client, over many trials. Needs root (it mounts filesystems
//! and sets up a loop device); without it, it says so and measures nothing.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::latency::{ms, Percentiles};
use crate::link::codec::DEFAULT_MAX_FRAME;
use crate::link::frame::{text, FaultKind};
use crate::link::handshake::LinkKey;
use crate::link::session::MixerEvent;
use crate::link::transport::LinkListener;
use crate::mixer::uplink::{Uplink, UplinkEvent};
use crate::recorder::service::{self, RecorderConfig};
use crate::storage::health::HealthConfig;
use crate::synth::{PatternSpec, SyntheticFeed, ToneSpec};
use crate::testbed::scratch::{LoopDisk, Mounted, Tmpfs};

/// How long one trial may wait for its notice before the bench gives up.
const WAIT: Duration = Duration::from_secs(10);

pub async fn run(out: &mut dyn Write, trials: usize) -> io::Result<()> {
    writeln!(
        out,
        "{:<28} {:>7} {:>9} {:>9} {:>9}",
        "fault", "trials", "p50 ms", "p99 ms", "max ms"
    )?;
    let Some(tmpfs) = Tmpfs::mount("16m") else {
        writeln!(out, "skipped: mounting needs root (run the bench as root)")?;
        return Ok(());
    };
    read_only_trials(out, tmpfs.path(), trials).await?;
    drop(tmpfs);
    let Some(tmpfs) = Tmpfs::mount("16m") else {
        return Ok(());
    };
    write_full_trials(out, tmpfs.path(), trials).await?;
    drop(tmpfs);

    match LoopDisk::create(32 << 20) {
        Some(disk) => {
            let r = uevent_trials(out, &disk, trials).await;
            drop(disk);
            r?;
        }
        None => writeln!(
            out,
            "{:<28} skipped: no loop device or mkfs.ext4",
            "uevent remove"
        )?,
    }
    Ok(())
}

/// A recorder on `storage` with a recording open, the client that hears it, and
/// the participant that feeds it.
async fn recording_on(
    storage: &Path,
    tune: impl FnOnce(&mut RecorderConfig),
) -> io::Result<(Uplink, SyntheticFeed)> {
    let key = LinkKey::new(b"bench".to_vec()).map_err(io::Error::other)?;
    let mut config = RecorderConfig::new(storage.to_path_buf(), key.clone());
    config.storage_poll = Duration::from_millis(20);
    config.stats_interval = Duration::from_secs(3600);
    tune(&mut config);
    let listener = LinkListener::bind(&"127.0.0.1:0".parse().map_err(io::Error::other)?)
        .await
        .map_err(io::Error::other)?;
    let addr = listener.local_addr();
    tokio::spawn(service::serve(listener, Arc::new(config)));
    let uplink = Uplink::connect(&addr, key, text("bench"), DEFAULT_MAX_FRAME)
        .await
        .map_err(io::Error::other)?;
    // Small pictures: the write-fault trials send media as fast as it encodes.
    let video = PatternSpec {
        width: 320,
        height: 240,
        ..PatternSpec::default()
    };
    let feed = SyntheticFeed::new(video, ToneSpec::default()).map_err(io::Error::other)?;
    uplink
        .start(feed.start_params("bench", "bench"))
        .await
        .map_err(io::Error::other)?;
    Ok((uplink, feed))
}

/// Whether `event` is the `Fault` (or, with `cleared`, the `Cleared`) of `kind`;
/// an error when the link closed.
fn is_notice(event: Option<UplinkEvent>, kind: FaultKind, cleared: bool) -> io::Result<bool> {
    match event {
        Some(UplinkEvent::Recorder(MixerEvent::Fault(f))) => Ok(!cleared && f.kind == kind),
        Some(UplinkEvent::Recorder(MixerEvent::Cleared { kind: k, .. })) => {
            Ok(cleared && k == kind)
        }
        Some(UplinkEvent::Closed(reason)) => {
            Err(io::Error::other(format!("link closed: {reason:?}")))
        }
        None => Err(io::Error::other("link closed")),
        Some(_) => Ok(false),
    }
}

/// Sends media as fast as it encodes until the notice arrives: a write fault is
/// only met when the next fragment is written.
async fn send_until(
    uplink: &mut Uplink,
    feed: &mut SyntheticFeed,
    kind: FaultKind,
    cleared: bool,
) -> io::Result<Instant> {
    let deadline = Instant::now() + WAIT;
    loop {
        while let Some(event) = uplink.try_event() {
            if is_notice(Some(event), kind, cleared)? {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "no {kind:?} notice within {WAIT:?}"
            )));
        }
        let media = feed.next_media().map_err(io::Error::other)?;
        uplink.media(media).await.map_err(io::Error::other)?;
    }
}

/// Waits for a `Fault` (or, with `cleared`, a `Cleared`) of `kind`.
async fn wait_for(uplink: &mut Uplink, kind: FaultKind, cleared: bool) -> io::Result<Instant> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, uplink.next_event())
            .await
            .map_err(|_| io::Error::other(format!("no {kind:?} notice within {WAIT:?}")))?;
        if is_notice(event, kind, cleared)? {
            return Ok(Instant::now());
        }
    }
}

async fn read_only_trials(out: &mut dyn Write, root: &Path, trials: usize) -> io::Result<()> {
    let (mut uplink, _feed) = recording_on(root, |_| {}).await?;
    let mut latencies = Vec::with_capacity(trials);
    for _ in 0..trials {
        remount(root, true)?;
        let t0 = Instant::now();
        latencies.push(wait_for(&mut uplink, FaultKind::ReadOnly, false).await? - t0);
        remount(root, false)?;
        wait_for(&mut uplink, FaultKind::ReadOnly, true).await?;
    }
    report(out, "mount read-only", &latencies)
}

async fn uevent_trials(out: &mut dyn Write, disk: &LoopDisk, trials: usize) -> io::Result<()> {
    let (mut uplink, _feed) = recording_on(disk.path(), |_| {}).await?;
    let uevent = PathBuf::from(format!("/sys/class/block/{}/uevent", disk.name()));
    let mut latencies = Vec::with_capacity(trials);
    for _ in 0..trials {
        // A synthetic "remove" goes through the kernel's real uevent path to the
        // netlink socket, without taking the disk away.
        std::fs::write(&uevent, "remove")?;
        let t0 = Instant::now();
        latencies.push(wait_for(&mut uplink, FaultKind::DiskOffline, false).await? - t0);
        // The disk is still there: the probe clears the fault.
        wait_for(&mut uplink, FaultKind::DiskOffline, true).await?;
    }
    report(out, "uevent remove (loop ext4)", &latencies)
}

/// ENOSPC met by the recording's own write: the file system is filled, and the
/// clock runs until the `Fault` arrives while media keeps coming, so each trial
/// includes the wait for the next fragment to be written (watermarks are off, so
/// only the write can tell).
async fn write_full_trials(out: &mut dyn Write, root: &Path, trials: usize) -> io::Result<()> {
    let (mut uplink, mut feed) = recording_on(root, |c| {
        c.health = HealthConfig {
            low_space_bytes: Some(0),
            full_space_bytes: 0,
            hysteresis_bytes: 0,
        };
    })
    .await?;
    let filler = root.join("filler");
    let mut latencies = Vec::with_capacity(trials);
    for _ in 0..trials {
        fill(&filler)?;
        let t0 = Instant::now();
        latencies.push(send_until(&mut uplink, &mut feed, FaultKind::DiskFull, false).await? - t0);
        std::fs::remove_file(&filler)?;
        send_until(&mut uplink, &mut feed, FaultKind::DiskFull, true).await?;
    }
    report(out, "write ENOSPC (next fragment)", &latencies)
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0x5au8; 256 << 10];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return f.sync_all().or(Ok(())),
            Err(e) => return Err(e),
        }
    }
}

fn report(out: &mut dyn Write, what: &str, latencies: &[Duration]) -> io::Result<()> {
    let Some(p) = Percentiles::of(latencies) else {
        return writeln!(out, "{what:<28} no trials");
    };
    writeln!(
        out,
        "{what:<28} {:>7} {:>9.2} {:>9.2} {:>9.2}",
        p.count,
        ms(p.p50),
        ms(p.p99),
        ms(p.max)
    )
}

/// The remount system call itself, so the clock starts the moment it returns.
fn remount(target: &Path, read_only: bool) -> io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes())?;
    let mut flags = libc::MS_REMOUNT;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: valid NUL-terminated path; null source, type and data are allowed
    // for a remount.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
