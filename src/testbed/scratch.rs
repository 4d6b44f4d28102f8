//! Small real filesystems to provoke storage faults on: a size-limited tmpfs and an
//! ext4 on a loop device, each mounted on a fresh directory and torn down on drop.
//! Used by the fault bench and the failover tests; mounting needs root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory under the system's temporary directory.
pub(crate) fn fresh_dir(what: &str) -> Option<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("recbox-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Runs `cmd args path` quietly; whether it succeeded.
fn run_on(cmd: &str, args: &[&str], path: &Path) -> bool {
    Command::new(cmd)
        .args(args)
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A mounted filesystem: the operations a failing disk goes through.
pub trait Mounted {
    fn path(&self) -> &Path;

    /// Remounts with `opts`, e.g. `ro` or `rw`.
    fn remount(&self, opts: &str) -> bool {
        run_on("mount", &["-o", &format!("remount,{opts}")], self.path())
    }

    /// Detaches the mount; open files stay usable, as when an automounter lets go.
    fn lazy_unmount(&self) -> bool {
        run_on("umount", &["-l"], self.path())
    }
}

/// A size-limited tmpfs.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `size` as `mount -o size=` takes it, e.g. `8m`. `None` where this process
    /// may not mount.
    pub fn mount(size: &str) -> Option<Self> {
        let fs = Self {
            dir: fresh_dir("tmpfs")?,
        };
        fs.mount_again(size).then_some(fs)
    }

    /// Mounts a new, empty tmpfs on the same directory.
    pub fn mount_again(&self, size: &str) -> bool {
        let opts = format!("size={size}");
        run_on("mount", &["-t", "tmpfs", "-o", &opts, "tmpfs"], &self.dir)
    }
}

impl Mounted for Tmpfs {
    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        while run_on("umount", &["-l"], &self.dir) {}
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// An ext4 filesystem in an image file on a loop device.
pub struct LoopDisk {
    /// Holds the image and, beside it, the mount point.
    dir: PathBuf,
    mount: PathBuf,
    /// The loop device's name, e.g. `loop3`.
    name: String,
}

impl LoopDisk {
    /// `None` where there is no free loop device, no `mkfs.ext4` or no right to mount.
    pub fn create(size: u64) -> Option<Self> {
        let dir = fresh_dir("loopdisk")?;
        let image = dir.join("disk.img");
        std::fs::File::create(&image).ok()?.set_len(size).ok()?;
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let dev = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        let name = dev.strip_prefix("/dev/")?.to_owned();
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).ok()?;
        let disk = Self { dir, mount, name };
        let made = run_on("mkfs.ext4", &["-q", "-F"], &disk.device()) && disk.mount_again();
        made.then_some(disk)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn device(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }

    /// Mounts the same device again, e.g. after a lazy unmount: the same files. Like
    /// a recording disk in `/etc/fstab`, the file system turns read-only on errors.
    pub fn mount_again(&self) -> bool {
        let dev = self.device();
        let dev = dev.to_string_lossy();
        run_on("mount", &["-o", "errors=remount-ro", &dev], self.path())
    }

    /// Makes ext4 report an error as if it had found corruption: with
    /// `errors=remount-ro` the kernel turns the file system read-only at once, open
    /// files included, as it does on a failing disk.
    pub fn trigger_fs_error(&self) -> bool {
        let attr = Path::new("/sys/fs/ext4")
            .join(&self.name)
            .join("trigger_fs_error");
        std::fs::write(attr, "recbox test\n").is_ok()
    }

    /// Checks and repairs the unmounted file system, as an operator would before
    /// mounting it again.
    pub fn repair(&self) -> bool {
        let status = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(self.device())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // 0: clean, 1: errors corrected.
        status.is_ok_and(|s| matches!(s.code(), Some(0 | 1)))
    }
}

impl Mounted for LoopDisk {
    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        while run_on("umount", &["-l"], self.path()) {}
        run_on(
            "losetup",
            &["-d"],
            Path::new(&format!("/dev/{}", self.name)),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
