//! The H.264 depacketizer on untrusted payloads, losses and timestamps: never
//! panics, and only ever yields Annex B access units.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::ingest::depacketize::h264::H264Depacketizer;
use recbox::media::h264::is_annex_b;

fuzz_target!(|data: &[u8]| {
    // Records: one flags byte (marker, loss before, timestamp step), a length byte,
    // then that many payload bytes.
    let mut d = H264Depacketizer::new();
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
        while let Some(au) = d.pop() {
            assert!(is_annex_b(&au.data));
        }
    }
});
