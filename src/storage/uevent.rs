//! Parser of the kernel's `NETLINK_KOBJECT_UEVENT` messages.
//!
//! The kernel sends one datagram per event: a header `ACTION@DEVPATH`, then
//! `KEY=VALUE` fields, every part ended by a NUL byte:
//!
//! ```text
//! remove@/devices/.../block/sda/sda1\0ACTION=remove\0DEVPATH=/devices/.../block/sda/sda1\0
//! SUBSYSTEM=block\0MAJOR=8\0MINOR=1\0DEVNAME=sda1\0DEVTYPE=partition\0SEQNUM=4242\0
//! ```
//!
//! udev re-broadcasts events after processing them, prefixed with a binary header
//! starting with `libudev\0`; those are recognised and skipped ([`Message::Udev`]), as
//! the recorder wants the kernel's view, without waiting for udev rules.

use thiserror::Error;

/// Largest message accepted. The kernel's own limit is 2 KiB of environment
/// (`UEVENT_BUFFER_SIZE`) plus the header.
pub(crate) const MAX_MESSAGE_LEN: usize = 8192;
/// Most `KEY=VALUE` fields kept per event (the kernel sends at most 64,
/// `UEVENT_NUM_ENVP`); further fields are dropped.
pub const MAX_ENV: usize = 64;

const UDEV_MAGIC: &[u8] = b"libudev\0";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UeventError {
    #[error("empty uevent message")]
    Empty,
    #[error("uevent message is too long ({0} bytes)")]
    TooLong(usize),
    #[error("uevent header is not ACTION@DEVPATH")]
    BadHeader,
    #[error("uevent {field} disagrees with its header")]
    Inconsistent { field: &'static str },
}

/// What a datagram on the uevent socket holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An event as the kernel sent it.
    Kernel(Uevent),
    /// An event re-sent by udev (binary `libudev` header); ignored.
    Udev,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UeventAction {
    Add,
    Remove,
    Change,
    Online,
    Offline,
    Move,
    Bind,
    Unbind,
    Other(String),
}

impl UeventAction {
    fn parse(s: &str) -> Self {
        match s {
            "add" => Self::Add,
            "remove" => Self::Remove,
            "change" => Self::Change,
            "online" => Self::Online,
            "offline" => Self::Offline,
            "move" => Self::Move,
            "bind" => Self::Bind,
            "unbind" => Self::Unbind,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: UeventAction,
    /// Path of the device under `/sys`, e.g. `/devices/virtual/block/loop0`.
    pub devpath: String,
    /// `SUBSYSTEM`, e.g. `block`, `scsi`, `net`.
    subsystem: Option<String>,
    /// `DEVTYPE`, e.g. `disk` or `partition` for block devices.
    devtype: Option<String>,
    /// `DEVNAME`, the node name under `/dev`, e.g. `sda1`.
    devname: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `DISK_MEDIA_CHANGE=1`: the medium of a removable disk changed or went away.
    pub(crate) disk_media_change: bool,
    pub seqnum: Option<u64>,
    /// All `KEY=VALUE` fields in order, at most [`MAX_ENV`].
    pub env: Vec<(String, String)>,
}

impl Uevent {
    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        lookup(&self.env, key)
    }

    pub fn is_block(&self) -> bool {
        self.subsystem.as_deref() == Some("block")
    }
}

fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Parses one datagram from a `NETLINK_KOBJECT_UEVENT` socket.
pub fn parse(buf: &[u8]) -> Result<Message, UeventError> {
    if buf.is_empty() {
        return Err(UeventError::Empty);
    }
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(UeventError::TooLong(buf.len()));
    }
    if buf.starts_with(UDEV_MAGIC) {
        return Ok(Message::Udev);
    }

    let mut parts = buf.split(|&b| b == 0);
    let header = parts.next().unwrap_or_default();
    let at = header
        .iter()
        .position(|&b| b == b'@')
        .ok_or(UeventError::BadHeader)?;
    let (action, devpath) = (&header[..at], &header[at + 1..]);
    if action.is_empty() || !devpath.starts_with(b"/") {
        return Err(UeventError::BadHeader);
    }
    let action = String::from_utf8_lossy(action).into_owned();
    let devpath = String::from_utf8_lossy(devpath).into_owned();

    let mut env = Vec::new();
    for field in parts.filter(|f| !f.is_empty()) {
        if env.len() == MAX_ENV {
            break;
        }
        // A field without `=` is not something the kernel sends; skip it.
        if let Some(eq) = field.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(&field[..eq]).into_owned();
            let value = String::from_utf8_lossy(&field[eq + 1..]).into_owned();
            env.push((key, value));
        }
    }

    let mut ev = Uevent {
        action: UeventAction::parse(&action),
        devpath,
        subsystem: None,
        devtype: None,
        devname: None,
        major: None,
        minor: None,
        disk_media_change: false,
        seqnum: None,
        env: Vec::new(),
    };
    // The header is what the kernel routes on; fields that contradict it mean a
    // forged or corrupted message, which must not be acted upon.
    if lookup(&env, "ACTION").is_some_and(|a| a != action) {
        return Err(UeventError::Inconsistent { field: "ACTION" });
    }
    if lookup(&env, "DEVPATH").is_some_and(|d| d != ev.devpath) {
        return Err(UeventError::Inconsistent { field: "DEVPATH" });
    }
    for (key, value) in &env {
        match key.as_str() {
            "SUBSYSTEM" => ev.subsystem = Some(value.clone()),
            "DEVTYPE" => ev.devtype = Some(value.clone()),
            "DEVNAME" => ev.devname = Some(value.clone()),
            "MAJOR" => ev.major = value.parse().ok(),
            "MINOR" => ev.minor = value.parse().ok(),
            "DISK_MEDIA_CHANGE" => ev.disk_media_change = value == "1",
            "SEQNUM" => ev.seqnum = value.parse().ok(),
            _ => {}
        }
    }
    ev.env = env;
    Ok(Message::Kernel(ev))
}

