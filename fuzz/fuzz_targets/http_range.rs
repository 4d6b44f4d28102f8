//! The web page's `Range` header parser on untrusted text (any client sends it):
//! must never panic, and a part it answers must lie inside the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::web::range::{answer, Answer};

fuzz_target!(|data: (u64, &str)| {
    let (len, header) = data;
    if let Answer::Part { start, end } = answer(Some(header), len) {
        assert!(start < end && end <= len);
    }
});
