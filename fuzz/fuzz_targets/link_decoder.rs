//! The media-link decoder on untrusted bytes: whatever arrives, in whatever chunks,
//! it yields frames or an error, never panics and never buffers more than one
//! maximal frame. Every frame it yields re-encodes to bytes that decode to it again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::link::codec::{encode, FrameDecoder};

/// Small, so that length prefixes above the maximum are easy to reach.
const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so that splits inside the length prefix
    // and inside payloads are both explored.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    for piece in stream.chunks(usize::from(chunk) + 1) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let mut bytes = Vec::new();
                    encode(&frame, &mut bytes).expect("a decoded frame re-encodes");
                    let mut again = FrameDecoder::new(MAX_FRAME);
                    again.push(&bytes);
                    assert_eq!(again.next_frame(), Ok(Some(frame)));
                }
                Ok(None) => {
                    assert!(decoder.buffered() < MAX_FRAME + 4);
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
