//! `recbox key new`: a fresh random link key in a file only its owner can read.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{} exists: give --force to replace it (the old key stops working)", path.display())]
    Exists { path: PathBuf },
    #[error("writing the key file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `secret` (32 random bytes from the caller) as 64 hex digits, mode 0600.
/// An existing file is kept unless `force`; with `force` the new key is written next to
/// it and renamed over it, so the file never holds half a key or another mode.
pub fn write_new(path: &Path, secret: [u8; 32], force: bool) -> Result<(), KeyFileError> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let write_err = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let target = if force {
        path.with_extension("new-key.tmp")
    } else {
        path.to_owned()
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists if !force => KeyFileError::Exists {
                path: path.to_owned(),
            },
            _ => write_err(e),
        })?;
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err)?;
    if force {
        std::fs::rename(&target, path).map_err(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_owner_only_and_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        write_new(&path, [1; 32], false).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            "01".repeat(32)
        );
        assert!(matches!(
            write_new(&path, [2; 32], false),
            Err(KeyFileError::Exists { .. })
        ));
        write_new(&path, [2; 32], true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            "02".repeat(32)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
