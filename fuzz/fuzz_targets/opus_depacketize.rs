//! The Opus depacketizer on untrusted payloads: never panics, and what it accepts is
//! the payload itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::ingest::depacketize::opus;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = opus::depacketize(data) {
        assert_eq!(packet, data);
        assert!(!packet.is_empty());
    }
});
