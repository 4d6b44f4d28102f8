//! The recorder's side of the media-link handshake on untrusted bytes: the preamble,
//! the length of Noise message 1, message 1 itself, and the first record, which is
//! all an unauthenticated peer can make the recorder parse. Whatever arrives, it is
//! refused with an error or (never, without the key) accepted; it never panics and
//! never takes a record larger than the pre-authentication limit. The mixer's
//! reading of the recorder's banner is driven with the same bytes.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use recbox::link::handshake::{
    banner_len, check_banner, message_len, Initiator, KeyRing, LinkKey, Responder, PREAMBLE_LEN,
};
use recbox::link::record;
use recbox::link::transport::PREAUTH_MAX_RECORD;

fn keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing {
        current: LinkKey::new(b"current".to_vec()).unwrap(),
        previous: Some(LinkKey::new(b"previous".to_vec()).unwrap()),
    })
}

fuzz_target!(|data: &[u8]| {
    // The mixer reads a 4-byte length, then the banner body.
    if let Some((prefix, body)) = data.split_first_chunk::<4>() {
        if let Ok(len) = banner_len(*prefix) {
            let _ = check_banner(&body[..len.min(body.len())]);
        }
    }

    // The first byte chooses whether the preamble names a key the recorder holds
    // (so that Noise parsing is reached, not only the key look-up).
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((preamble, rest)) = rest.split_first_chunk::<PREAMBLE_LEN>() else {
        return;
    };
    let mut preamble = *preamble;
    if mode & 1 == 1 {
        // Magic, version 2, and the current key's id taken from a real preamble.
        let (_, real) = Initiator::start(&keys().current).expect("a valid key");
        preamble.copy_from_slice(&real[..PREAMBLE_LEN]);
    }
    let Ok(responder) = Responder::new(keys(), &preamble) else {
        return;
    };
    let Some((prefix, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let Ok(len) = message_len(*prefix) else {
        return;
    };
    let Some((msg1, rest)) = rest.split_at_checked(len) else {
        return;
    };
    let Ok((msg2, state, _)) = responder.respond(msg1) else {
        return;
    };
    assert_eq!(
        usize::from(u16::from_le_bytes([msg2[0], msg2[1]])),
        msg2.len() - 2
    );
    // A message 1 the fuzzer made (no key) may parse, but no record it sends can
    // decrypt under the fresh ephemeral key: the first record must fail.
    let (_, mut opener) = record::split(state, PREAUTH_MAX_RECORD);
    opener.push(rest);
    let mut plain = Vec::new();
    match opener.open(&mut plain) {
        Ok(true) => panic!("a record from a peer without the key decrypted"),
        Ok(false) => assert!(opener.buffered() < 2 + PREAUTH_MAX_RECORD),
        Err(_) => assert_eq!(opener.buffered(), 0),
    }
});
