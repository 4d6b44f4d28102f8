//! The testbed's disk faults repaired as the fault bench repairs them: a repair that
//! needs the recorder to let go of the broken file system is tried again and again
//! while a file is still open on it, and succeeds once the file is closed. Needs root
//! and loop devices (skipped otherwise).

use std::fs::File;

use recbox::testbed::disk_fault::{DiskFault, FaultDisk};

#[test]
fn a_repair_that_failed_while_a_file_was_open_succeeds_once_it_is_closed() {
    let Some(disk) = FaultDisk::create() else {
        eprintln!("SKIPPED: cannot mount a loop disk here (needs root)");
        return;
    };
    for fault in [DiskFault::ReadOnly, DiskFault::IoError] {
        // As the recorder's open recording keeps the broken file system alive.
        let held = File::create(disk.root().join("held")).unwrap();
        let injected = disk.inject(fault).unwrap();
        for attempt in 0..3 {
            assert!(
                disk.repair(&injected).is_err(),
                "{fault}: attempt {attempt} repaired with a file still open"
            );
        }
        drop(held);
        disk.repair(&injected)
            .unwrap_or_else(|e| panic!("{fault}: once the file is closed: {e}"));
        std::fs::write(disk.root().join("after"), fault.to_string())
            .unwrap_or_else(|e| panic!("{fault}: the disk is writable again: {e}"));
    }
}
