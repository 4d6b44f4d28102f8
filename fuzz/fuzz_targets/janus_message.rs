//! What Janus sends, on untrusted text: the parser and the session that acts on it
//! never panic, whatever arrives at whatever point of the session.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use recbox::sfu::janus::protocol::{parse, Credentials};
use recbox::sfu::janus::session::{Session, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse(text);
    let settings = Settings {
        room: 1234,
        display: "recbox".into(),
        creds: Credentials::default(),
        textroom: Some(1234),
        forward_host: "127.0.0.1".into(),
        ingest_port: 5004,
        rtcp_port: 5005,
    };
    let now = Instant::now();
    let mut session = Session::new(settings, 1, now);
    session.connected(now);
    // Each line one message, so a sequence can walk the session through its setup.
    for line in text.lines() {
        session.on_message(line, now);
        session.forward("1", now);
        session.request_keyframe("1");
        session.tick(now);
        while session.poll_output().is_some() {}
    }
});
