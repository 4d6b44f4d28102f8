//! Free space of the file system holding a path, via `statvfs(3)`.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::health::Observation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer can still use (`f_bavail * f_frsize`): the
    /// blocks reserved for root do not count, the recorder should not rely on them.
    pub free_bytes: u64,
    /// Size of the file system (`f_blocks * f_frsize`).
    total_bytes: u64,
    /// The mount or its super block refuses writes (`ST_RDONLY`): a read-only
    /// remount, seen without reading the mount table. (ext4's emergency read-only
    /// after an error leaves the super block's flag alone on recent kernels.)
    pub read_only: bool,
}

impl From<Space> for Observation {
    fn from(s: Space) -> Self {
        Observation::Space {
            free_bytes: s.free_bytes,
            total_bytes: s.total_bytes,
        }
    }
}

pub fn statvfs(path: &Path) -> io::Result<Space> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `st` points to writable
    // memory of the right type, which statvfs fills completely on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The field types are `u32` on some 32-bit targets and `u64` elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let frsize = st.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    let (bavail, blocks) = (st.f_bavail as u64, st.f_blocks as u64);
    Ok(Space {
        free_bytes: bavail.saturating_mul(frsize),
        total_bytes: blocks.saturating_mul(frsize),
        read_only: st.f_flag & libc::ST_RDONLY != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tempdir_has_space() {
        let dir = tempfile::tempdir().unwrap();
        let s = statvfs(dir.path()).unwrap();
        assert!(s.total_bytes > 0);
        assert!(s.free_bytes <= s.total_bytes);
        assert!(!s.read_only);
    }

    #[test]
    fn missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = statvfs(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let nul = statvfs(Path::new("a\0b")).unwrap_err();
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn becomes_an_observation() {
        let s = Space {
            free_bytes: 1,
            total_bytes: 2,
            read_only: false,
        };
        assert_eq!(
            Observation::from(s),
            Observation::Space {
                free_bytes: 1,
                total_bytes: 2
            }
        );
    }
}
