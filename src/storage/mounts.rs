//! Watches the mount table for the storage root: unmounted (lazily or not), remounted
//! read-only or read-write, mounted again.
//!
//! The storage is *present* while the root resolves to a mount at the mount point the
//! storage had when first seen. After `umount` (or `umount -l`, which only detaches
//! the mount from the table) the root resolves to the mount below, at another point.
//! Paths are compared as given: pass the canonical root taken at start, as the root
//! may not exist once the storage is gone.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::mountinfo;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MountsError {
    #[error("no mount holds {0}")]
    NoMount(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountChange {
    /// The storage mount is gone, or was replaced by another mount between two looks
    /// (files opened before belong to the old one).
    Unmounted,
    /// The storage (or this mount of it) became read-only; also a storage that comes
    /// back mounted read-only.
    ReadOnly,
    /// The storage became writable again.
    ReadWrite,
    /// The storage's file system was shut down: every write fails with `EIO`.
    ShutDown,
    /// The storage is mounted again, writable.
    Mounted,
}

/// Where the storage root stands in one mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountSnapshot {
    /// Mount point of the storage when first seen.
    storage_mount_point: PathBuf,
    /// The mount the root resolved to (`None`: nothing holds it, e.g. an empty table).
    mount_id: Option<u32>,
    /// The root resolved to a mount at `storage_mount_point`.
    pub(crate) present: bool,
    /// That mount refuses writes (meaningful while `present`).
    pub(crate) read_only: bool,
    /// Its file system was shut down (meaningful while `present`).
    shut_down: bool,
}

impl MountSnapshot {
    /// The storage as it is now, taking the mount that holds `root` as the storage mount.
    fn capture(mountinfo: &str, root: &Path) -> Result<Self, MountsError> {
        let entries = mountinfo::parse(mountinfo);
        let entry = mountinfo::mount_of(&entries, root)
            .ok_or_else(|| MountsError::NoMount(root.to_owned()))?;
        Ok(Self {
            storage_mount_point: entry.mount_point.clone(),
            mount_id: Some(entry.mount_id),
            present: true,
            read_only: entry.read_only(),
            shut_down: entry.shut_down(),
        })
    }

    /// The same storage seen in a later mount table.
    fn next(&self, mountinfo: &str, root: &Path) -> Self {
        let entries = mountinfo::parse(mountinfo);
        let entry = mountinfo::mount_of(&entries, root);
        let present = entry.is_some_and(|e| e.mount_point == self.storage_mount_point);
        Self {
            storage_mount_point: self.storage_mount_point.clone(),
            mount_id: entry.map(|e| e.mount_id),
            present,
            read_only: present && entry.is_some_and(|e| e.read_only()),
            shut_down: present && entry.is_some_and(|e| e.shut_down()),
        }
    }
}

/// What changed for the storage between `before` and the table `now_mountinfo`.
#[cfg(test)]
fn mount_change(before: &MountSnapshot, now_mountinfo: &str, root: &Path) -> Option<MountChange> {
    diff(before, &before.next(now_mountinfo, root))
}

fn diff(before: &MountSnapshot, now: &MountSnapshot) -> Option<MountChange> {
    match (before.present, now.present) {
        (true, false) => Some(MountChange::Unmounted),
        (true, true) if before.mount_id != now.mount_id => Some(MountChange::Unmounted),
        // Only a new mount ends a shutdown, and that is seen as unmounted, mounted.
        (true, true) if now.shut_down && !before.shut_down => Some(MountChange::ShutDown),
        (true, true) if before.read_only != now.read_only => Some(if now.read_only {
            MountChange::ReadOnly
        } else {
            MountChange::ReadWrite
        }),
        (false, true) if now.shut_down => Some(MountChange::ShutDown),
        (false, true) if now.read_only => Some(MountChange::ReadOnly),
        (false, true) => Some(MountChange::Mounted),
        _ => None,
    }
}

/// Keeps the last snapshot so that each call reports only what changed since the
/// previous one.
#[derive(Debug, Clone)]
pub struct MountWatch {
    root: PathBuf,
    last: MountSnapshot,
}

impl MountWatch {
    /// `root` must be absolute and canonical.
    pub fn new(mountinfo: &str, root: &Path) -> Result<Self, MountsError> {
        Ok(Self {
            root: root.to_owned(),
            last: MountSnapshot::capture(mountinfo, root)?,
        })
    }

    pub fn update(&mut self, mountinfo: &str) -> Option<MountChange> {
        let now = self.last.next(mountinfo, &self.root);
        let change = diff(&self.last, &now);
        if let Some(change) = change {
            tracing::info!(?change, root = %self.root.display(), "storage mount changed");
        }
        self.last = now;
        change
    }

