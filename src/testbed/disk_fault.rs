//! Storage faults made for real on a small ext4 recording disk (a loop device), and
//! their repair as an operator would do it: the disk filled or nearly filled, pulled
//! away (lazily unmounted), turned read-only by a file-system error, shut down so
//! that every write gets `EIO`, or the recording's index made immutable. Used by
//! `recbox demo --fault` and the end-to-end fault bench. Needs root.
//!
//! Each fault is made by one system call in this process, and [`FaultDisk::inject`]
//! returns the instant just before that call starts: the fault exists from some
//! point during the call, so a latency measured from there is never too short.

use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use super::scratch::{LoopDisk, Mounted};
use crate::link::frame::FaultKind;
use crate::recorder::layout::INDEX_FILE;
use crate::storage::health::HealthConfig;
use crate::storage::inode::{self, FS_IMMUTABLE_FL};
use crate::storage::{mountinfo, space};

/// The file that takes the disk's free space.
const FILLER: &str = "filler";
/// `EXT4_IOC_SHUTDOWN` and `EXT4_GOING_FLAGS_NOLOGFLUSH` of the ext4 headers: what
/// ext4 does itself when its device dies under it.
const EXT4_IOC_SHUTDOWN: libc::Ioctl = libc::_IOR::<u32>('X' as u32, 125);
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// A storage fault that can be made for real here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// Another writer takes all the free space at once.
    DiskFull,
    /// Free space drops below the low watermark, not yet to the full one.
    LowSpace,
    /// The disk goes away: unmounted under the recorder's feet.
    DiskOffline,
    /// The file system turns read-only after an error (`errors=remount-ro`).
    ReadOnly,
    /// Only the recording's index file cannot be written.
    IndexIo,
    /// The file system is shut down: every write gets `EIO`.
    IoError,
}

impl DiskFault {
    pub(crate) const ALL: [DiskFault; 6] = [
        DiskFault::DiskFull,
        DiskFault::LowSpace,
        DiskFault::DiskOffline,
        DiskFault::ReadOnly,
        DiskFault::IndexIo,
        DiskFault::IoError,
    ];

    /// The name `--fault` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DiskFault::DiskFull => "disk-full",
            DiskFault::LowSpace => "low-space",
            DiskFault::DiskOffline => "disk-offline",
            DiskFault::ReadOnly => "read-only",
            DiskFault::IndexIo => "index-io",
            DiskFault::IoError => "io-error",
        }
    }

    /// Every name, for messages.
    pub(crate) fn names() -> String {
        DiskFault::ALL.map(DiskFault::name).join(", ")
    }

    /// The fault the recorder reports for it.
    pub(crate) fn reported_as(self) -> FaultKind {
        match self {
            DiskFault::DiskFull => FaultKind::DiskFull,
            DiskFault::LowSpace => FaultKind::LowSpace,
            DiskFault::DiskOffline => FaultKind::DiskOffline,
            DiskFault::ReadOnly => FaultKind::ReadOnly,
            DiskFault::IndexIo => FaultKind::IndexWriteFailed,
            DiskFault::IoError => FaultKind::IoError,
        }
    }

    /// How it is made.
    pub(crate) fn how(self) -> &'static str {
        match self {
            DiskFault::DiskFull => "fallocate all",
            DiskFault::LowSpace => "fallocate",
            DiskFault::DiskOffline => "umount -l",
            DiskFault::ReadOnly => "ext4 error",
            DiskFault::IndexIo => "chattr +i",
            DiskFault::IoError => "ext4 shutdown",
        }
    }

    /// Whether the repair mounts the file system afresh, which only works once the
    /// recorder has let go of its files there (it does when it fails over to the
    /// spool): while a file is open the kernel keeps the broken file system and a
    /// new mount gets it again.
    pub(crate) fn repair_needs_release(self) -> bool {
        matches!(self, DiskFault::ReadOnly | DiskFault::IoError)
    }
}

impl fmt::Display for DiskFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskFault::DiskFull => "disk full",
            DiskFault::LowSpace => "low space",
            DiskFault::DiskOffline => "disk offline",
            DiskFault::ReadOnly => "read-only file system",
            DiskFault::IndexIo => "index file not writable",
            DiskFault::IoError => "I/O error",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a fault: one of {names}", names = DiskFault::names())]
pub struct DiskFaultError(String);

