//! The kernel uevent socket for real: it opens where netlink is available, and, where
//! this process may write to sysfs, a synthetic `change` uevent written to a device's
//! `uevent` file comes back through it, parsed.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use recbox::storage::device::{BackingDevice, SYSFS};
use recbox::storage::netlink::{UeventSocket, UeventSource};
use recbox::storage::uevent::UeventAction;

/// A harmless device to poke: a loop device (a synthetic `change` only makes udev
/// re-read it), else `/dev/null`.
fn device_to_poke() -> Option<PathBuf> {
    let loops = fs::read_dir("/sys/class/block").ok().into_iter().flatten();
    let mut loops: Vec<PathBuf> = loops
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .map(|e| e.path().join("uevent"))
        .collect();
    loops.sort();
    loops
        .into_iter()
        .chain([PathBuf::from("/sys/devices/virtual/mem/null/uevent")])
        .find(|p| p.exists())
}

#[tokio::test]
async fn socket_opens_and_receives_a_synthetic_uevent() {
    let mut source = match UeventSource::open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: netlink uevent socket unavailable here: {e}");
            return;
        }
    };
    let Some(path) = device_to_poke() else {
        eprintln!("skipping the trigger: no loop device nor /dev/null in sysfs");
        return;
    };
    // Synthetic uevents carry a UUID (kernel 4.13+), which tells ours apart from any
    // other event arriving meanwhile.
    let uuid = format!("7265636b-626f-4000-8000-{:012x}", std::process::id());
    if let Err(e) = fs::write(&path, format!("change {uuid} RECBOX=1")) {
        // Not root, or sysfs mounted read-only (containers): only the opening is tested.
        let denied = matches!(
            e.kind(),
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
        );
        assert!(denied, "writing {}: {e}", path.display());
        eprintln!("skipping the trigger: cannot write {}: {e}", path.display());
        return;
    }
    let devpath = fs::canonicalize(path.parent().unwrap()).unwrap();
    let devpath = format!("/{}", devpath.strip_prefix("/sys").unwrap().display());

    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = source.recv().await.expect("receive");
            if ev.get("SYNTH_UUID") == Some(uuid.as_str()) {
                return ev;
            }
        }
    })
    .await
    .expect("the synthetic uevent arrives");
    assert_eq!(found.action, UeventAction::Change);
    assert_eq!(found.devpath, devpath);
    assert_eq!(found.get("SYNTH_ARG_RECBOX"), Some("1"));
    assert!(found.major.is_some() && found.minor.is_some());
    assert!(found.seqnum.is_some());

    // For a block device, the sysfs resolution used for the storage names the device
    // exactly as the kernel's events do.
    if found.is_block() {
        let (major, minor) = (found.major.unwrap(), found.minor.unwrap());
        let dev = BackingDevice {
            mount_point: "/".into(),
            fstype: "none".into(),
            major,
            minor,
            devpath: None,
            parent_devpath: None,
            read_only: false,
        }
        .with_sysfs(Path::new(SYSFS));
        assert_eq!(dev.devpath.as_deref(), Some(found.devpath.as_str()));
        // A plain change is no news for the storage.
        assert_eq!(dev.matches(&found), None);
    }
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    let err = UeventSocket::open().unwrap_err();
    assert!(err.to_string().contains("uevent socket"), "{err}");
}

/// Runs a setup command; `None` (and a note) if it is missing or fails, so the test
/// is skipped where it cannot build its disk.
fn run(cmd: &str, args: &[&str]) -> Option<String> {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            eprintln!(
                "skipping: {cmd} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("skipping: {cmd}: {e}");
            None
        }
    }
}

/// Unmounts and detaches the loop disk whatever happens in the test.
struct LoopDisk {
    dev: String,
    mnt: PathBuf,
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let mnt = self.mnt.to_string_lossy().into_owned();
        let _ = std::process::Command::new("umount")
            .args(["-l", &mnt])
            .output();
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.dev])
            .output();
    }
}

