//! `StorageHealth`: one sans-IO state machine that turns every observation about the
//! primary storage into fault and cleared events, each reported once.
//!
//! A fault is keyed by (kind, target). It is raised by the first observation that
//! shows it and stays active, without new events, while any of its causes holds; the
//! `Cleared` event comes when the last cause is gone:
//!
//! | cause            | raised by                                  | cleared by                              |
//! |------------------|--------------------------------------------|-----------------------------------------|
//! | write            | `WriteError` (kind from [`super::errno`])  | `WriteOk` on the same target, probe ok  |
//! | device           | `Device` (removed, offline, media change)  | probe ok                                |
//! | mount            | `Mount(Unmounted / ReadOnly)`              | `Mount(Mounted / ReadWrite)`, probe ok  |
//! | watermark        | `Space` below a watermark                  | `Space` back above low + hysteresis     |
//!
//! A successful probe (a test write to the root) is the ground truth that the storage
//! takes writes again, so it clears every cause except the watermarks, which only a
//! new space reading can clear.

use std::fmt;

use crate::link::frame::{self, FaultKind, FaultTarget, Frame, RecordingId, UnixMillis};

use super::device::DeviceEvent;
use super::mounts::MountChange;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Watermarks on the free space of the storage (bytes available to the recorder,
/// `f_bavail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// `LowSpace` warning below this. `None`: the smaller of 1 GiB and 5 % of the
    /// file system, so a large disk warns about an hour of video ahead and a small
    /// card does not warn permanently. Never below `full_space_bytes`.
    pub low_space_bytes: Option<u64>,
    /// `DiskFull` below this, before a write fails, so the recorder fails over while
    /// the last fragment can still be finished.
    pub full_space_bytes: u64,
    /// `LowSpace` and `DiskFull` clear only once free space is back above the low
    /// watermark plus this margin, so a recording hovering at a threshold (or files
    /// being deleted and rewritten) does not flap between primary and spool. On a
    /// small file system the margin shrinks to a quarter of the space above the low
    /// watermark, so freeing it always clears.
    pub hysteresis_bytes: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            low_space_bytes: None,
            full_space_bytes: 64 * MIB,
            hysteresis_bytes: 64 * MIB,
        }
    }
}

impl HealthConfig {
    /// The low watermark for a file system of `total_bytes`.
    pub(crate) fn low_space_for(&self, total_bytes: u64) -> u64 {
        self.low_space_bytes
            .unwrap_or_else(|| GIB.min(total_bytes / 20))
            .max(self.full_space_bytes)
    }
}

/// Something learnt about the primary storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A write (or sync, create, rename) on the primary failed.
    WriteError {
        target: FaultTarget,
        kind: FaultKind,
        detail: String,
    },
    /// A write on the primary succeeded.
    WriteOk { target: FaultTarget },
    /// A `statvfs` reading.
    Space { free_bytes: u64, total_bytes: u64 },
    /// A uevent that concerns the backing device.
    Device(DeviceEvent),
    /// A change in the mount table.
    Mount(MountChange),
    /// A periodic test write of the root after a fault, to detect recovery.
    Probe { ok: bool },
    /// A check (not a write) of the file of `target` being recorded: `problem` says
    /// why writing on to it fails or is lost, `None` that nothing is wrong.
    FileCheck {
        target: FaultTarget,
        problem: Option<String>,
    },
    /// The recording no longer writes the file of `target` that was being checked.
    FileUnwatched { target: FaultTarget },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    Fault {
        kind: FaultKind,
        target: FaultTarget,
        detail: String,
        at: UnixMillis,
    },
    Cleared {
        kind: FaultKind,
        target: FaultTarget,
        at: UnixMillis,
    },
}

impl HealthEvent {
    /// The media-link frame reporting this event for `recording`.
    pub(crate) fn to_frame(&self, recording: &RecordingId) -> Frame {
        match *self {
            HealthEvent::Fault {
                kind,
                target,
                ref detail,
                at,
            } => Frame::Fault(frame::Fault {
                recording: recording.clone(),
                kind,
                target,
                detail: frame::text(detail),
                at,
            }),
            HealthEvent::Cleared { kind, target, at } => Frame::Cleared { kind, target, at },
        }
    }
}

