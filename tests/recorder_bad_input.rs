//! Bad input closes only the offending session, with a clear reason, and leaves what
//! was already written intact.

mod common;

use std::time::Duration;

use common::*;
use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::frame::{text, Frame, Media, Track};
use recbox::link::handshake::LinkKey;
use recbox::link::transport::{connect as raw_connect, FrameReader, FrameSender, LinkAddr};
use recbox::mixer::uplink::Uplink;
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

/// An authenticated raw link: the test sends the frames the session sees.
async fn authenticated(addr: &LinkAddr) -> (FrameReader, FrameSender) {
    let (mut reader, sender) = raw_connect(addr, &key(), DEFAULT_MAX_FRAME).await.unwrap();
    sender
        .send(Frame::Hello {
            recording: text("rec-x"),
        })
        .await
        .unwrap();
    assert_eq!(reader.next().await.unwrap(), Some(Frame::Accept));
    (reader, sender)
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
async fn a_wrong_key_is_refused_before_any_frame() {
    let storage = tempfile::tempdir().unwrap();
    let addr = start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;

    let wrong = LinkKey::new(b"not the key".to_vec()).unwrap();
    match Uplink::connect(&addr, wrong, text("rec-x"), DEFAULT_MAX_FRAME).await {
        Err(e) => assert!(
            e.to_string().contains("recorder failed authentication"),
            "{e}"
        ),
        Ok(_) => panic!("a wrong key was accepted"),
    }
    assert_still_records(&addr, storage.path(), "after-handshake-errors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_and_media_before_start_are_rejected() {
    let storage = tempfile::tempdir().unwrap();
    let addr = start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;
    let LinkAddr::Tcp(host_port) = &addr else {
        unreachable!()
    };

    // A length prefix far above the maximum, and bytes that are no handshake at
    // all: the connection is closed after the greeting, nothing else is sent.
    for bytes in [
        &u32::MAX.to_le_bytes()[..],
        b"RBXL\x02\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        let mut raw = tokio::net::TcpStream::connect(host_port).await.unwrap();
        raw.write_all(bytes).await.unwrap();
        let reply = read_all(raw).await;
        assert_eq!(reply, recbox::link::handshake::BANNER);
    }

    // Media before Start.
    let (mut reader, sender) = authenticated(&addr).await;
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
