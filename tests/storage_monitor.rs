//! The storage monitor on a real filesystem: a size-limited tmpfs that is remounted
//! read-only, lazily unmounted, mounted again and filled.

mod common;

use std::time::Duration;

use recbox::link::frame::{FaultKind, FaultTarget};
use recbox::recorder::monitor::{MonitorConfig, StorageMonitor};
use recbox::storage::health::{HealthConfig, HealthEvent};
use recbox::testbed::scratch::Mounted;
use tokio::sync::broadcast::Receiver;

async fn next(events: &mut Receiver<HealthEvent>) -> (bool, FaultKind, FaultTarget) {
    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("a storage event")
        .unwrap();
    match ev {
        HealthEvent::Fault { kind, target, .. } => (true, kind, target),
        HealthEvent::Cleared { kind, target, .. } => (false, kind, target),
    }
}

const FAULT: bool = true;
const CLEARED: bool = false;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_unmount_return_and_filling_are_reported_once_each() {
    let Some(fs) = common::tmpfs("4m") else {
        return;
    };
    let monitor = StorageMonitor::spawn(MonitorConfig {
        root: fs.path().to_path_buf(),
        poll: Duration::from_millis(50),
        health: HealthConfig {
            low_space_bytes: Some(2 << 20),
            full_space_bytes: 1 << 20,
            hysteresis_bytes: 256 << 10,
        },
    });
    let mut events = monitor.subscribe();
    let storage = FaultTarget::Storage;

    assert!(fs.remount("ro"));
    assert_eq!(
        next(&mut events).await,
        (FAULT, FaultKind::ReadOnly, storage)
    );
    assert!(!monitor.is_usable());
    assert!(fs.remount("rw"));
    assert_eq!(
        next(&mut events).await,
        (CLEARED, FaultKind::ReadOnly, storage)
    );
    assert!(monitor.is_usable());

    assert!(fs.lazy_unmount());
    assert_eq!(
        next(&mut events).await,
        (FAULT, FaultKind::DiskOffline, storage)
    );
    assert!(!monitor.is_usable());
    assert!(fs.mount_again("4m"));
    assert_eq!(
        next(&mut events).await,
        (CLEARED, FaultKind::DiskOffline, storage)
    );
    assert!(monitor.is_usable());
    assert!(monitor.active_faults().is_empty());

    // Fill past the low watermark, then past the full one: DiskFull comes before any
    // write has failed.
    let file = fs.path().join("filler");
    std::fs::write(&file, vec![1u8; (2 << 20) + (512 << 10)]).unwrap();
    assert_eq!(
        next(&mut events).await,
        (FAULT, FaultKind::LowSpace, storage)
    );
    assert!(
        monitor.is_usable(),
        "a low-space warning alone keeps the disk usable"
    );
    std::fs::write(&file, vec![1u8; (3 << 20) + (512 << 10)]).unwrap();
    assert_eq!(
        next(&mut events).await,
        (FAULT, FaultKind::DiskFull, storage)
    );
    assert!(!monitor.is_usable());
    std::fs::remove_file(&file).unwrap();
    let mut cleared = vec![next(&mut events).await, next(&mut events).await];
    cleared.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        cleared,
        [
            (CLEARED, FaultKind::DiskFull, storage),
            (CLEARED, FaultKind::LowSpace, storage)
        ]
    );
    assert!(monitor.is_usable());

    // Nothing was reported twice: no event is left over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(events.try_recv().is_err());
}
