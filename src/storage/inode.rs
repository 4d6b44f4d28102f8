//! What the kernel says about a file being recorded before any write meets it: the
//! file removed from its directory (writes still succeed, into a file nobody will
//! find: a recording lost silently), or flagged immutable or append-only
//! (`chattr`), which makes the next write fail. The storage monitor checks the
//! recording's open files at every poll, so these are known within one poll rather
//! than at the next fragment write.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// `FS_IMMUTABLE_FL` of `<linux/fs.h>`, as `chattr +i` sets it.
pub(crate) const FS_IMMUTABLE_FL: libc::c_long = 0x10;
/// `FS_APPEND_FL` of `<linux/fs.h>`, as `chattr +a` sets it.
const FS_APPEND_FL: libc::c_long = 0x20;

/// Why a file being recorded cannot be recorded to any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// No directory entry leads to it any more.
    Removed,
    Immutable,
    /// Writes at its end only; the recorder writes at offsets.
    AppendOnly,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Removed => "removed from the disk while being recorded",
            Problem::Immutable => "made immutable: it takes no more writes",
            Problem::AppendOnly => "made append-only: it takes no more writes",
        })
    }
}

/// The problem a file with `links` directory entries and inode `flags` (`None`
/// where the file system keeps no flags) has, if any.
fn problem(links: u64, flags: Option<libc::c_long>) -> Option<Problem> {
    let flags = flags.unwrap_or(0);
    if links == 0 {
        Some(Problem::Removed)
    } else if flags & FS_IMMUTABLE_FL != 0 {
        Some(Problem::Immutable)
    } else if flags & FS_APPEND_FL != 0 {
        Some(Problem::AppendOnly)
    } else {
        None
    }
}

/// Checks an open file: an `fstat` and an `FS_IOC_GETFLAGS`, a few µs.
pub(crate) fn check(file: &File) -> io::Result<Option<Problem>> {
    let links = file.metadata()?.nlink();
    let flags = match flags(file) {
        Ok(flags) => Some(flags),
        // A file system without inode flags (some FUSE ones): only removal is seen.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EOPNOTSUPP)) => None,
        Err(e) => return Err(e),
    };
    Ok(problem(links, flags))
}

/// The inode flags of `file`, as `lsattr` shows them.
pub(crate) fn flags(file: &File) -> io::Result<libc::c_long> {
    let mut flags: libc::c_long = 0;
    // SAFETY: a valid descriptor and a pointer to a live c_long the ioctl fills.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if rc == 0 {
        Ok(flags)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the inode flags of `file`, as `chattr` does (root only for immutable).
#[cfg(feature = "lab")]
pub(crate) fn set_flags(file: &File, flags: libc::c_long) -> io::Result<()> {
    // SAFETY: a valid descriptor and a pointer to a live c_long the ioctl reads.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_from_links_and_flags() {
        assert_eq!(problem(1, Some(0)), None);
        assert_eq!(problem(1, None), None);
        assert_eq!(problem(2, Some(0x80000)), None, "extents flag only");
        assert_eq!(problem(0, Some(0)), Some(Problem::Removed));
        assert_eq!(
            problem(0, Some(FS_IMMUTABLE_FL)),
            Some(Problem::Removed),
            "a removed file is lost whatever its flags"
        );
        assert_eq!(problem(1, Some(FS_IMMUTABLE_FL)), Some(Problem::Immutable));
        assert_eq!(problem(1, Some(FS_APPEND_FL)), Some(Problem::AppendOnly));
        assert_eq!(
            problem(1, Some(FS_APPEND_FL | FS_IMMUTABLE_FL)),
            Some(Problem::Immutable)
        );
    }
}
