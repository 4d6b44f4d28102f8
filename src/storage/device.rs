//! The block device behind the storage root, and which kernel uevents concern it.
//!
//! The root's mount comes from `/proc/self/mountinfo`; its `MAJ:MIN` leads through
//! `/sys/dev/block/MAJ:MIN` to the device's sysfs path, which is what uevents name
//! (`DEVPATH`). A partition's parent disk is the directory above it.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::mountinfo::{self, MountEntry};
use super::uevent::{Uevent, UeventAction};

/// Where sysfs is mounted on a normal system.
pub const SYSFS: &str = "/sys";

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("storage root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("reading the mount table {path}: {source}")]
    Mountinfo { path: PathBuf, source: io::Error },
    #[error("no mount holds {0}")]
    NoMount(PathBuf),
}

/// What a uevent means for the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The device, its disk, or something it hangs off (USB port, SCSI host) is gone.
    Removed,
    /// The device or something above it was taken offline.
    Offline,
    /// The disk reports a new or missing medium (card pulled, loop detached).
    MediaChanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingDevice {
    pub mount_point: PathBuf,
    pub fstype: String,
    /// Device number of the mounted file system (`0` major: no block device, e.g.
    /// tmpfs, overlay, NFS).
    pub major: u32,
    pub minor: u32,
    /// sysfs path of the block device, relative to `/sys` as uevents give it, e.g.
    /// `/devices/platform/.../block/mmcblk0/mmcblk0p2`.
    pub devpath: Option<String>,
    /// sysfs path of the whole disk when the device is a partition.
    pub parent_devpath: Option<String>,
    pub read_only: bool,
}

impl BackingDevice {
    /// The mount that holds `root` (absolute, canonical) in a mount table; sysfs paths
    /// are left unknown.
    fn from_mountinfo(mountinfo: &str, root: &Path) -> Result<Self, DeviceError> {
        let entries = mountinfo::parse(mountinfo);
        let entry = mountinfo::mount_of(&entries, root)
            .ok_or_else(|| DeviceError::NoMount(root.to_owned()))?;
        Ok(Self::from_entry(entry))
    }

    fn from_entry(e: &MountEntry) -> Self {
        Self {
            mount_point: e.mount_point.clone(),
            fstype: e.fstype.clone(),
            major: e.major,
            minor: e.minor,
            devpath: None,
            parent_devpath: None,
            read_only: e.read_only(),
        }
    }

    /// Resolves the device behind `root` on this system.
    pub fn resolve(root: &Path) -> Result<Self, DeviceError> {
        let canonical = root.canonicalize().map_err(|source| DeviceError::Root {
            path: root.to_owned(),
            source,
        })?;
        let table_path = Path::new(mountinfo::SELF_MOUNTINFO);
        let table = mountinfo::read(table_path).map_err(|source| DeviceError::Mountinfo {
            path: table_path.to_owned(),
            source,
        })?;
        let dev = Self::from_mountinfo(&table, &canonical)?.with_sysfs(Path::new(SYSFS));
        tracing::info!(
            root = %canonical.display(),
            mount_point = %dev.mount_point.display(),
            fstype = %dev.fstype,
            dev = %format_args!("{}:{}", dev.major, dev.minor),
            devpath = dev.devpath.as_deref().unwrap_or("-"),
            read_only = dev.read_only,
            "storage backing device"
        );
        Ok(dev)
    }

    /// Fills in the sysfs paths from a sysfs tree at `sys`. A device without a sysfs
    /// entry (no block device, or sysfs not mounted) keeps `None`: it is then matched by
    /// device number alone.
    pub fn with_sysfs(mut self, sys: &Path) -> Self {
        if self.major == 0 {
            return self;
        }
        let link = sys.join(format!("dev/block/{}:{}", self.major, self.minor));
        let (Ok(dir), Ok(sys)) = (link.canonicalize(), sys.canonicalize()) else {
            tracing::debug!(link = %link.display(), "no sysfs entry for the storage device");
            return self;
        };
        self.devpath = sysfs_relative(&sys, &dir);
        if dir.join("partition").is_file() {
            self.parent_devpath = dir.parent().and_then(|p| sysfs_relative(&sys, p));
        }
        self
    }

    /// What `ev` means for this device, if it concerns it at all.
    pub fn matches(&self, ev: &Uevent) -> Option<DeviceEvent> {
        if !self.concerns(ev) {
            return None;
        }
        match ev.action {
            UeventAction::Remove => Some(DeviceEvent::Removed),
            UeventAction::Offline => Some(DeviceEvent::Offline),
            UeventAction::Change if ev.disk_media_change => Some(DeviceEvent::MediaChanged),
            _ => None,
        }
    }

