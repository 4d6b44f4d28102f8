//! RTP and RTCP parsing on untrusted datagrams: never panics, and every RTP packet
//! that parses re-serialises to bytes that parse to the same packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::ingest::rtcp;
use recbox::ingest::rtp::{is_rtcp, RtpPacket, DEFAULT_MAX_PACKET};

fuzz_target!(|data: &[u8]| {
    if is_rtcp(data) {
        let _ = rtcp::parse(data);
        return;
    }
    if let Ok(packet) = RtpPacket::parse(data, DEFAULT_MAX_PACKET) {
        let bytes = packet.to_bytes().expect("a parsed packet serialises");
        assert_eq!(RtpPacket::parse(&bytes, usize::MAX), Ok(packet));
    }
});
