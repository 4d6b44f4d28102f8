//! Parser of `/proc/self/mountinfo` (see `proc_pid_mountinfo(5)`):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)   (4)   (5)         (6)       (7)    (8) (9)   (10)      (11)
//! ```
//!
//! mount id, parent id, major:minor of the file system, root of the mount within the
//! file system, mount point, per-mount options, optional fields, `-`, file system type,
//! source, super-block options. Paths escape space, tab, newline and backslash as
//! three-digit octal (`\040`).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The mount table of this process.
pub const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, Error, PartialEq, Eq)]
enum MountinfoError {
    #[error("mountinfo line has too few fields")]
    TooFewFields,
    #[error("mountinfo line has no `-` separator")]
    NoSeparator,
    #[error("mountinfo line has a bad {0}")]
    BadNumber(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub(crate) mount_id: u32,
    parent_id: u32,
    /// Device number of the file system (`0:N` for file systems without a block device).
    pub(crate) major: u32,
    pub(crate) minor: u32,
    /// Directory of the file system mounted here (not `/` for bind mounts).
    root: PathBuf,
    pub(crate) mount_point: PathBuf,
    mount_options: Vec<String>,
    /// Propagation fields such as `shared:1` or `master:2`.
    optional: Vec<String>,
    pub(crate) fstype: String,
    source: String,
    pub(crate) super_options: Vec<String>,
}

impl MountEntry {
    fn parse_line(line: &str) -> Result<Self, MountinfoError> {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 10 {
            return Err(MountinfoError::TooFewFields);
        }
        let sep = fields[6..]
            .iter()
            .position(|f| *f == "-")
            .map(|i| i + 6)
            .ok_or(MountinfoError::NoSeparator)?;
        if fields.len() < sep + 3 {
            return Err(MountinfoError::TooFewFields);
        }
        let number = |s: &str, what| s.parse().map_err(|_| MountinfoError::BadNumber(what));
        let (major, minor) = fields[2]
            .split_once(':')
            .ok_or(MountinfoError::BadNumber("major:minor"))?;
        let options = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        Ok(Self {
            mount_id: number(fields[0], "mount id")?,
            parent_id: number(fields[1], "parent id")?,
            major: number(major, "major")?,
            minor: number(minor, "minor")?,
            root: unescape_path(fields[3]),
            mount_point: unescape_path(fields[4]),
            mount_options: options(fields[5]),
            optional: fields[6..sep].iter().map(|s| (*s).to_owned()).collect(),
            fstype: unescape_text(fields[sep + 1]),
            source: unescape_text(fields[sep + 2]),
            super_options: fields.get(sep + 3).map(|s| options(s)).unwrap_or_default(),
        })
    }

    /// Writes are refused: either this mount (`mount -o remount,ro,bind`) or the whole
    /// file system (`mount -o remount,ro`, or ext4 `errors=remount-ro` after an error,
    /// which only shows in the super-block options: as `ro` on older kernels, as
    /// `emergency_ro` beside `rw` on newer ones) is read-only.
    pub(crate) fn read_only(&self) -> bool {
        let ro = |opts: &[String], flags: &[&str]| opts.iter().any(|o| flags.contains(&o.as_str()));
        ro(&self.mount_options, &["ro"]) || ro(&self.super_options, &["ro", "emergency_ro"])
    }

    /// The file system was shut down (ext4 `EXT4_IOC_SHUTDOWN`, or the kernel's own
    /// shutdown after a fatal error): every read and write now fails with `EIO`
    /// until it is mounted again.
    pub(crate) fn shut_down(&self) -> bool {
        self.super_options.iter().any(|o| o == "shutdown")
    }
}

/// Parses a whole mount table, skipping lines that do not parse (logged), so one odd
/// line cannot hide the storage mount.
pub(crate) fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter(|l| !l.is_empty())
        .filter_map(|line| match MountEntry::parse_line(line) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::debug!(line, error = %e, "skipping mountinfo line");
                None
            }
        })
        .collect()
}