/// Why a fault is active, as a bit set: a fault may hold for several reasons at
/// once (unmounted *and* removed) and clears only when none is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Causes(u8);

impl Causes {
    const WRITE: Self = Self(1);
    const DEVICE: Self = Self(2);
    const MOUNT: Self = Self(4);
    const WATERMARK: Self = Self(8);
    /// A check of the file found it removed or flagged: a write to it would fail
    /// or be lost, even one that succeeds.
    const CHECK: Self = Self(16);

    fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
    fn is_empty(self) -> bool {
        self.0 == 0
    }
    fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A fault that is currently active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFault {
    pub kind: FaultKind,
    pub target: FaultTarget,
    /// Detail of the observation that raised it.
    detail: String,
    pub since: UnixMillis,
    causes: Causes,
    /// A probe write succeeded since the last write error: the storage takes writes
    /// again, but only a write of the recording itself clears a write fault (the
    /// error may belong to one file, e.g. a damaged or immutable index).
    probed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct StorageHealth {
    config: HealthConfig,
    /// In the order raised; a handful at most.
    active: Vec<ActiveFault>,
}

impl StorageHealth {
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            active: Vec::new(),
        }
    }

    #[cfg(test)]
    fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// The primary takes writes: no fault is active other than the `LowSpace` warning
    /// and write faults that a probe write has since got past.
    pub fn usable(&self) -> bool {
        self.active
            .iter()
            .all(|f| f.kind == FaultKind::LowSpace || (f.causes == Causes::WRITE && f.probed))
    }

    pub fn active_faults(&self) -> impl Iterator<Item = &ActiveFault> {
        self.active.iter()
    }

    pub fn observe(&mut self, obs: Observation, now: UnixMillis) -> Vec<HealthEvent> {
        let mut out = Vec::new();
        match obs {
            Observation::WriteError {
                target,
                kind,
                detail,
            } => self.raise(kind, target, Causes::WRITE, detail, now, &mut out),
            // A write that succeeds also shows the storage takes writes again.
            Observation::WriteOk { target } => self.drop_causes(
                |f| f.target == target || f.target == FaultTarget::Storage,
                Causes::WRITE,
                now,
                &mut out,
            ),
            Observation::Space {
                free_bytes,
                total_bytes,
            } => self.space(free_bytes, total_bytes, now, &mut out),
            Observation::Device(ev) => {
                let detail = match ev {
                    DeviceEvent::Removed => "storage device removed",
                    DeviceEvent::Offline => "storage device offline",
                    DeviceEvent::MediaChanged => "storage medium changed or removed",
                };
                let (kind, target) = (FaultKind::DiskOffline, FaultTarget::Storage);
                self.raise(kind, target, Causes::DEVICE, detail.into(), now, &mut out);
            }
            Observation::Mount(change) => {
                let target = FaultTarget::Storage;
                let raised = match change {
                    MountChange::Unmounted => Some((FaultKind::DiskOffline, "storage unmounted")),
                    MountChange::ReadOnly => {
                        Some((FaultKind::ReadOnly, "storage mounted read-only"))
                    }
                    MountChange::ShutDown => Some((
                        FaultKind::IoError,
                        "file system shut down: every write fails with EIO",
                    )),
                    MountChange::Mounted | MountChange::ReadWrite => None,
                };
                if let Some((kind, detail)) = raised {
                    self.raise(kind, target, Causes::MOUNT, detail.into(), now, &mut out);
                } else {
                    // A fresh mount ends what the old one was; writable again ends
                    // only read-only.
                    let ended: &[FaultKind] = match change {
                        MountChange::Mounted => &[FaultKind::DiskOffline, FaultKind::IoError],
                        _ => &[FaultKind::ReadOnly],
                    };
                    let this = |f: &ActiveFault| ended.contains(&f.kind) && f.target == target;
                    self.drop_causes(this, Causes::MOUNT, now, &mut out);
                }
            }
            Observation::Probe { ok: true } => {
                // A probe write proves the storage as a whole takes writes again, which
                // ends the storage-wide kinds however they were found. A fault of one
                // file (an immutable or damaged index) stops blocking the primary but
                // stays until a write of its own target succeeds, so retrying the same
                // file does not report it again.
                let all = Causes::WRITE.with(Causes::DEVICE).with(Causes::MOUNT);
                let storage_wide = |f: &ActiveFault| {
                    !matches!(
                        f.kind,
                        FaultKind::FsError
                            | FaultKind::FileWriteFailed
                            | FaultKind::IndexWriteFailed
                    )
                };
                self.drop_causes(storage_wide, all, now, &mut out);
                let others = Causes::DEVICE.with(Causes::MOUNT);
                self.drop_causes(|f| !storage_wide(f), others, now, &mut out);
                for f in &mut self.active {
                    f.probed = true;
                }
            }
            Observation::Probe { ok: false } => {
                tracing::debug!(active = self.active.len(), "storage probe failed");
            }
            Observation::FileCheck {
                target,
                problem: Some(detail),
            } => {
                let kind = match target {
                    FaultTarget::Index => FaultKind::IndexWriteFailed,
                    _ => FaultKind::FileWriteFailed,
                };
                self.raise(kind, target, Causes::CHECK, detail, now, &mut out);
            }
            Observation::FileCheck {
                target,
                problem: None,
            } => self.drop_causes(|f| f.target == target, Causes::CHECK, now, &mut out),
            Observation::FileUnwatched { target } => {
                // What a check found stands as if a write had met it: until a write
                // of that target succeeds (in the recording's next files).
                for f in &mut self.active {
                    if f.target == target && f.causes.contains(Causes::CHECK) {
                        f.causes = f.causes.without(Causes::CHECK).with(Causes::WRITE);
                    }
                }
            }
        }
        out
    }

