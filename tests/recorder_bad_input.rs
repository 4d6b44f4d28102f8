//! Bad input closes only the offending session, with a clear reason, and leaves what
//! was already written intact.

mod common;

use std::time::Duration;

use common::*;
use recbox::link::codec::{encode, DEFAULT_MAX_FRAME};
use recbox::link::frame::{text, Frame, Media, Role, Track, PROTOCOL_VERSION};
use recbox::link::handshake::{hello_mac, LinkKey};
use recbox::link::transport::{connect as raw_connect, FrameReader, FrameSender, LinkAddr};
use recbox::mixer::uplink::{Uplink, UplinkError};
use tokio::io::AsyncWriteExt;

/// Reads frames until the recorder's Reject and returns its reason.
async fn reject_reason(reader: &mut FrameReader) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .expect("recorder answers")
            .expect("frame or clean close")
            .expect("a Reject before the link closes");
        if let Frame::Reject { reason } = frame {
            return reason.to_string();
        }
    }
}

async fn challenge(addr: &LinkAddr) -> (FrameReader, FrameSender, [u8; 32]) {
    let (mut reader, sender) = raw_connect(addr, DEFAULT_MAX_FRAME).await.unwrap();
    match reader.next().await.unwrap().unwrap() {
        Frame::Challenge { version, nonce } => {
            assert_eq!(version, PROTOCOL_VERSION);
            (reader, sender, nonce)
        }
        other => panic!("expected Challenge, got {other:?}"),
    }
}

fn hello(nonce: &[u8; 32], version: u16, role: Role, key: &LinkKey) -> Frame {
    Frame::Hello {
        version,
        role,
        recording: text("rec-x"),
        mac: hello_mac(key, nonce, version, role, "rec-x"),
    }
}