/// Kernel messages as they arrive on the socket, shared with the matcher tests.
#[cfg(test)]
pub(crate) mod fixtures {
    pub const USB_DISK: &str =
        "/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda";
    pub const USB_PART: &str =
        "/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda/sda1";

    pub const SDA_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0SUBSYSTEM=block\0MAJOR=8\0MINOR=0\0DEVNAME=sda\0DEVTYPE=disk\0DISKSEQ=9\0SEQNUM=5123\0";
    pub const SDA1_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda/sda1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda/sda1\0SUBSYSTEM=block\0MAJOR=8\0MINOR=1\0DEVNAME=sda1\0DEVTYPE=partition\0PARTN=1\0SEQNUM=5124\0";
    pub const SDA_CHANGE: &[u8] = b"change@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0ACTION=change\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0SUBSYSTEM=block\0MAJOR=8\0MINOR=0\0DEVNAME=sda\0DEVTYPE=disk\0DISKSEQ=9\0SEQNUM=5125\0";
    pub const SDA_MEDIA_CHANGE: &[u8] = b"change@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0ACTION=change\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0SUBSYSTEM=block\0DISK_MEDIA_CHANGE=1\0MAJOR=8\0MINOR=0\0DEVNAME=sda\0DEVTYPE=disk\0DISKSEQ=9\0SEQNUM=5130\0";
    pub const SDA1_REMOVE: &[u8] = b"remove@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda/sda1\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda/sda1\0SUBSYSTEM=block\0MAJOR=8\0MINOR=1\0DEVNAME=sda1\0DEVTYPE=partition\0PARTN=1\0SEQNUM=5140\0";
    pub const SDA_REMOVE: &[u8] = b"remove@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda\0SUBSYSTEM=block\0MAJOR=8\0MINOR=0\0DEVNAME=sda\0DEVTYPE=disk\0DISKSEQ=9\0SEQNUM=5141\0";
    /// The SCSI device above `sda` taken offline (e.g. after repeated command timeouts).
    pub const SCSI_OFFLINE: &[u8] = b"offline@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0\0ACTION=offline\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0\0SUBSYSTEM=scsi\0DEVTYPE=scsi_device\0DRIVER=sd\0MODALIAS=scsi:t-0x00\0SEQNUM=5135\0";
    /// The USB interface the disk hangs off unplugged: comes before the block removes.
    pub const USB_IFACE_REMOVE: &[u8] = b"remove@/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0\0SUBSYSTEM=usb\0DEVTYPE=usb_interface\0PRODUCT=781/5581/100\0TYPE=0/0/0\0INTERFACE=8/6/80\0MODALIAS=usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00\0SEQNUM=5138\0";
    /// A second USB stick next to the first one.
    pub const SDB1_REMOVE: &[u8] = b"remove@/devices/pci0000:00/0000:00:14.0/usb2/2-2/2-2:1.0/host5/target5:0:0/5:0:0:0/block/sdb/sdb1\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-2/2-2:1.0/host5/target5:0:0/5:0:0:0/block/sdb/sdb1\0SUBSYSTEM=block\0MAJOR=8\0MINOR=17\0DEVNAME=sdb1\0DEVTYPE=partition\0PARTN=1\0SEQNUM=5150\0";