    fn space(&mut self, free: u64, total: u64, now: UnixMillis, out: &mut Vec<HealthEvent>) {
        if total == 0 {
            // Pseudo file systems report nothing; there is no watermark to compare.
            return;
        }
        let low = self.config.low_space_for(total);
        let full = self.config.full_space_bytes;
        // The margin is at most a quarter of the space above the low watermark: a
        // small file system, mostly free again, must clear (free space never
        // reaches its total, the recording itself takes some).
        let margin = self
            .config
            .hysteresis_bytes
            .min(total.saturating_sub(low) / 4);
        let clear_at = low.saturating_add(margin);
        let detail = |mark: u64| {
            format!(
                "{} free of {}, below {}",
                Bytes(free),
                Bytes(total),
                Bytes(mark)
            )
        };
        let is = |kind| move |f: &ActiveFault| f.kind == kind && f.target == FaultTarget::Storage;
        if free >= clear_at {
            // Most severe first, the reverse of raising.
            self.drop_causes(is(FaultKind::DiskFull), Causes::WATERMARK, now, out);
            self.drop_causes(is(FaultKind::LowSpace), Causes::WATERMARK, now, out);
            return;
        }
        let target = FaultTarget::Storage;
        if free < low {
            self.raise(
                FaultKind::LowSpace,
                target,
                Causes::WATERMARK,
                detail(low),
                now,
                out,
            );
        }
        if free < full {
            self.raise(
                FaultKind::DiskFull,
                target,
                Causes::WATERMARK,
                detail(full),
                now,
                out,
            );
        }
    }

    fn raise(
        &mut self,
        kind: FaultKind,
        target: FaultTarget,
        cause: Causes,
        detail: String,
        now: UnixMillis,
        out: &mut Vec<HealthEvent>,
    ) {
        if let Some(f) = self
            .active
            .iter_mut()
            .find(|f| f.kind == kind && f.target == target)
        {
            f.causes = f.causes.with(cause);
            f.probed = false;
            return;
        }
        tracing::warn!(?kind, ?target, %detail, "storage fault");
        out.push(HealthEvent::Fault {
            kind,
            target,
            detail: detail.clone(),
            at: now,
        });
        self.active.push(ActiveFault {
            kind,
            target,
            detail,
            since: now,
            causes: cause,
            probed: false,
        });
    }