/// After each bad session, a good one still records: the recorder is unharmed.
async fn assert_still_records(addr: &LinkAddr, storage: &std::path::Path, id: &str) {
    let mut up = connect(addr, id).await;
    let mut feed = feed();
    up.start(feed.start_params(id, ROOM)).await.unwrap();
    let mut sent = send_media(&up, &mut feed, 1.0).await;
    stop(&mut up, &mut sent.events).await;
    let mp4 = recording_dir(storage, id).join("recording.mp4");
    assert_eq!(stream_codecs(&mp4), ["h264", "opus"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_version_and_role_are_rejected() {
    let storage = tempfile::tempdir().unwrap();
    let addr = start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;

    let wrong = LinkKey::new(b"not the key".to_vec()).unwrap();
    match Uplink::connect(&addr, wrong, text("rec-x"), DEFAULT_MAX_FRAME).await {
        Err(UplinkError::Rejected(reason)) => assert!(reason.contains("key"), "{reason}"),
        Err(e) => panic!("expected a Reject, got {e}"),
        Ok(_) => panic!("a wrong key was accepted"),
    }

    let (mut reader, sender, nonce) = challenge(&addr).await;
    sender
        .send(hello(&nonce, PROTOCOL_VERSION + 1, Role::Mixer, &key()))
        .await
        .unwrap();
    let reason = reject_reason(&mut reader).await;
    assert!(reason.contains("version"), "{reason}");

    let (mut reader, sender, nonce) = challenge(&addr).await;
    sender
        .send(hello(&nonce, PROTOCOL_VERSION, Role::Recorder, &key()))
        .await
        .unwrap();
    let reason = reject_reason(&mut reader).await;
    assert!(reason.contains("only a mixer"), "{reason}");

    assert_still_records(&addr, storage.path(), "after-handshake-errors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_and_media_before_start_are_rejected() {
    let storage = tempfile::tempdir().unwrap();
    let addr = start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;
    let LinkAddr::Tcp(host_port) = &addr else {
        unreachable!()
    };

    // A length prefix far above the maximum: refused before any allocation.
    let mut raw = tokio::net::TcpStream::connect(host_port).await.unwrap();
    raw.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let reply = read_all(raw).await;
    assert!(
        String::from_utf8_lossy(&reply).contains("exceeds the maximum"),
        "reply: {:?}",
        String::from_utf8_lossy(&reply)
    );

    // Bytes that are no frame at all.
    let mut raw = tokio::net::TcpStream::connect(host_port).await.unwrap();
    raw.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let reply = read_all(raw).await;
    assert!(String::from_utf8_lossy(&reply).contains("malformed"));

    // Media before Start.
    let (mut reader, sender, nonce) = challenge(&addr).await;
    sender
        .send(hello(&nonce, PROTOCOL_VERSION, Role::Mixer, &key()))
        .await
        .unwrap();
    assert_eq!(reader.next().await.unwrap(), Some(Frame::Accept));
    sender
        .send(Frame::Media(Media {
            track: Track::Video,
            pts: 0,
            dts: 0,
            keyframe: true,
            data: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
        }))
        .await
        .unwrap();
    let reason = reject_reason(&mut reader).await;
    assert!(reason.contains("before start"), "{reason}");

    assert_still_records(&addr, storage.path(), "after-bad-frames").await;
}

async fn read_all(mut s: tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("recorder closes the session")
        .ok();
    buf
}

/// A frame with a track the protocol does not know, in the middle of a recording:
/// the session is refused, and everything received before it is in a playable file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_track_mid_recording_keeps_what_was_written() {
    let storage = tempfile::tempdir().unwrap();
    let addr = start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;
    let LinkAddr::Tcp(host_port) = &addr else {
        unreachable!()
    };
    // The raw handshake is done by hand so the test owns the socket.
    let mut raw = tokio::net::TcpStream::connect(host_port).await.unwrap();
    let mut decoder = recbox::link::codec::FrameDecoder::new(DEFAULT_MAX_FRAME);
    let nonce = match next_raw(&mut raw, &mut decoder).await {
        Frame::Challenge { nonce, .. } => nonce,
        other => panic!("{other:?}"),
    };
    let mut feed = feed();
    let mut out = Vec::new();
    encode(
        &hello(&nonce, PROTOCOL_VERSION, Role::Mixer, &key()),
        &mut out,
    )
    .unwrap();
    let start = recbox::link::frame::StartParams {
        recording: text("rec-x"),
        ..feed.start_params("rec-x", ROOM)
    };
    encode(&Frame::Start(start), &mut out).unwrap();
    let (mut video, mut audio) = (0, 0);
    while feed.next_time_us() < 2_500_000 {
        let m = feed.next_media().unwrap();
        match m.track {
            Track::Video => video += 1,
            Track::Audio => audio += 1,
        }
        encode(&Frame::Media(m), &mut out).unwrap();
    }
    // Postcard: Frame::Media is variant 5, then the Track variant: make it 9.
    let mut bad = Vec::new();
    encode(&Frame::Media(feed.next_media().unwrap()), &mut bad).unwrap();
    assert_eq!(bad[4], 5);
    bad[5] = 9;
    out.extend_from_slice(&bad);
    raw.write_all(&out).await.unwrap();

    loop {
        match next_raw(&mut raw, &mut decoder).await {
            Frame::Reject { reason } => {
                assert!(reason.contains("malformed"), "{reason}");
                break;
            }
            _ => continue,
        }
    }
    // The recorder closes the recording after refusing the session (its writer
    // thread may still be creating the files when the refusal arrives).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let room = storage.path().join(ROOM);
    while !std::fs::read_dir(&room).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            std::time::Instant::now() < deadline,
            "recording never created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = recording_dir(storage.path(), "rec-x");
    let mp4 = dir.join("recording.mp4");
    while !std::fs::read_to_string(dir.join("recording.m3u8"))
        .unwrap_or_default()
        .contains("#EXT-X-ENDLIST")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "recording never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stream_codecs(&mp4), ["h264", "opus"]);
    assert_eq!(decoded_frames(&mp4), [video, audio]);
}

async fn next_raw(
    raw: &mut tokio::net::TcpStream,
    decoder: &mut recbox::link::codec::FrameDecoder,
) -> Frame {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            return f;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), raw.read(&mut buf))
            .await
            .expect("recorder answers")
            .unwrap();
        assert!(n > 0, "recorder closed the link");
        decoder.push(&buf[..n]);
    }
}