    pub const MMC_DISK: &str =
        "/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0";
    pub const MMCBLK0P2_ADD: &[u8] = b"add@/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0/mmcblk0p2\0ACTION=add\0DEVPATH=/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0/mmcblk0p2\0SUBSYSTEM=block\0MAJOR=179\0MINOR=2\0DEVNAME=mmcblk0p2\0DEVTYPE=partition\0PARTN=2\0SEQNUM=1811\0";
    pub const MMCBLK0_REMOVE: &[u8] = b"remove@/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0\0ACTION=remove\0DEVPATH=/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0\0SUBSYSTEM=block\0MAJOR=179\0MINOR=0\0DEVNAME=mmcblk0\0DEVTYPE=disk\0DISKSEQ=2\0SEQNUM=1900\0";

    /// `losetup` attaching a file: a plain change, no media-change flag.
    pub const LOOP0_ATTACH: &[u8] = b"change@/devices/virtual/block/loop0\0ACTION=change\0DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0MAJOR=7\0MINOR=0\0DEVNAME=loop0\0DEVTYPE=disk\0DISKSEQ=11\0SEQNUM=823\0";
    /// `losetup -d`: the backing file goes away, reported as a media change.
    pub const LOOP0_DETACH: &[u8] = b"change@/devices/virtual/block/loop0\0ACTION=change\0DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0DISK_MEDIA_CHANGE=1\0MAJOR=7\0MINOR=0\0DEVNAME=loop0\0DEVTYPE=disk\0DISKSEQ=11\0SEQNUM=827\0";

    pub const NVME_PART: &str =
        "/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p1";
    pub const NVME0N1_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1\0SUBSYSTEM=block\0MAJOR=259\0MINOR=0\0DEVNAME=nvme0n1\0DEVTYPE=disk\0DISKSEQ=1\0SEQNUM=2450\0";
    pub const NVME0N1P1_REMOVE: &[u8] = b"remove@/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p1\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p1\0SUBSYSTEM=block\0MAJOR=259\0MINOR=1\0DEVNAME=nvme0n1p1\0DEVTYPE=partition\0PARTN=1\0SEQNUM=2460\0";

    pub const NET_REMOVE: &[u8] = b"remove@/devices/virtual/net/veth1a2b3c\0ACTION=remove\0DEVPATH=/devices/virtual/net/veth1a2b3c\0SUBSYSTEM=net\0INTERFACE=veth1a2b3c\0IFINDEX=12\0SEQNUM=5301\0";
    /// A char device with the same major:minor as `sda1`: must not match a block device.
    pub const TTY_REMOVE: &[u8] = b"remove@/devices/virtual/tty/tty1\0ACTION=remove\0DEVPATH=/devices/virtual/tty/tty1\0SUBSYSTEM=tty\0MAJOR=4\0MINOR=1\0DEVNAME=tty1\0SEQNUM=5302\0";

    /// The same `sda1` remove after udev processed it: `libudev` binary header
    /// (magic 0xfeedcafe big-endian, header size 40, properties at 40) then properties.
    pub fn udev_sda1_remove() -> Vec<u8> {
        let props: &[u8] = b"ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sda/sda1\0SUBSYSTEM=block\0DEVNAME=/dev/sda1\0DEVTYPE=partition\0SEQNUM=5140\0MAJOR=8\0MINOR=1\0";
        let mut m = b"libudev\0".to_vec();
        m.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes());
        for word in [
            40u32,
            40,
            props.len() as u32,
            0x1b2c_3d4e,
            0x5f60_7182,
            0,
            0,
        ] {
            m.extend_from_slice(&word.to_ne_bytes());
        }
        m.extend_from_slice(props);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use proptest::prelude::*;

