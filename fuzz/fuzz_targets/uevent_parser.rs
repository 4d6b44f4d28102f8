//! The uevent parser on untrusted bytes (anything could arrive on a netlink socket):
//! must never panic, and whatever it accepts must respect its bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::storage::uevent::{self, Message, MAX_ENV};

fuzz_target!(|data: &[u8]| {
    if let Ok(Message::Kernel(ev)) = uevent::parse(data) {
        assert!(ev.env.len() <= MAX_ENV);
        assert!(ev.devpath.starts_with('/'));
    }
});