impl FromStr for DiskFault {
    type Err = DiskFaultError;

    fn from_str(s: &str) -> Result<Self, DiskFaultError> {
        DiskFault::ALL
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| DiskFaultError(s.to_owned()))
    }
}

/// What an injection changed, for its repair.
#[derive(Debug)]
pub struct Injected {
    pub(crate) fault: DiskFault,
    /// Just before the injecting system call started.
    pub(crate) at: Instant,
    /// The same instant on the wall clock, to compare with the recorder's `at` stamps.
    pub(crate) wall: SystemTime,
    /// How long the system call took (an ext4 error, for one, aborts the journal
    /// and writes the super block before the file system is read-only).
    pub(crate) call: Duration,
    /// The index file made immutable.
    index: Option<PathBuf>,
}

/// A small ext4 disk on a loop device to break, with the recorder's watermarks for
/// its size.
pub struct FaultDisk {
    disk: LoopDisk,
}

impl FaultDisk {
    pub(crate) const BYTES: u64 = 256 << 20;

    /// `None` where no loop disk can be made (not root, no loop device, no mkfs.ext4).
    pub fn create() -> Option<Self> {
        LoopDisk::create(Self::BYTES).map(|disk| Self { disk })
    }

    /// Where the recorder writes.
    pub fn root(&self) -> &Path {
        self.disk.path()
    }

    /// Warn and fail over on what the small disk really has.
    pub fn health() -> HealthConfig {
        HealthConfig {
            low_space_bytes: Some(32 << 20),
            full_space_bytes: 8 << 20,
            ..HealthConfig::default()
        }
    }