    pub(crate) fn snapshot(&self) -> &MountSnapshot {
        &self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
21 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
41 21 0:36 / /tmp rw,nosuid,nodev shared:20 - tmpfs tmpfs rw,size=972000k
";
    const DISK: &str = "87 21 8:1 / /media/rec rw,nosuid,nodev,relatime shared:45 - ext4 /dev/sda1 rw,errors=remount-ro\n";
    const DISK_SB_RO: &str = "87 21 8:1 / /media/rec rw,nosuid,nodev,relatime shared:45 - ext4 /dev/sda1 ro,errors=remount-ro\n";
    const DISK_MOUNT_RO: &str = "87 21 8:1 / /media/rec ro,nosuid,nodev,relatime shared:45 - ext4 /dev/sda1 rw,errors=remount-ro\n";
    /// Plugged back in: new mount id, new device name.
    const DISK_AGAIN: &str =
        "93 21 8:17 / /media/rec rw,nosuid,nodev,relatime shared:50 - ext4 /dev/sdb1 rw\n";
    const DISK_AGAIN_RO: &str =
        "93 21 8:17 / /media/rec ro,nosuid,nodev,relatime shared:50 - ext4 /dev/sdb1 ro\n";

    fn root() -> &'static Path {
        Path::new("/media/rec/rooms")
    }

    fn table(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    fn start() -> MountSnapshot {
        MountSnapshot::capture(&table(DISK), root()).unwrap()
    }

    #[test]
    fn capture() {
        let s = start();
        assert_eq!(s.storage_mount_point, Path::new("/media/rec"));
        assert_eq!(s.mount_id, Some(87));
        assert!(s.present && !s.read_only);
        assert_eq!(
            MountSnapshot::capture("", root()),
            Err(MountsError::NoMount(root().to_owned()))
        );
    }

    #[test]
    fn unchanged() {
        assert_eq!(mount_change(&start(), &table(DISK), root()), None);
    }

    #[test]
    fn unmount_including_lazy() {
        // `umount` and `umount -l` look the same in the table: the entry is gone and the
        // root falls through to `/`.
        let now = start().next(&table(""), root());
        assert!(!now.present);
        assert_eq!(now.mount_id, Some(21));
        assert_eq!(
            mount_change(&start(), &table(""), root()),
            Some(MountChange::Unmounted)
        );
        // Even with nothing at all left in the table.
        assert_eq!(
            mount_change(&start(), "", root()),
            Some(MountChange::Unmounted)
        );
    }

    #[test]
    fn remount_read_only_by_super_block_or_mount() {
        assert_eq!(
            mount_change(&start(), &table(DISK_SB_RO), root()),
            Some(MountChange::ReadOnly)
        );
        assert_eq!(
            mount_change(&start(), &table(DISK_MOUNT_RO), root()),
            Some(MountChange::ReadOnly)
        );
        let ro = start().next(&table(DISK_SB_RO), root());
        assert_eq!(
            mount_change(&ro, &table(DISK), root()),
            Some(MountChange::ReadWrite)
        );
        assert_eq!(mount_change(&ro, &table(DISK_MOUNT_RO), root()), None);
    }

    #[test]
    fn file_system_shut_down() {
        let shut = "87 21 8:1 / /media/rec rw,nosuid,nodev,relatime shared:45 - ext4 /dev/sda1 rw,shutdown\n";
        assert_eq!(
            mount_change(&start(), &table(shut), root()),
            Some(MountChange::ShutDown)
        );
        let down = start().next(&table(shut), root());
        assert!(down.shut_down && !down.read_only);
        assert_eq!(mount_change(&down, &table(shut), root()), None);
        // Mounted again after `umount -l`: a new mount, no longer shut down.
        assert_eq!(
            mount_change(&down, &table(DISK_AGAIN), root()),
            Some(MountChange::Unmounted)
        );
        let gone = down.next(&table(""), root());
        assert_eq!(
            mount_change(&gone, &table(DISK_AGAIN), root()),
            Some(MountChange::Mounted)
        );
    }

    #[test]
    fn replaced_between_looks_is_an_unmount() {
        assert_eq!(
            mount_change(&start(), &table(DISK_AGAIN), root()),
            Some(MountChange::Unmounted)
        );
    }

    #[test]
    fn mounted_again() {
        let gone = start().next(&table(""), root());
        assert_eq!(mount_change(&gone, &table(""), root()), None);
        assert_eq!(
            mount_change(&gone, &table(DISK_AGAIN), root()),
            Some(MountChange::Mounted)
        );
        assert_eq!(
            mount_change(&gone, &table(DISK_AGAIN_RO), root()),
            Some(MountChange::ReadOnly)
        );
    }

    #[test]
    fn something_mounted_below_the_root_is_not_the_storage() {
        let gone = start().next(&table(""), root());
        let below = "99 21 0:60 / /media/rec/rooms rw - tmpfs tmpfs rw\n";
        assert_eq!(mount_change(&gone, &table(below), root()), None);
        assert_eq!(
            mount_change(&start(), &table(&format!("{DISK}{below}")), root()),
            Some(MountChange::Unmounted)
        );
    }

    #[test]
    fn watch_reports_each_change_once() {
        let mut w = MountWatch::new(&table(DISK), root()).unwrap();
        let steps = [
            (table(DISK), None),
            (table(DISK_SB_RO), Some(MountChange::ReadOnly)),
            (table(DISK_SB_RO), None),
            (table(DISK), Some(MountChange::ReadWrite)),
            (table(""), Some(MountChange::Unmounted)),
            (table(""), None),
            (table(DISK_AGAIN), Some(MountChange::Mounted)),
            (table(DISK_AGAIN), None),
            (table(DISK_AGAIN_RO), Some(MountChange::ReadOnly)),
        ];
        for (i, (t, want)) in steps.into_iter().enumerate() {
            assert_eq!(w.update(&t), want, "step {i}");
        }
        assert_eq!(w.snapshot().mount_id, Some(93));
    }
}
