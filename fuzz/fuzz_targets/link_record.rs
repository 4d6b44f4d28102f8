//! The media link's record decoder (after the handshake) on a stream that a man in
//! the middle shapes: genuine records, modified records and injected bytes, cut at
//! any point. Genuine records come back exactly; anything else ends the link with an
//! error, after which nothing more is buffered or decrypted; the decoder never
//! panics and never holds a complete record undecrypted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recbox::link::handshake::{Initiator, KeyRing, LinkKey, Responder, PREAMBLE_LEN};
use recbox::link::record::{self, Opener, MAX_PLAINTEXT, MAX_RECORD};
use recbox::link::transport::PREAUTH_MAX_RECORD;

/// Noise's authentication tag, in every record.
const TAG: usize = MAX_RECORD - MAX_PLAINTEXT;

/// Decrypts what is complete; `false` once the link has failed.
fn drain(opener: &mut Opener, max: usize, out: &mut Vec<u8>) -> bool {
    loop {
        match opener.open(out) {
            Ok(true) => {}
            Ok(false) => {
                assert!(opener.buffered() < 2 + max, "a complete record left undecrypted");
                return true;
            }
            Err(_) => {
                assert_eq!(opener.buffered(), 0);
                assert!(opener.next_len().is_err(), "the failure sticks");
                return false;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut ops)) = data.split_first() else {
        return;
    };
    let max = if mode & 1 == 0 {
        PREAUTH_MAX_RECORD
    } else {
        MAX_RECORD
    };
    // A real handshake: the records are those of a live link.
    let key = LinkKey::new(b"fuzz".to_vec()).unwrap();
    let (init, out) = Initiator::start(&key).unwrap();
    let resp = Responder::new(
        &KeyRing::single(key),
        out[..PREAMBLE_LEN].try_into().unwrap(),
    )
    .unwrap();
    let (msg2, recorder, _) = resp.respond(&out[PREAMBLE_LEN + 2..]).unwrap();
    let mixer = init.finish(&msg2[2..]).unwrap();
    let (mut sealer, _) = record::split(mixer, MAX_RECORD);
    let (_, mut opener) = record::split(recorder, max);
    let mut sent = Vec::new();
    let mut genuine = true;
    // A genuine record over the limit is refused too.
    let mut oversize = false;
    let mut got = Vec::new();
    // Each op: kind, a 2-byte length, then that many bytes (plaintext or raw).
    while let Some((&[kind, lo, hi], rest)) = ops.split_first_chunk::<3>() {
        let n = usize::from(u16::from_le_bytes([lo, hi])).min(rest.len());
        let (bytes, rest) = rest.split_at(n);
        ops = rest;
        let mut wire = Vec::new();
        match kind % 4 {
            // Genuine records, delivered in pieces cut by `kind`.
            0 | 1 => {
                oversize |= bytes.len().min(MAX_PLAINTEXT) + TAG > max && !bytes.is_empty();
                sealer.seal(bytes, &mut wire).unwrap();
                sent.extend_from_slice(bytes);
            }
            // A genuine record with one byte flipped.
            2 => {
                sealer.seal(bytes, &mut wire).unwrap();
                // Nothing to flip when nothing was sealed.
                if !wire.is_empty() {
                    let at = usize::from(kind) % wire.len();
                    wire[at] ^= 1 | kind;
                    genuine = false;
                }
            }
            // Bytes injected as they are.
            _ => {
                wire.extend_from_slice(bytes);
                genuine &= bytes.is_empty();
            }
        }
        for piece in wire.chunks(usize::from(kind >> 2) * 97 + 1) {
            opener.push(piece);
            if !drain(&mut opener, max, &mut got) {
                assert!(!genuine || oversize, "genuine records failed");
                return;
            }
        }
    }
    if genuine && !oversize {
        assert_eq!(got, sent);
        assert!(opener.at_eof().is_ok());
    }
});
