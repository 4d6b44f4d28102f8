//! Maps the writer's own I/O errors to the fault kinds reported on the media link.

use std::io;

use crate::link::frame::FaultKind;

/// The fault an I/O error on the storage means.
///
/// Errors built without an OS error code (by `io::Error::from(ErrorKind)`) are mapped
/// by their kind, so a wrapped error classifies the same as the raw one.
pub fn classify(err: &io::Error) -> FaultKind {
    match err.raw_os_error() {
        Some(code) => classify_errno(code),
        None => match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FaultKind::DiskFull,
            io::ErrorKind::ReadOnlyFilesystem => FaultKind::ReadOnly,
            io::ErrorKind::StaleNetworkFileHandle | io::ErrorKind::NotConnected => {
                FaultKind::DiskOffline
            }
            _ => FaultKind::FsError,
        },
    }
}

/// Whether the error says the file system itself is damaged (ext4's EFSCORRUPTED and
/// EFSBADCRC), rather than that one write to one file failed.
pub(crate) fn is_corruption(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EUCLEAN | libc::EBADMSG))
}

fn classify_errno(code: i32) -> FaultKind {
    match code {
        libc::ENOSPC | libc::EDQUOT => FaultKind::DiskFull,
        libc::EIO => FaultKind::IoError,
        libc::EROFS => FaultKind::ReadOnly,
        // The device or the remote end behind the file system went away.
        libc::ENODEV | libc::ENXIO | libc::ESHUTDOWN | libc::ENOTCONN | libc::ESTALE => {
            FaultKind::DiskOffline
        }
        _ => FaultKind::FsError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> FaultKind {
        classify(&io::Error::from_raw_os_error(code))
    }

    #[test]
    fn full() {
        assert_eq!(os(libc::ENOSPC), FaultKind::DiskFull);
        assert_eq!(os(libc::EDQUOT), FaultKind::DiskFull);
    }

    #[test]
    fn io_error() {
        assert_eq!(os(libc::EIO), FaultKind::IoError);
    }

    #[test]
    fn read_only() {
        assert_eq!(os(libc::EROFS), FaultKind::ReadOnly);
    }

    #[test]
    fn offline() {
        for code in [
            libc::ENODEV,
            libc::ENXIO,
            libc::ESHUTDOWN,
            libc::ENOTCONN,
            libc::ESTALE,
        ] {
            assert_eq!(os(code), FaultKind::DiskOffline, "errno {code}");
        }
    }

    #[test]
    fn other_errnos_are_fs_errors() {
        for code in [
            libc::EACCES,
            libc::ENOENT,
            libc::EINVAL,
            libc::EFBIG,
            libc::EMFILE,
        ] {
            assert_eq!(os(code), FaultKind::FsError, "errno {code}");
        }
    }

    #[test]
    fn errors_without_errno_map_by_kind() {
        let full = io::Error::new(io::ErrorKind::StorageFull, "wrapped");
        assert_eq!(classify(&full), FaultKind::DiskFull);
        let ro = io::Error::from(io::ErrorKind::ReadOnlyFilesystem);
        assert_eq!(classify(&ro), FaultKind::ReadOnly);
        let other = io::Error::other("short write");
        assert_eq!(classify(&other), FaultKind::FsError);
    }
}
