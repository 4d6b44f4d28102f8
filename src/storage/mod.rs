//! Storage watching: everything that tells the recorder, at once, that the storage root
//! it writes to has a problem, and when the problem is gone.
//!
//! Five sources feed one sans-IO [`health::StorageHealth`] state machine:
//!
//! 1. the writer's own results, mapped by [`errno::classify`];
//! 2. block-device uevents from the kernel ([`netlink::UeventSource`], parsed by
//!    [`uevent`]) for the device that backs the root ([`device::BackingDevice`]);
//! 3. `statvfs` watermarks ([`space::statvfs`]);
//! 4. the mount table ([`mounts::MountWatch`]), for unmounts, read-only remounts and
//!    shut-down file systems;
//! 5. checks of the files being recorded ([`inode::check`]): removed, or flagged so
//!    that the next write fails.
//!
//! Parsers and state machines are pure and take text, bytes and time as arguments; the
//! IO shells (`space`, `netlink`, [`device::BackingDevice::resolve`]) are thin.

pub mod device;
pub mod errno;
pub mod health;
pub mod inode;
pub mod mountinfo;
pub mod mounts;
pub mod netlink;
pub mod space;
pub mod uevent;