    /// The event's device is ours, our disk, or a device above them (a SCSI device, a
    /// USB interface, a controller): whatever happens to it happens to ours. Device
    /// numbers are compared for block devices only, as char devices reuse them.
    fn concerns(&self, ev: &Uevent) -> bool {
        let on_our_path = [&self.devpath, &self.parent_devpath]
            .into_iter()
            .flatten()
            .any(|ours| is_same_or_below(ours, &ev.devpath));
        let same_number = self.major != 0
            && ev.is_block()
            && ev.major == Some(self.major)
            && ev.minor == Some(self.minor);
        on_our_path || same_number
    }
}

/// `path` inside the sysfs tree `sys`, as uevents name it (`/devices/...`).
fn sysfs_relative(sys: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(sys).ok()?.to_str()?;
    Some(format!("/{relative}"))
}

/// `path` is `ancestor` or lies below it, comparing whole components.
fn is_same_or_below(path: &str, ancestor: &str) -> bool {
    let ancestor = ancestor.trim_end_matches('/');
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mountinfo::fixtures::{BOARD, CONTAINER};
    use crate::storage::uevent::fixtures::*;
    use crate::storage::uevent::{parse, Message};

    fn ev(buf: &[u8]) -> Uevent {
        match parse(buf).unwrap() {
            Message::Kernel(ev) => ev,
            Message::Udev => panic!("udev"),
        }
    }

    fn usb_partition() -> BackingDevice {
        BackingDevice {
            mount_point: "/media/rec".into(),
            fstype: "ext4".into(),
            major: 8,
            minor: 1,
            devpath: Some(USB_PART.into()),
            parent_devpath: Some(USB_DISK.into()),
            read_only: false,
        }
    }

    #[test]
    fn from_board_mount_table() {
        let d = BackingDevice::from_mountinfo(BOARD, Path::new("/media/rec/rooms")).unwrap();
        assert_eq!(d.mount_point, Path::new("/media/rec"));
        assert_eq!((d.fstype.as_str(), d.major, d.minor), ("ext4", 8, 1));
        assert!(!d.read_only);
        assert_eq!(d.devpath, None);

        let bind = BackingDevice::from_mountinfo(BOARD, Path::new("/srv/rooms/a")).unwrap();
        assert_eq!(
            (bind.mount_point.as_path(), bind.major, bind.minor),
            (Path::new("/srv/rooms"), 8, 1)
        );

        let sd = BackingDevice::from_mountinfo(BOARD, Path::new("/home/pi/rec")).unwrap();
        assert_eq!((sd.major, sd.minor), (179, 2));
    }

    #[test]
    fn from_container_mount_table() {
        let overlay = BackingDevice::from_mountinfo(CONTAINER, Path::new("/rec")).unwrap();
        assert_eq!((overlay.fstype.as_str(), overlay.major), ("overlay", 0));
        let data = BackingDevice::from_mountinfo(CONTAINER, Path::new("/data")).unwrap();
        assert_eq!((data.major, data.minor), (254, 1));
        assert!(matches!(
            BackingDevice::from_mountinfo("", Path::new("/data")),
            Err(DeviceError::NoMount(_))
        ));
    }

    #[test]
    fn read_only_mount() {
        let t = "87 21 8:1 / /media/rec ro,relatime - ext4 /dev/sda1 ro\n";
        assert!(
            BackingDevice::from_mountinfo(t, Path::new("/media/rec"))
                .unwrap()
                .read_only
        );
    }

    #[test]
    fn sysfs_partition_and_disk() {
        let sys = tempfile::tempdir().unwrap();
        let part = sys.path().join(USB_PART.trim_start_matches('/'));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        std::fs::create_dir_all(sys.path().join("dev/block")).unwrap();
        std::os::unix::fs::symlink(format!("../..{USB_PART}"), sys.path().join("dev/block/8:1"))
            .unwrap();
        std::os::unix::fs::symlink(format!("../..{USB_DISK}"), sys.path().join("dev/block/8:0"))
            .unwrap();

        let d = BackingDevice::from_mountinfo(BOARD, Path::new("/media/rec")).unwrap();
        let d = d.with_sysfs(sys.path());
        assert_eq!(d.devpath.as_deref(), Some(USB_PART));
        assert_eq!(d.parent_devpath.as_deref(), Some(USB_DISK));

        let whole = BackingDevice {
            minor: 0,
            ..BackingDevice::from_mountinfo(BOARD, Path::new("/media/rec")).unwrap()
        };
        let whole = whole.with_sysfs(sys.path());
        assert_eq!(whole.devpath.as_deref(), Some(USB_DISK));
        assert_eq!(whole.parent_devpath, None);

        // Not in this sysfs, or no block device at all: left unknown.
        let sd = BackingDevice::from_mountinfo(BOARD, Path::new("/"))
            .unwrap()
            .with_sysfs(sys.path());
        assert_eq!(sd.devpath, None);
        let tmp = BackingDevice::from_mountinfo(BOARD, Path::new("/tmp"))
            .unwrap()
            .with_sysfs(sys.path());
        assert_eq!(tmp.devpath, None);
    }

    #[test]
    fn resolves_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = BackingDevice::resolve(dir.path()).unwrap();
        assert!(dir
            .path()
            .canonicalize()
            .unwrap()
            .starts_with(&d.mount_point));
        if let Some(devpath) = &d.devpath {
            assert!(devpath.starts_with("/devices/"), "{devpath}");
        }
        assert!(matches!(
            BackingDevice::resolve(&dir.path().join("missing")),
            Err(DeviceError::Root { .. })
        ));
    }

    #[test]
    fn usb_disk_events() {
        let d = usb_partition();
        assert_eq!(d.matches(&ev(SDA1_REMOVE)), Some(DeviceEvent::Removed));
        assert_eq!(d.matches(&ev(SDA_REMOVE)), Some(DeviceEvent::Removed));
        assert_eq!(d.matches(&ev(USB_IFACE_REMOVE)), Some(DeviceEvent::Removed));
        assert_eq!(d.matches(&ev(SCSI_OFFLINE)), Some(DeviceEvent::Offline));
        assert_eq!(
            d.matches(&ev(SDA_MEDIA_CHANGE)),
            Some(DeviceEvent::MediaChanged)
        );
        // Plain changes and adds are no news for a mounted device.
        assert_eq!(d.matches(&ev(SDA_CHANGE)), None);
        assert_eq!(d.matches(&ev(SDA1_ADD)), None);
        assert_eq!(d.matches(&ev(SDA_ADD)), None);
    }

    #[test]
    fn other_devices_are_ignored() {
        let d = usb_partition();
        assert_eq!(d.matches(&ev(SDB1_REMOVE)), None);
        assert_eq!(d.matches(&ev(NET_REMOVE)), None);
        assert_eq!(d.matches(&ev(MMCBLK0_REMOVE)), None);
        assert_eq!(d.matches(&ev(NVME0N1P1_REMOVE)), None);
        assert_eq!(d.matches(&ev(LOOP0_DETACH)), None);
        // `tty1` is char 4:1; as a block device our 8:1 is not confused either way.
        let tty_numbers = BackingDevice {
            major: 4,
            minor: 1,
            devpath: None,
            parent_devpath: None,
            ..usb_partition()
        };
        assert_eq!(tty_numbers.matches(&ev(TTY_REMOVE)), None);
    }

    #[test]
    fn devpath_prefixes_compare_whole_components() {
        // `.../block/sda` must not be taken for an ancestor of `.../block/sda1x`.
        assert!(is_same_or_below(USB_PART, USB_DISK));
        assert!(is_same_or_below(USB_DISK, USB_DISK));
        assert!(!is_same_or_below(USB_DISK, USB_PART));
        assert!(!is_same_or_below(
            "/devices/virtual/block/loop10",
            "/devices/virtual/block/loop1"
        ));
    }

    #[test]
    fn matched_by_number_without_sysfs() {
        let d = BackingDevice {
            devpath: None,
            parent_devpath: None,
            ..usb_partition()
        };
        assert_eq!(d.matches(&ev(SDA1_REMOVE)), Some(DeviceEvent::Removed));
        // Without sysfs the disk above is unknown.
        assert_eq!(d.matches(&ev(SDA_REMOVE)), None);
    }

    #[test]
    fn mmc_nvme_and_loop() {
        let mmc = BackingDevice {
            major: 179,
            minor: 2,
            devpath: Some(format!("{MMC_DISK}/mmcblk0p2")),
            parent_devpath: Some(MMC_DISK.into()),
            ..usb_partition()
        };
        assert_eq!(mmc.matches(&ev(MMCBLK0_REMOVE)), Some(DeviceEvent::Removed));
        assert_eq!(mmc.matches(&ev(MMCBLK0P2_ADD)), None);

        let nvme = BackingDevice {
            major: 259,
            minor: 1,
            devpath: Some(NVME_PART.into()),
            parent_devpath: NVME_PART.rsplit_once('/').map(|(p, _)| p.to_owned()),
            ..usb_partition()
        };
        assert_eq!(
            nvme.matches(&ev(NVME0N1P1_REMOVE)),
            Some(DeviceEvent::Removed)
        );
        assert_eq!(nvme.matches(&ev(NVME0N1_ADD)), None);
        assert_eq!(nvme.matches(&ev(SDA1_REMOVE)), None);

        let lo = BackingDevice {
            major: 7,
            minor: 0,
            devpath: Some("/devices/virtual/block/loop0".into()),
            parent_devpath: None,
            ..usb_partition()
        };
        assert_eq!(lo.matches(&ev(LOOP0_ATTACH)), None);
        assert_eq!(
            lo.matches(&ev(LOOP0_DETACH)),
            Some(DeviceEvent::MediaChanged)
        );
    }
}
