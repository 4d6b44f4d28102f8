//! The MP4 reader on untrusted bytes: scanning a whole file, parsing a `moof` and a
//! `moov` body, and walking boxes must never panic or allocate without bound.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use recbox::media::mp4;

fuzz_target!(|data: &[u8]| {
    let _ = mp4::scan(&mut Cursor::new(data), data.len() as u64);
    let _ = mp4::parse_moof(data);
    let _ = mp4::parse_moov(data, 0, data.len() as u64);
    for b in mp4::boxes(data) {
        if b.is_err() {
            break;
        }
    }
});