/// The mount that holds `path` (absolute and canonical): the one with the longest
/// mount point, by path components, that is a prefix of `path`. Among mounts stacked
/// on the same point the last listed is the visible one.
pub(crate) fn mount_of<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries
        .iter()
        .filter(|e| path.starts_with(&e.mount_point))
        .fold(None, |best: Option<&MountEntry>, e| match best {
            Some(b) if b.mount_point.components().count() > e.mount_point.components().count() => {
                Some(b)
            }
            _ => Some(e),
        })
}

/// Reads a mount table. Bytes that are not UTF-8 (possible in other mounts' paths) are
/// replaced rather than failing the read.
pub fn read(path: &Path) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&std::fs::read(path)?).into_owned())
}

fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

fn unescape_path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn unescape_text(field: &str) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Mount tables as the kernel prints them, shared with the other storage tests.
#[cfg(test)]
pub(crate) mod fixtures {
    /// A Raspberry Pi style box: SD card root, USB disk at `/media/rec`, a bind mount
    /// of a directory with a space in it, tmpfs, and the disk's ext4 later remounted.
    pub const BOARD: &str = "\
21 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
22 21 0:5 / /dev rw,relatime shared:2 - devtmpfs udev rw,size=1867796k,nr_inodes=466949,mode=755
23 21 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 21 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 21 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=388788k,mode=755
30 21 179:1 / /boot/firmware rw,relatime shared:14 - vfat /dev/mmcblk0p1 rw,fmask=0022,dmask=0022,codepage=437,iocharset=ascii,shortname=mixed,errors=remount-ro
41 21 0:36 / /tmp rw,nosuid,nodev shared:20 - tmpfs tmpfs rw,size=972000k
87 21 8:1 / /media/rec rw,nosuid,nodev,relatime shared:45 - ext4 /dev/sda1 rw,errors=remount-ro
88 21 8:1 /meeting\\040rooms /srv/rooms rw,relatime shared:45 - ext4 /dev/sda1 rw,errors=remount-ro
";

    /// A container: overlay root without a block device.
    pub const CONTAINER: &str = "\
512 480 0:47 / / rw,relatime master:210 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/1f/diff,workdir=/var/lib/docker/overlay2/1f/work
513 512 0:50 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
514 512 0:51 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
530 512 254:1 /var/lib/recbox /data rw,relatime - ext4 /dev/vdb rw
";
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn parses_an_ext4_partition() {
        let e = MountEntry::parse_line(
            "87 21 8:1 / /media/rec rw,nosuid,nodev,relatime shared:45 - ext4 /dev/sda1 rw,errors=remount-ro",
        )
        .unwrap();
        assert_eq!((e.mount_id, e.parent_id, e.major, e.minor), (87, 21, 8, 1));
        assert_eq!(e.root, Path::new("/"));
        assert_eq!(e.mount_point, Path::new("/media/rec"));
        assert_eq!(e.mount_options, ["rw", "nosuid", "nodev", "relatime"]);
        assert_eq!(e.optional, ["shared:45"]);
        assert_eq!(e.fstype, "ext4");
        assert_eq!(e.source, "/dev/sda1");
        assert_eq!(e.super_options, ["rw", "errors=remount-ro"]);
        assert!(!e.read_only());
    }

    #[test]
    fn parses_tmpfs_without_optional_fields() {
        let e = MountEntry::parse_line(
            "41 21 0:36 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw,size=972000k",
        )
        .unwrap();
        assert_eq!((e.major, e.minor), (0, 36));
        assert!(e.optional.is_empty());
        assert_eq!(e.fstype, "tmpfs");
    }

    #[test]
    fn parses_several_optional_fields_and_overlay() {
        let e = MountEntry::parse_line(
            "512 480 0:47 / / rw,relatime shared:3 master:210 - overlay overlay rw,lowerdir=/a:/b",
        )
        .unwrap();
        assert_eq!(e.optional, ["shared:3", "master:210"]);
        assert_eq!(e.fstype, "overlay");
        assert_eq!(e.super_options, ["rw", "lowerdir=/a:/b"]);
    }

