//! The VP8 depacketizer on untrusted payloads, losses and timestamps: never panics,
//! and only ever yields non-empty frames, key frames only when the frame says so.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::ingest::depacketize::vp8::{is_key_frame, Vp8Depacketizer};

fuzz_target!(|data: &[u8]| {
    // Records: one flags byte (marker, loss before, timestamp step), a length byte,
    // then that many payload bytes.
    let mut d = Vp8Depacketizer::new();
    let mut ts = 0i64;
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        if flags & 0x02 != 0 {
            d.lost();
        }
        ts += i64::from(flags >> 4);
        let _ = d.push(ts, flags & 0x01 != 0, payload);
        while let Some(frame) = d.pop() {
            assert!(!frame.data.is_empty());
            assert_eq!(frame.keyframe, is_key_frame(&frame.data));
        }
    }
});