/// A real ext4 file system on a loop device, watched by every source while it fills
/// up, is remounted read-only, lazily unmounted and detached. Needs root, `losetup`
/// and `mkfs.ext4`; skipped otherwise.
#[tokio::test]
async fn loop_disk_faults_are_seen_by_every_watcher() {
    use recbox::link::frame::{FaultKind, FaultTarget};
    use recbox::storage::device::DeviceEvent;
    use recbox::storage::health::{HealthConfig, HealthEvent, Observation, StorageHealth};
    use recbox::storage::mountinfo::{read, SELF_MOUNTINFO};
    use recbox::storage::mounts::{MountChange, MountWatch};
    use recbox::storage::{errno, space};

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to attach and mount a loop device");
        return;
    }
    let Ok(mut source) = UeventSource::open() else {
        eprintln!("skipping: no uevent socket");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    let img = img.to_str().unwrap();
    let Some(_) = run("mkfs.ext4", &["-q", "-F", "-m", "0", img]) else {
        return;
    };
    let Some(dev) = run("losetup", &["-f", "--show", img]) else {
        return;
    };
    let disk = LoopDisk {
        dev: dev.trim().to_owned(),
        mnt: dir.path().join("mnt"),
    };
    fs::create_dir(&disk.mnt).unwrap();
    let mnt = disk.mnt.to_str().unwrap().to_owned();
    let Some(_) = run("mount", &[&disk.dev, &mnt]) else {
        return;
    };

    let root = disk.mnt.join("rec");
    fs::create_dir(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let backing = BackingDevice::resolve(&root).unwrap();
    assert_eq!((backing.fstype.as_str(), backing.major), ("ext4", 7));
    let name = disk.dev.trim_start_matches("/dev/");
    assert_eq!(
        backing.devpath,
        Some(format!("/devices/virtual/block/{name}"))
    );
    assert!(!backing.read_only);
    let mut mounts = MountWatch::new(&read(Path::new(SELF_MOUNTINFO)).unwrap(), &root).unwrap();
    let mut health = StorageHealth::new(HealthConfig {
        low_space_bytes: Some(8 << 20),
        full_space_bytes: 4 << 20,
        hysteresis_bytes: 1 << 20,
    });
    let kinds = |events: Vec<HealthEvent>| -> Vec<FaultKind> {
        events
            .into_iter()
            .map(|e| match e {
                HealthEvent::Fault { kind, .. } => kind,
                HealthEvent::Cleared { kind, .. } => panic!("unexpected clear of {kind:?}"),
            })
            .collect()
    };

    // Fill the disk to 2 MiB short of full: the watermark fires before any write fails.
    let free = space::statvfs(&root).unwrap();
    assert!(free.free_bytes > 8 << 20, "{free:?}");
    let filler = root.join("filler");
    fs::write(&filler, vec![0u8; (free.free_bytes - (2 << 20)) as usize]).unwrap();
    fs::File::open(&filler).unwrap().sync_all().unwrap();
    let obs = Observation::from(space::statvfs(&root).unwrap());
    assert_eq!(
        kinds(health.observe(obs, 1)),
        [FaultKind::LowSpace, FaultKind::DiskFull]
    );
    assert!(!health.usable());

    // Remounted read-only: the mount table says so and writes fail with EROFS.
    run("mount", &["-o", "remount,ro", &mnt]).expect("remount read-only");
    let change = mounts.update(&read(Path::new(SELF_MOUNTINFO)).unwrap());
    assert_eq!(change, Some(MountChange::ReadOnly));
    assert_eq!(
        kinds(health.observe(Observation::Mount(change.unwrap()), 2)),
        [FaultKind::ReadOnly]
    );
    let err = fs::write(root.join("more"), b"x").unwrap_err();
    assert_eq!(errno::classify(&err), FaultKind::ReadOnly);

    // Lazily unmounted: gone from the table.
    run("umount", &["-l", &mnt]).expect("lazy unmount");
    let change = mounts.update(&read(Path::new(SELF_MOUNTINFO)).unwrap());
    assert_eq!(change, Some(MountChange::Unmounted));
    assert_eq!(
        kinds(health.observe(Observation::Mount(MountChange::Unmounted), 3)),
        [FaultKind::DiskOffline]
    );

    // Detached: the kernel reports the medium gone for that very device.
    run("losetup", &["-d", &disk.dev]).expect("detach");
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = source.recv().await.expect("receive");
            if let Some(event) = backing.matches(&ev) {
                return event;
            }
        }
    })
    .await
    .expect("the detach uevent arrives");
    assert_eq!(event, DeviceEvent::MediaChanged);
    // Already offline through the unmount: no second report.
    assert!(health.observe(Observation::Device(event), 4).is_empty());
    let offline = health
        .active_faults()
        .find(|f| f.kind == FaultKind::DiskOffline)
        .unwrap();
    assert_eq!((offline.target, offline.since), (FaultTarget::Storage, 3));
}