    /// Makes `fault` happen now. What the call needs is prepared first, so that the
    /// instant returned is followed by the one system call that makes the fault.
    pub fn inject(&self, fault: DiskFault) -> io::Result<Injected> {
        let root = self.root();
        let mut index = None;
        let at = match fault {
            DiskFault::DiskFull | DiskFault::LowSpace => {
                let filler = File::create(root.join(FILLER))?;
                let free = space::statvfs(root)?.free_bytes;
                let len = match fault {
                    // More than there is: the call takes all it can and fails.
                    DiskFault::DiskFull => free + Self::BYTES,
                    _ => low_space_fill(free, &Self::health(), Self::BYTES).ok_or_else(|| {
                        io::Error::other(format!("only {free} bytes free: already low"))
                    })?,
                };
                let at = now();
                // SAFETY: a valid open file descriptor; plain integer arguments.
                let rc = unsafe { libc::fallocate(filler.as_raw_fd(), 0, 0, len as libc::off_t) };
                let err = io::Error::last_os_error();
                let full = fault == DiskFault::DiskFull && err.raw_os_error() == Some(libc::ENOSPC);
                if rc != 0 && !full {
                    return Err(err);
                }
                at
            }
            DiskFault::DiskOffline => {
                let target = c_path(root)?;
                let at = now();
                // SAFETY: a valid NUL-terminated path.
                check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })?;
                at
            }
            DiskFault::ReadOnly => {
                let mut attr = OpenOptions::new().write(true).open(
                    Path::new("/sys/fs/ext4")
                        .join(self.disk.name())
                        .join("trigger_fs_error"),
                )?;
                let at = now();
                attr.write_all(b"recbox: injected error\n")?;
                at
            }
            DiskFault::IndexIo => {
                let path = newest_index(root)
                    .ok_or_else(|| io::Error::other("no recording index on the disk"))?;
                let file = File::open(&path)?;
                let flags = inode::flags(&file)?;
                let at = now();
                inode::set_flags(&file, flags | FS_IMMUTABLE_FL)?;
                index = Some(path);
                at
            }
            DiskFault::IoError => {
                let dir = File::open(root)?;
                let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
                let at = now();
                // SAFETY: a valid descriptor and a pointer to a live u32, which the
                // ioctl reads.
                check(unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags) })?;
                at
            }
        };
        Ok(Injected {
            fault,
            at: at.0,
            wall: at.1,
            call: at.0.elapsed(),
            index,
        })
    }

    /// Undoes what [`inject`](Self::inject) broke.
    pub fn repair(&self, injected: &Injected) -> io::Result<()> {
        let failed = |what: &str| io::Error::other(format!("{what} failed"));
        match injected.fault {
            DiskFault::DiskFull | DiskFault::LowSpace => {
                std::fs::remove_file(self.root().join(FILLER))
            }
            DiskFault::DiskOffline => self
                .disk
                .mount_again()
                .then_some(())
                .ok_or_else(|| failed("mount")),
            DiskFault::IndexIo => {
                let path = injected
                    .index
                    .as_deref()
                    .expect("an index was made immutable");
                let file = File::open(path)?;
                inode::set_flags(&file, inode::flags(&file)? & !FS_IMMUTABLE_FL)
            }
            DiskFault::ReadOnly | DiskFault::IoError => {
                // An attempt before may have failed with the disk unmounted (e2fsck
                // finds the device busy while a file keeps the broken file system):
                // this one goes on from there.
                if self.mounted()?.is_some() && !self.disk.lazy_unmount() {
                    return Err(failed("umount -l"));
                }
                // After an error, check the file system as an operator would; after
                // a shutdown the journal replay at mount is enough.
                if injected.fault == DiskFault::ReadOnly && !self.disk.repair() {
                    return Err(failed("e2fsck"));
                }
                if !self.disk.mount_again() {
                    return Err(failed("mount"));
                }
                if self.is_broken()? {
                    // The kernel kept the broken file system: a file is still open
                    // on it. Leave it unmounted-and-remounted for another try.
                    return Err(io::Error::other(
                        "the file system is still the broken one (a file on it is still open)",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether the mounted file system is read-only or shut down.
    fn is_broken(&self) -> io::Result<bool> {
        self.mounted()?
            .ok_or_else(|| io::Error::other("the disk is not mounted"))
    }

    /// Whether the disk is mounted, and then whether it is read-only or shut down.
    fn mounted(&self) -> io::Result<Option<bool>> {
        let table = mountinfo::read(Path::new(mountinfo::SELF_MOUNTINFO))?;
        let entries = mountinfo::parse(&table);
        let root = self.root().canonicalize()?;
        Ok(mountinfo::mount_of(&entries, &root)
            .filter(|e| e.mount_point == root)
            .map(|e| e.read_only() || e.super_options.iter().any(|o| o == "shutdown")))
    }
}

/// How much to take of `free` bytes so that what is left lies between the full and
/// the low watermark of a file system of `total` bytes; `None` if it is low already.
fn low_space_fill(free: u64, health: &HealthConfig, total: u64) -> Option<u64> {
    let leave = (health.low_space_for(total) + health.full_space_bytes) / 2;
    free.checked_sub(leave)
        .filter(|_| free > health.low_space_for(total))
}

fn now() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The index file most recently modified in any recording under `root`
/// (`<root>/<room>/<recording>/recording.idx`).
pub(crate) fn newest_index(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|room| std::fs::read_dir(room.ok()?.path()).ok())
        .flatten()
        .filter_map(|e| Some(e.ok()?.path().join(INDEX_FILE)))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in DiskFault::ALL {
            assert_eq!(f.name().parse::<DiskFault>(), Ok(f));
        }
        let e = "full".parse::<DiskFault>().unwrap_err().to_string();
        assert_eq!(
            e,
            "`full` is not a fault: one of disk-full, low-space, disk-offline, read-only, index-io, io-error"
        );
    }

    #[test]
    fn low_space_leaves_between_the_watermarks() {
        let h = FaultDisk::health();
        let (total, mib) = (FaultDisk::BYTES, 1 << 20);
        let take = low_space_fill(200 * mib, &h, total).unwrap();
        // 32 MiB low, 8 MiB full: 20 MiB are left.
        assert_eq!(200 * mib - take, 20 * mib);
        assert_eq!(low_space_fill(32 * mib, &h, total), None);
        assert_eq!(low_space_fill(0, &h, total), None);
    }

    #[test]
    fn newest_index_of_any_room() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("room/a");
        let b = dir.path().join("room/b.seg1");
        for d in [&a, &b] {
            std::fs::create_dir_all(d).unwrap();
        }
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for (d, at) in [(&a, t), (&b, t + std::time::Duration::from_secs(1))] {
            let f = File::create(d.join(INDEX_FILE)).unwrap();
            f.set_modified(at).unwrap();
        }
        assert_eq!(newest_index(dir.path()), Some(b.join(INDEX_FILE)));
        assert_eq!(newest_index(&dir.path().join("none")), None);
    }
}
