//! The SFU control channel's JSON decoder on untrusted text: never panics, and every
//! message that decodes re-encodes to text that decodes to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::sfu::control::{decode, encode, MixerMessage, SfuMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = decode::<SfuMessage>(text) {
        let again = encode(&m).expect("a decoded message encodes");
        assert_eq!(decode::<SfuMessage>(&again).ok(), Some(m));
    }
    if let Ok(m) = decode::<MixerMessage>(text) {
        let again = encode(&m).expect("a decoded message encodes");
        assert_eq!(decode::<MixerMessage>(&again).ok(), Some(m));
    }
});