    /// Removes `causes` from the faults selected by `which`, clearing those left
    /// without any cause.
    fn drop_causes(
        &mut self,
        which: impl Fn(&ActiveFault) -> bool,
        causes: Causes,
        now: UnixMillis,
        out: &mut Vec<HealthEvent>,
    ) {
        self.active.retain_mut(|f| {
            if !which(f) {
                return true;
            }
            f.causes = f.causes.without(causes);
            if !f.causes.is_empty() {
                return true;
            }
            tracing::info!(kind = ?f.kind, target = ?f.target, "storage fault cleared");
            out.push(HealthEvent::Cleared {
                kind: f.kind,
                target: f.target,
                at: now,
            });
            false
        });
    }
}

/// Byte counts for humans in fault details.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= GIB {
            write!(f, "{:.1} GiB", self.0 as f64 / GIB as f64)
        } else {
            write!(f, "{:.1} MiB", self.0 as f64 / MIB as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FaultKind::*;
    use FaultTarget::{File, Index, Storage};

    const TOTAL: u64 = 64 * GIB;

    fn health() -> StorageHealth {
        StorageHealth::default()
    }

    fn write_error(target: FaultTarget, kind: FaultKind) -> Observation {
        Observation::WriteError {
            target,
            kind,
            detail: format!("{kind:?} writing {target:?}"),
        }
    }

    fn space(free_bytes: u64) -> Observation {
        Observation::Space {
            free_bytes,
            total_bytes: TOTAL,
        }
    }

    /// The events as (kind, target, raised?) for compact assertions.
    fn summary(events: &[HealthEvent]) -> Vec<(FaultKind, FaultTarget, bool)> {
        events
            .iter()
            .map(|e| match *e {
                HealthEvent::Fault { kind, target, .. } => (kind, target, true),
                HealthEvent::Cleared { kind, target, .. } => (kind, target, false),
            })
            .collect()
    }

    fn active(h: &StorageHealth) -> Vec<(FaultKind, FaultTarget)> {
        h.active_faults().map(|f| (f.kind, f.target)).collect()
    }

    #[test]
    fn starts_healthy() {
        let h = health();
        assert!(h.usable());
        assert_eq!(h.active_faults().count(), 0);
    }

    #[test]
    fn write_error_is_reported_once_and_cleared_by_a_write() {
        let mut h = health();
        let ev = h.observe(write_error(File, IoError), 100);
        assert_eq!(
            ev,
            [HealthEvent::Fault {
                kind: IoError,
                target: File,
                detail: "IoError writing File".into(),
                at: 100,
            }]
        );
        assert!(!h.usable());
        assert!(h.observe(write_error(File, IoError), 200).is_empty());
        let f = h.active_faults().next().unwrap();
        assert_eq!((f.since, f.detail.as_str()), (100, "IoError writing File"));

        assert!(h
            .observe(Observation::WriteOk { target: Index }, 250)
            .is_empty());
        let ev = h.observe(Observation::WriteOk { target: File }, 300);
        assert_eq!(
            ev,
            [HealthEvent::Cleared {
                kind: IoError,
                target: File,
                at: 300
            }]
        );
        assert!(h.usable());
        // Cleared faults are reported again when they come back.
        assert_eq!(
            summary(&h.observe(write_error(File, IoError), 400)),
            [(IoError, File, true)]
        );
    }

    #[test]
    fn write_faults_are_per_kind_and_target() {
        let mut h = health();
        h.observe(write_error(File, DiskFull), 1);
        assert_eq!(
            summary(&h.observe(write_error(Index, DiskFull), 2)),
            [(DiskFull, Index, true)]
        );
        assert_eq!(
            summary(&h.observe(write_error(File, IoError), 3)),
            [(IoError, File, true)]
        );
        assert_eq!(
            active(&h),
            [(DiskFull, File), (DiskFull, Index), (IoError, File)]
        );
        // A good write on the file clears both of its faults, in the order raised.
        assert_eq!(
            summary(&h.observe(Observation::WriteOk { target: File }, 4)),
            [(DiskFull, File, false), (IoError, File, false)]
        );
        assert_eq!(active(&h), [(DiskFull, Index)]);
    }

    #[test]
    fn every_kind_but_low_space_makes_the_primary_unusable() {
        for kind in [
            DiskFull,
            DiskOffline,
            ReadOnly,
            IoError,
            FsError,
            FileWriteFailed,
            IndexWriteFailed,
        ] {
            let mut h = health();
            h.observe(write_error(File, kind), 1);
            assert!(!h.usable(), "{kind:?}");
        }
        let mut h = health();
        h.observe(space(500 * MIB), 1);
        assert_eq!(active(&h), [(LowSpace, Storage)]);
        assert!(h.usable());
    }

    #[test]
    fn low_watermark_default() {
        let c = HealthConfig::default();
        assert_eq!(c.low_space_for(64 * GIB), GIB);
        assert_eq!(c.low_space_for(16 * GIB), 16 * GIB / 20);
        // Never below the full watermark.
        assert_eq!(c.low_space_for(GIB), 64 * MIB);
        let fixed = HealthConfig {
            low_space_bytes: Some(10 * GIB),
            ..c
        };
        assert_eq!(fixed.low_space_for(TOTAL), 10 * GIB);
    }

    #[test]
    fn space_watermarks_raise_in_order_of_severity() {
        let mut h = health();
        assert!(h.observe(space(2 * GIB), 1).is_empty());
        assert_eq!(
            summary(&h.observe(space(GIB - 1), 2)),
            [(LowSpace, Storage, true)]
        );
        assert!(h.usable());
        assert!(h.observe(space(100 * MIB), 3).is_empty());
        assert_eq!(
            summary(&h.observe(space(64 * MIB - 1), 4)),
            [(DiskFull, Storage, true)]
        );
        assert!(!h.usable());
        assert!(h.observe(space(0), 5).is_empty());

        // Straight from plenty to full: the warning comes first.
        let mut h = health();
        assert_eq!(
            summary(&h.observe(space(MIB), 1)),
            [(LowSpace, Storage, true), (DiskFull, Storage, true)]
        );
        let full = h.active_faults().find(|f| f.kind == DiskFull).unwrap();
        assert_eq!(full.detail, "1.0 MiB free of 64.0 GiB, below 64.0 MiB");
    }

    #[test]
    fn space_clears_with_hysteresis() {
        let mut h = health();
        h.observe(space(10 * MIB), 1);
        // Above the full watermark but still in the low zone: DiskFull stays, so the
        // recorder does not move back onto a nearly full disk.
        assert!(h.observe(space(500 * MIB), 2).is_empty());
        // Above the low watermark, inside the margin: still nothing.
        assert!(h.observe(space(GIB + 10 * MIB), 3).is_empty());
        assert!(h.observe(space(GIB + 64 * MIB - 1), 4).is_empty());
        assert!(!h.usable());
        assert_eq!(
            summary(&h.observe(space(GIB + 64 * MIB), 5)),
            [(DiskFull, Storage, false), (LowSpace, Storage, false)]
        );
        assert!(h.usable());
        // Hovering around the watermark does not flap.
        assert_eq!(
            summary(&h.observe(space(GIB - 1), 6)),
            [(LowSpace, Storage, true)]
        );
        assert!(h.observe(space(GIB + 1), 7).is_empty());
        assert!(h.observe(space(GIB - 1), 8).is_empty());
        assert!(h.observe(space(GIB + 1), 9).is_empty());
    }

    #[test]
    fn space_hysteresis_is_configurable() {
        let config = HealthConfig {
            low_space_bytes: Some(100 * MIB),
            full_space_bytes: 10 * MIB,
            hysteresis_bytes: 0,
        };
        let mut h = StorageHealth::new(config);
        assert_eq!(h.config(), &config);
        assert_eq!(
            summary(&h.observe(space(100 * MIB - 1), 1)),
            [(LowSpace, Storage, true)]
        );
        assert_eq!(
            summary(&h.observe(space(100 * MIB), 2)),
            [(LowSpace, Storage, false)]
        );
    }

    #[test]
    fn tiny_file_systems_can_clear_and_empty_readings_are_ignored() {
        // A 32 MiB tmpfs with 2M/4M watermarks and the default 64 MiB margin: the
        // margin shrinks to a quarter of the 28 MiB above the low watermark.
        let mut h = StorageHealth::new(HealthConfig {
            low_space_bytes: Some(4 * MIB),
            full_space_bytes: 2 * MIB,
            ..HealthConfig::default()
        });
        let tiny = |free| Observation::Space {
            free_bytes: free,
            total_bytes: 32 * MIB,
        };
        assert_eq!(summary(&h.observe(tiny(MIB), 1)).len(), 2);
        assert!(h.observe(tiny(11 * MIB - 1), 2).is_empty());
        // Freed, though the recording still takes some of it.
        assert_eq!(
            summary(&h.observe(tiny(11 * MIB), 2)),
            [(DiskFull, Storage, false), (LowSpace, Storage, false)]
        );
        assert!(h
            .observe(
                Observation::Space {
                    free_bytes: 0,
                    total_bytes: 0
                },
                3
            )
            .is_empty());
    }

    #[test]
    fn space_does_not_clear_a_write_error_disk_full() {
        let mut h = health();
        h.observe(write_error(Storage, DiskFull), 1);
        h.observe(space(MIB), 2);
        // One DiskFull on the storage, held by the write error and the watermark.
        assert_eq!(active(&h), [(DiskFull, Storage), (LowSpace, Storage)]);
        assert_eq!(
            summary(&h.observe(space(10 * GIB), 3)),
            [(LowSpace, Storage, false)]
        );
        assert_eq!(active(&h), [(DiskFull, Storage)]);
        assert_eq!(
            summary(&h.observe(Observation::WriteOk { target: Storage }, 4)),
            [(DiskFull, Storage, false)]
        );
    }

    #[test]
    fn write_ok_does_not_clear_watermarks() {
        let mut h = health();
        h.observe(space(MIB), 1);
        assert!(h
            .observe(Observation::WriteOk { target: Storage }, 2)
            .is_empty());
        assert!(h.observe(Observation::Probe { ok: true }, 3).is_empty());
        assert_eq!(active(&h), [(LowSpace, Storage), (DiskFull, Storage)]);
    }

    #[test]
    fn device_events_and_probe_recovery() {
        for (dev, detail) in [
            (DeviceEvent::Removed, "storage device removed"),
            (DeviceEvent::Offline, "storage device offline"),
            (
                DeviceEvent::MediaChanged,
                "storage medium changed or removed",
            ),
        ] {
            let mut h = health();
            let ev = h.observe(Observation::Device(dev), 10);
            assert_eq!(
                ev,
                [HealthEvent::Fault {
                    kind: DiskOffline,
                    target: Storage,
                    detail: detail.into(),
                    at: 10
                }]
            );
            assert!(!h.usable());
            assert!(h.observe(Observation::Device(dev), 11).is_empty());
            assert!(h
                .observe(Observation::WriteOk { target: Storage }, 12)
                .is_empty());
            assert!(h.observe(Observation::Probe { ok: false }, 13).is_empty());
            assert!(!h.usable());
            assert_eq!(
                h.observe(Observation::Probe { ok: true }, 14),
                [HealthEvent::Cleared {
                    kind: DiskOffline,
                    target: Storage,
                    at: 14
                }]
            );
            assert!(h.usable());
        }
    }

    #[test]
    fn removal_reported_by_several_sources_is_one_fault() {
        let mut h = health();
        // The kernel's remove, then the writer's ENODEV on the storage, then the
        // automounter's lazy unmount: one DiskOffline on the storage.
        assert_eq!(
            summary(&h.observe(Observation::Device(DeviceEvent::Removed), 1)),
            [(DiskOffline, Storage, true)]
        );
        assert!(h.observe(write_error(Storage, DiskOffline), 2).is_empty());
        assert!(h
            .observe(Observation::Mount(MountChange::Unmounted), 3)
            .is_empty());
        // Mounted again: the mount cause goes, but the device removal still holds.
        assert!(h
            .observe(Observation::Mount(MountChange::Mounted), 4)
            .is_empty());
        assert!(!h.usable());
        assert_eq!(
            summary(&h.observe(Observation::Probe { ok: true }, 5)),
            [(DiskOffline, Storage, false)]
        );
        assert_eq!(h.active_faults().count(), 0);
    }

    #[test]
    fn probe_clears_storage_wide_faults_and_lets_file_errors_be_retried() {
        let mut h = health();
        h.observe(write_error(File, IoError), 1);
        h.observe(write_error(Index, FsError), 2);
        h.observe(Observation::Mount(MountChange::ReadOnly), 3);
        h.observe(space(500 * MIB), 4);
        assert_eq!(
            summary(&h.observe(Observation::Probe { ok: true }, 5)),
            [(IoError, File, false), (ReadOnly, Storage, false)]
        );
        // The storage takes writes again; the file error stays until a write of the
        // index succeeds, and is not reported again meanwhile.
        assert!(h.usable());
        assert_eq!(active(&h), [(FsError, Index), (LowSpace, Storage)]);
        assert!(h.observe(write_error(Index, FsError), 6).is_empty());
        assert!(!h.usable(), "the retry failed again");
        h.observe(Observation::Probe { ok: true }, 7);
        assert!(h.usable());
        assert!(h
            .observe(Observation::WriteOk { target: File }, 8)
            .is_empty());
        assert_eq!(
            summary(&h.observe(Observation::WriteOk { target: Index }, 9)),
            [(FsError, Index, false)]
        );
        assert_eq!(active(&h), [(LowSpace, Storage)]);
    }

    #[test]
    fn a_failed_probe_keeps_write_faults_blocking() {
        let mut h = health();
        h.observe(write_error(File, DiskFull), 1);
        assert!(h.observe(Observation::Probe { ok: false }, 2).is_empty());
        assert!(!h.usable());
    }

    #[test]
    fn mount_changes() {
        let mut h = health();
        let mount = |c| Observation::Mount(c);
        assert_eq!(
            h.observe(mount(MountChange::Unmounted), 1),
            [HealthEvent::Fault {
                kind: DiskOffline,
                target: Storage,
                detail: "storage unmounted".into(),
                at: 1
            }]
        );
        assert_eq!(
            summary(&h.observe(mount(MountChange::Mounted), 2)),
            [(DiskOffline, Storage, false)]
        );
        assert_eq!(
            summary(&h.observe(mount(MountChange::ReadOnly), 3)),
            [(ReadOnly, Storage, true)]
        );
        assert!(h.observe(mount(MountChange::ReadOnly), 4).is_empty());
        // Mounted does not clear read-only, ReadWrite does.
        assert!(h.observe(mount(MountChange::Mounted), 5).is_empty());
        assert_eq!(
            summary(&h.observe(mount(MountChange::ReadWrite), 6)),
            [(ReadOnly, Storage, false)]
        );
        // A mount change does not clear what the writer saw.
        h.observe(write_error(File, ReadOnly), 7);
        assert!(h.observe(mount(MountChange::ReadWrite), 8).is_empty());
        assert_eq!(active(&h), [(ReadOnly, File)]);
    }

    #[test]
    fn a_shut_down_file_system_is_an_io_error_of_the_storage_until_mounted_again() {
        let mut h = health();
        let mount = |c| Observation::Mount(c);
        assert_eq!(
            summary(&h.observe(mount(MountChange::ShutDown), 1)),
            [(IoError, Storage, true)]
        );
        // The recording's own write meeting EIO is the same fault: no second notice.
        assert!(h.observe(write_error(Storage, IoError), 2).is_empty());
        assert!(!h.usable());
        // Repaired by `umount -l` and a mount: unmounted is raised and both end with
        // the fresh mount, once the write that found EIO is also past (a probe).
        assert_eq!(
            summary(&h.observe(mount(MountChange::Unmounted), 3)),
            [(DiskOffline, Storage, true)]
        );
        assert_eq!(
            summary(&h.observe(mount(MountChange::Mounted), 4)),
            [(DiskOffline, Storage, false)]
        );
        assert_eq!(
            summary(&h.observe(Observation::Probe { ok: true }, 5)),
            [(IoError, Storage, false)]
        );
        assert!(h.usable());
    }

    fn check(target: FaultTarget, problem: Option<&str>) -> Observation {
        Observation::FileCheck {
            target,
            problem: problem.map(String::from),
        }
    }

    #[test]
    fn a_file_found_removed_stays_faulted_through_writes_and_probes() {
        let mut h = health();
        assert_eq!(
            summary(&h.observe(check(File, Some("removed")), 1)),
            [(FileWriteFailed, File, true)]
        );
        assert!(h.observe(check(File, Some("removed")), 2).is_empty());
        assert!(!h.usable());
        // Writes into a removed file succeed and mean nothing; the disk itself is fine.
        assert!(h
            .observe(Observation::WriteOk { target: File }, 3)
            .is_empty());
        assert!(h.observe(Observation::Probe { ok: true }, 4).is_empty());
        assert!(!h.usable(), "the recording must leave the file first");
        // The file is fine again (the flag that was found is gone) while still recorded.
        assert_eq!(
            summary(&h.observe(check(File, None), 5)),
            [(FileWriteFailed, File, false)]
        );
        assert!(h.usable());
    }

    #[test]
    fn a_file_left_after_a_check_found_it_bad_is_a_write_fault() {
        let mut h = health();
        h.observe(check(Index, Some("made immutable")), 1);
        assert_eq!(active(&h), [(IndexWriteFailed, Index)]);
        // The recording failed over: no more checks of that file.
        assert!(h
            .observe(Observation::FileUnwatched { target: Index }, 2)
            .is_empty());
        assert!(!h.usable());
        assert!(h.observe(Observation::Probe { ok: true }, 3).is_empty());
        assert!(
            h.usable(),
            "the disk takes writes: the recording may move back"
        );
        assert_eq!(
            summary(&h.observe(Observation::WriteOk { target: Index }, 4)),
            [(IndexWriteFailed, Index, false)],
            "cleared by the index of the recording's next files"
        );
    }

    #[test]
    fn a_check_and_a_write_that_find_the_same_file_are_one_fault() {
        let mut h = health();
        h.observe(check(Index, Some("made immutable")), 1);
        assert!(h
            .observe(write_error(Index, IndexWriteFailed), 2)
            .is_empty());
        assert!(
            h.observe(check(Index, None), 3).is_empty(),
            "still unwritten"
        );
        assert_eq!(
            summary(&h.observe(Observation::WriteOk { target: Index }, 4)),
            [(IndexWriteFailed, Index, false)]
        );
        // A check of one file says nothing about the other.
        h.observe(check(File, Some("removed")), 5);
        assert!(h.observe(check(Index, None), 6).is_empty());
        assert_eq!(active(&h), [(FileWriteFailed, File)]);
    }

    #[test]
    fn a_full_failure_and_recovery_in_order() {
        let mut h = health();
        let mut log = Vec::new();
        let steps = [
            space(10 * GIB),
            Observation::WriteOk { target: File },
            Observation::Device(DeviceEvent::Removed),
            write_error(File, DiskOffline),
            write_error(Index, DiskOffline),
            Observation::Mount(MountChange::Unmounted),
            Observation::Probe { ok: false },
            Observation::Mount(MountChange::Mounted),
            Observation::Probe { ok: true },
            Observation::WriteOk { target: File },
        ];
        for (t, obs) in steps.into_iter().enumerate() {
            log.extend(summary(&h.observe(obs, t as u64)));
        }
        assert_eq!(
            log,
            [
                (DiskOffline, Storage, true),
                (DiskOffline, File, true),
                (DiskOffline, Index, true),
                (DiskOffline, Storage, false),
                (DiskOffline, File, false),
                (DiskOffline, Index, false),
            ]
        );
        assert!(h.usable());
    }

    #[test]
    fn events_become_link_frames() {
        let recording: RecordingId = frame::text("rec-1");
        let fault = HealthEvent::Fault {
            kind: DiskFull,
            target: Storage,
            detail: "x".repeat(300),
            at: 7,
        };
        let Frame::Fault(f) = fault.to_frame(&recording) else {
            panic!("not a fault")
        };
        assert_eq!((f.kind, f.target, f.at), (DiskFull, Storage, 7));
        assert_eq!(f.recording, recording);
        assert_eq!(f.detail.len(), 200);
        let cleared = HealthEvent::Cleared {
            kind: DiskFull,
            target: Storage,
            at: 8,
        };
        assert_eq!(
            cleared.to_frame(&recording),
            Frame::Cleared {
                kind: DiskFull,
                target: Storage,
                at: 8
            }
        );
    }

    #[test]
    fn byte_counts_for_humans() {
        assert_eq!(Bytes(0).to_string(), "0.0 MiB");
        assert_eq!(Bytes(1536 * MIB).to_string(), "1.5 GiB");
    }
}