    fn kernel(buf: &[u8]) -> Uevent {
        match parse(buf).expect("parses") {
            Message::Kernel(ev) => ev,
            Message::Udev => panic!("not a kernel message"),
        }
    }

    #[test]
    fn usb_disk_add() {
        let ev = kernel(SDA_ADD);
        assert_eq!(ev.action, UeventAction::Add);
        assert_eq!(ev.devpath, USB_DISK);
        assert_eq!(ev.subsystem.as_deref(), Some("block"));
        assert_eq!(ev.devtype.as_deref(), Some("disk"));
        assert_eq!(ev.devname.as_deref(), Some("sda"));
        assert_eq!((ev.major, ev.minor), (Some(8), Some(0)));
        assert_eq!(ev.seqnum, Some(5123));
        assert_eq!(ev.get("DISKSEQ"), Some("9"));
        assert!(!ev.disk_media_change);
        assert!(ev.is_block());
        assert_eq!(ev.env.len(), 9);
        assert_eq!(ev.env[0], ("ACTION".to_owned(), "add".to_owned()));
    }

    #[test]
    fn usb_partition_add_and_remove() {
        let add = kernel(SDA1_ADD);
        assert_eq!(add.action, UeventAction::Add);
        assert_eq!(add.devpath, USB_PART);
        assert_eq!(add.devtype.as_deref(), Some("partition"));
        assert_eq!((add.major, add.minor), (Some(8), Some(1)));
        assert_eq!(add.get("PARTN"), Some("1"));

        let remove = kernel(SDA1_REMOVE);
        assert_eq!(remove.action, UeventAction::Remove);
        assert_eq!(remove.devpath, USB_PART);
        assert_eq!(remove.devname.as_deref(), Some("sda1"));
        assert_eq!(kernel(SDA_REMOVE).action, UeventAction::Remove);
    }

    #[test]
    fn plain_change_and_media_change() {
        let change = kernel(SDA_CHANGE);
        assert_eq!(change.action, UeventAction::Change);
        assert!(!change.disk_media_change);

        let media = kernel(SDA_MEDIA_CHANGE);
        assert_eq!(media.action, UeventAction::Change);
        assert!(media.disk_media_change);
        assert_eq!(media.devname.as_deref(), Some("sda"));
    }

    #[test]
    fn mmc_card() {
        let p2 = kernel(MMCBLK0P2_ADD);
        assert_eq!(p2.devname.as_deref(), Some("mmcblk0p2"));
        assert_eq!((p2.major, p2.minor), (Some(179), Some(2)));
        assert!(p2.devpath.starts_with(MMC_DISK));
        let disk = kernel(MMCBLK0_REMOVE);
        assert_eq!(disk.action, UeventAction::Remove);
        assert_eq!(disk.devpath, MMC_DISK);
    }

    #[test]
    fn loop_attach_and_detach() {
        let attach = kernel(LOOP0_ATTACH);
        assert_eq!(attach.action, UeventAction::Change);
        assert_eq!(attach.devpath, "/devices/virtual/block/loop0");
        assert!(!attach.disk_media_change);
        let detach = kernel(LOOP0_DETACH);
        assert!(detach.disk_media_change);
        assert_eq!((detach.major, detach.minor), (Some(7), Some(0)));
    }

    #[test]
    fn nvme() {
        let disk = kernel(NVME0N1_ADD);
        assert_eq!(disk.devname.as_deref(), Some("nvme0n1"));
        assert_eq!((disk.major, disk.minor), (Some(259), Some(0)));
        let part = kernel(NVME0N1P1_REMOVE);
        assert_eq!(part.devpath, NVME_PART);
        assert_eq!(part.devtype.as_deref(), Some("partition"));
    }

    #[test]
    fn scsi_offline() {
        let ev = kernel(SCSI_OFFLINE);
        assert_eq!(ev.action, UeventAction::Offline);
        assert_eq!(ev.subsystem.as_deref(), Some("scsi"));
        assert_eq!(ev.devtype.as_deref(), Some("scsi_device"));
        assert_eq!((ev.major, ev.minor), (None, None));
        assert!(!ev.is_block());
    }

    #[test]
    fn non_block_events_parse() {
        let net = kernel(NET_REMOVE);
        assert_eq!(net.subsystem.as_deref(), Some("net"));
        assert_eq!(net.get("INTERFACE"), Some("veth1a2b3c"));
        assert!(!net.is_block());
        let usb = kernel(USB_IFACE_REMOVE);
        assert_eq!(usb.subsystem.as_deref(), Some("usb"));
    }