    #[test]
    fn unescapes_octal_in_paths() {
        let e = MountEntry::parse_line(
            "43 27 7:0 /with\\040space /tmp/ue/my\\040bind\\011tab\\134slash rw,relatime - ext4 /dev/loop0 rw",
        )
        .unwrap();
        assert_eq!(e.root, Path::new("/with space"));
        assert_eq!(e.mount_point, Path::new("/tmp/ue/my bind\ttab\\slash"));
        // Not an escape: too few digits, or not octal.
        assert_eq!(unescape("a\\04"), b"a\\04");
        assert_eq!(unescape("a\\089b"), b"a\\089b");
        assert_eq!(unescape("\\"), b"\\");
        // Non-UTF-8 bytes in paths survive.
        assert_eq!(unescape_path("/x\\377").as_os_str().len(), 3);
    }

    #[test]
    fn read_only_per_mount_or_per_super_block() {
        let mount_ro =
            MountEntry::parse_line("43 27 7:0 / /b ro,relatime - ext4 /dev/loop0 rw").unwrap();
        assert!(mount_ro.read_only());
        // What ext4 shows after `errors=remount-ro` fired: only the super block is ro.
        let sb_ro =
            MountEntry::parse_line("42 27 7:0 / /a rw,relatime - ext4 /dev/loop0 ro").unwrap();
        assert!(sb_ro.read_only());
        // The same on a 6.18 kernel.
        let emergency = MountEntry::parse_line(
            "42 27 7:0 / /tmp/e1 rw,relatime - ext4 /dev/loop0 rw,errors=remount-ro,emergency_ro",
        )
        .unwrap();
        assert!(emergency.read_only());
        let healthy = MountEntry::parse_line(
            "42 27 7:0 / /tmp/e1 rw,relatime - ext4 /dev/loop0 rw,errors=remount-ro",
        )
        .unwrap();
        assert!(!healthy.read_only());
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(
            MountEntry::parse_line(""),
            Err(MountinfoError::TooFewFields)
        );
        assert_eq!(
            MountEntry::parse_line("1 2 3:4 / /x rw a b c d"),
            Err(MountinfoError::NoSeparator)
        );
        assert_eq!(
            MountEntry::parse_line("1 2 3:4 / /x rw a b c -"),
            Err(MountinfoError::TooFewFields)
        );
        assert_eq!(
            MountEntry::parse_line("x 2 3:4 / /x rw - ext4 /dev/a rw"),
            Err(MountinfoError::BadNumber("mount id"))
        );
        assert_eq!(
            MountEntry::parse_line("1 2 34 / /x rw - ext4 /dev/a rw"),
            Err(MountinfoError::BadNumber("major:minor"))
        );
        // A table with a bad line keeps the good ones.
        let table = format!("garbage\n{BOARD}");
        assert_eq!(parse(&table).len(), 9);
    }

    #[test]
    fn longest_mount_point_by_components() {
        let t = parse(BOARD);
        let at = |p: &str| mount_of(&t, Path::new(p)).map(|e| e.mount_id);
        assert_eq!(at("/media/rec/room1/x.mp4"), Some(87));
        assert_eq!(at("/media/rec"), Some(87));
        // A string prefix that is not a path prefix.
        assert_eq!(at("/media/recordings"), Some(21));
        assert_eq!(at("/srv/rooms/a"), Some(88));
        assert_eq!(at("/boot/firmware/config.txt"), Some(30));
        assert_eq!(at("/tmp"), Some(41));
        assert_eq!(at("/var/log"), Some(21));
        assert_eq!(at("relative"), None);
    }

    #[test]
    fn stacked_mounts_resolve_to_the_last() {
        let t = parse(&format!(
            "{BOARD}95 87 8:17 / /media/rec rw - ext4 /dev/sdb1 rw\n"
        ));
        assert_eq!(
            mount_of(&t, Path::new("/media/rec/a")).unwrap().mount_id,
            95
        );
    }

    #[test]
    fn container_overlay_and_bind() {
        let t = parse(CONTAINER);
        let root = mount_of(&t, Path::new("/etc")).unwrap();
        assert_eq!((root.fstype.as_str(), root.major), ("overlay", 0));
        let data = mount_of(&t, Path::new("/data/rec")).unwrap();
        assert_eq!(data.root, Path::new("/var/lib/recbox"));
        assert_eq!((data.major, data.minor), (254, 1));
    }
}
