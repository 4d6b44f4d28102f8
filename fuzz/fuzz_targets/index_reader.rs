//! The recording index reader on untrusted bytes (an index file of either version):
//! opening, reading every record and seeking must never panic, and what is read
//! must survive re-encoding.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use recbox::recorder::index::{encode_index_with, IndexFile};

fuzz_target!(|data: &[u8]| {
    let Ok(mut index) = IndexFile::new(Cursor::new(data)) else {
        return;
    };
    let _ = index.find(u64::from(data.len() as u32) * 1000);
    let Ok(contents) = index.read_all() else {
        return;
    };
    let again = encode_index_with(contents.header, &contents.records);
    let reread = IndexFile::new(Cursor::new(&again[..]))
        .and_then(|mut f| f.read_all())
        .expect("a re-encoded index is readable");
    assert_eq!(reread.records, contents.records);
});