    #[test]
    fn udev_messages_are_skipped() {
        assert_eq!(parse(&udev_sda1_remove()), Ok(Message::Udev));
    }

    #[test]
    fn other_actions_are_kept() {
        let ev = kernel(b"bind@/devices/platform/foo\0ACTION=bind\0DEVPATH=/devices/platform/foo\0SUBSYSTEM=platform\0DRIVER=foo\0SEQNUM=1\0");
        assert_eq!(ev.action, UeventAction::Bind);
        let ev = kernel(b"frob@/devices/platform/foo\0");
        assert_eq!(ev.action, UeventAction::Other("frob".to_owned()));
        assert!(ev.env.is_empty());
        let actions = ["remove", "online", "move", "unbind"].map(UeventAction::parse);
        assert_eq!(
            actions,
            [
                UeventAction::Remove,
                UeventAction::Online,
                UeventAction::Move,
                UeventAction::Unbind
            ]
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(parse(b""), Err(UeventError::Empty));
        assert_eq!(parse(b"ACTION=add\0"), Err(UeventError::BadHeader));
        assert_eq!(parse(b"@/devices/x\0"), Err(UeventError::BadHeader));
        assert_eq!(parse(b"add@devices\0"), Err(UeventError::BadHeader));
        assert_eq!(parse(b"\0add@/devices/x\0"), Err(UeventError::BadHeader));
        assert_eq!(
            parse(&vec![b'a'; MAX_MESSAGE_LEN + 1]),
            Err(UeventError::TooLong(MAX_MESSAGE_LEN + 1))
        );
    }

    #[test]
    fn fields_contradicting_the_header_are_rejected() {
        assert_eq!(
            parse(b"add@/devices/x\0ACTION=remove\0"),
            Err(UeventError::Inconsistent { field: "ACTION" })
        );
        assert_eq!(
            parse(b"remove@/devices/x\0ACTION=remove\0DEVPATH=/devices/y\0"),
            Err(UeventError::Inconsistent { field: "DEVPATH" })
        );
    }

    #[test]
    fn odd_fields_are_tolerated() {
        // No trailing NUL, an empty field, a field without `=`, a bad number.
        let ev = kernel(b"add@/devices/x\0\0NOEQUALS\0MAJOR=eight\0MINOR=3\0KEY=a=b");
        assert_eq!(ev.major, None);
        assert_eq!(ev.minor, Some(3));
        assert_eq!(ev.get("KEY"), Some("a=b"));
        assert_eq!(ev.env.len(), 3);
    }

    #[test]
    fn env_is_bounded() {
        let mut m = b"change@/devices/x\0".to_vec();
        for i in 0..MAX_ENV + 10 {
            m.extend_from_slice(format!("K{i}=v\0").as_bytes());
        }
        m.extend_from_slice(b"DISK_MEDIA_CHANGE=1\0");
        let ev = kernel(&m);
        assert_eq!(ev.env.len(), MAX_ENV);
        assert!(!ev.disk_media_change, "fields past the bound are not read");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&buf);
        }

        #[test]
        fn arbitrary_bytes_after_a_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut buf = b"change@/devices/virtual/block/loop0\0".to_vec();
            buf.extend_from_slice(&tail);
            let _ = parse(&buf);
        }

        #[test]
        fn well_formed_messages_round_trip(
            action in "[a-z]{1,8}",
            devpath in "(/[a-z0-9:.]{1,12}){1,6}",
            fields in proptest::collection::vec(("[A-Z_]{1,10}", "[ -~]{0,20}"), 0..20),
        ) {
            let mut buf = format!("{action}@{devpath}\0").into_bytes();
            let fields: Vec<_> = fields
                .into_iter()
                .filter(|(k, _)| k != "ACTION" && k != "DEVPATH")
                .collect();
            for (k, v) in &fields {
                buf.extend_from_slice(format!("{k}={v}\0").as_bytes());
            }
            let Message::Kernel(ev) = parse(&buf).unwrap() else { panic!("udev") };
            prop_assert_eq!(ev.devpath, devpath);
            prop_assert_eq!(ev.env, fields);
        }
    }
}
