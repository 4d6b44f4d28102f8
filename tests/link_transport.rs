//! The media-link transport over real TCP and Unix sockets.

use std::time::Duration;

use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::frame::{text, Fault, FaultKind, FaultTarget, Frame, Media, Stats, Track};
use recbox::link::handshake::{HandshakeError, KeyRing, LinkKey};
use recbox::link::transport::{
    connect, FrameReader, FrameSender, LinkAddr, LinkListener, TransportError,
};
use tokio::io::AsyncWriteExt;

/// A connected pair (client side, server side) over `addr`.
async fn pair(
    addr: &LinkAddr,
    max_frame: usize,
) -> ((FrameReader, FrameSender), (FrameReader, FrameSender)) {
    let listener = LinkListener::bind(addr).await.unwrap();
    let local = listener.local_addr();
    let key: LinkKey = "transport test key".parse().unwrap();
    let keys = KeyRing::single(key.clone());
    let accepted = tokio::spawn(async move {
        let incoming = listener.accept().await.unwrap();
        assert!(!incoming.peer.is_empty());
        incoming.authenticate(&keys, max_frame).await.unwrap()
    });
    let (client_reader, client_sender) = connect(&local, &key, max_frame).await.unwrap();
    // The server's handshake completes with the client's first record.
    client_sender.send(Frame::Ping { seq: 0 }).await.unwrap();
    let mut server = accepted.await.unwrap();
    assert_eq!(
        server.reader.next().await.unwrap(),
        Some(Frame::Ping { seq: 0 })
    );
    (
        (client_reader, client_sender),
        (server.reader, server.sender),
    )
}

fn tcp() -> LinkAddr {
    "tcp:127.0.0.1:0".parse().unwrap()
}

fn unix(dir: &tempfile::TempDir) -> LinkAddr {
    LinkAddr::Unix(dir.path().join("link.sock"))
}

fn media(n: u64, len: usize) -> Frame {
    Frame::Media(Media {
        track: if n % 3 == 0 {
            Track::Audio
        } else {
            Track::Video
        },
        pts: n as i64,
        dts: n as i64,
        keyframe: n % 30 == 0,
        data: (0..len).map(|i| (i as u64 ^ n) as u8).collect(),
    })
}

fn fault(n: u64) -> Frame {
    Frame::Fault(Fault {
        recording: text("rec"),
        kind: FaultKind::LowSpace,
        target: FaultTarget::Storage,
        detail: text(&format!("fault {n}")),
        at: n,
    })
}

fn stats(n: u64) -> Frame {
    Frame::Stats(Stats {
        file_bytes: n,
        index_bytes: n,
        duration_ms: n,
        free_bytes: n,
        at: n,
    })
}

async fn read_all(mut reader: FrameReader) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = reader.next().await.unwrap() {
        frames.push(frame);
    }
    frames
}

/// Media, Start and Stop keep their order; control frames keep theirs.
fn is_stream(frame: &Frame) -> bool {
    matches!(frame, Frame::Media(_) | Frame::Start(_) | Frame::Stop)
}

async fn round_trip_both_directions(addr: LinkAddr) {
    let ((mixer_reader, mixer_sender), (recorder_reader, recorder_sender)) =
        pair(&addr, DEFAULT_MAX_FRAME).await;

    // Mixer: media of varied sizes with pings in between; recorder: faults and stats.
    let mixer_frames: Vec<Frame> = (0..2000u64)
        .map(|n| match n % 50 {
            7 => Frame::Ping { seq: n },
            49 => Frame::Stop,
            _ => media(n, (n as usize * 37) % 20_000),
        })
        .collect();
    let recorder_frames: Vec<Frame> = (0..2000u64)
        .map(|n| if n % 2 == 0 { fault(n) } else { stats(n) })
        .collect();

    let send_mixer = {
        let frames = mixer_frames.clone();
        tokio::spawn(async move {
            for frame in frames {
                mixer_sender.send(frame).await.unwrap();
            }
            // Dropping the last sender flushes and shuts the write half down.
        })
    };
    let send_recorder = {
        let frames = recorder_frames.clone();
        tokio::spawn(async move {
            for frame in frames {
                recorder_sender.send(frame).await.unwrap();
            }
            recorder_sender.close().await.unwrap();
        })
    };
    let at_recorder = tokio::spawn(read_all(recorder_reader));
    let at_mixer = tokio::spawn(read_all(mixer_reader));
    send_mixer.await.unwrap();
    send_recorder.await.unwrap();
    let at_recorder = at_recorder.await.unwrap();
    let at_mixer = at_mixer.await.unwrap();

    assert_eq!(at_mixer, recorder_frames);
    assert_eq!(at_recorder.len(), mixer_frames.len());
    for class in [true, false] {
        let sent: Vec<_> = mixer_frames
            .iter()
            .filter(|f| is_stream(f) == class)
            .collect();
        let got: Vec<_> = at_recorder
            .iter()
            .filter(|f| is_stream(f) == class)
            .collect();
        assert_eq!(got, sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_round_trip_both_directions() {
    round_trip_both_directions(tcp()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unix_round_trip_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    round_trip_both_directions(unix(&dir)).await;
}

async fn control_overtakes_media_backlog(addr: LinkAddr) {
    const BACKLOG: u64 = 40;
    const FRAME: usize = 1024 * 1024;
    let ((_mixer_reader, mixer_sender), (mut recorder_reader, _recorder_sender)) =
        pair(&addr, 2 * FRAME).await;
    // Nothing reads yet: 40 MiB of media is far more than the socket buffers hold,
    // so most of it is still in the queue when the ping is sent.
    for n in 0..BACKLOG {
        mixer_sender.send(media(n, FRAME)).await.unwrap();
    }
    mixer_sender.send(Frame::Ping { seq: 99 }).await.unwrap();
    drop(mixer_sender);

    let mut ping_at = None;
    let mut media_seen = 0;
    while let Some(frame) = recorder_reader.next().await.unwrap() {
        match frame {
            Frame::Ping { seq: 99 } => ping_at = Some(media_seen),
            Frame::Media(m) => {
                assert_eq!(m.pts, media_seen as i64, "media stays in order");
                media_seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(media_seen, BACKLOG);
    let ping_at = ping_at.expect("the ping arrived");
    assert!(
        ping_at < BACKLOG,
        "the ping waited behind the whole media backlog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_control_overtakes_media_backlog() {
    control_overtakes_media_backlog(tcp()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_control_overtakes_media_backlog() {
    let dir = tempfile::tempdir().unwrap();
    control_overtakes_media_backlog(unix(&dir)).await;
}

/// What `authenticate` says of a raw client that sends `bytes` and then closes.
async fn refusal(bytes: &[u8]) -> TransportError {
    let listener = LinkListener::bind(&tcp()).await.unwrap();
    let LinkAddr::Tcp(host_port) = listener.local_addr() else {
        unreachable!()
    };
    let mut raw = tokio::net::TcpStream::connect(host_port).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    raw.shutdown().await.unwrap();
    let keys = KeyRing::single("k".parse().unwrap());
    match listener
        .accept()
        .await
        .unwrap()
        .authenticate(&keys, DEFAULT_MAX_FRAME)
        .await
    {
        Ok(_) => panic!("a raw client must not authenticate"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn unauthenticated_clients_are_refused_with_their_reason() {
    // A version 1 mixer's Hello, a stranger, an oversize handshake message from a
    // client claiming the right key, and one that stops in the middle.
    let err = refusal(&[60, 0, 0, 0, 1, 1, 0, 5, b'r', b'e', b'c', b'-', b'x', 0]).await;
    assert!(
        matches!(err, TransportError::Handshake(HandshakeError::NotRecbox)),
        "{err}"
    );
    let err = refusal(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(
        matches!(err, TransportError::Handshake(HandshakeError::NotRecbox)),
        "{err}"
    );
    let key: LinkKey = "k".parse().unwrap();
    let mut preamble = b"RBXL\x02\x00".to_vec();
    preamble.extend_from_slice(&key_id_bytes(&key));
    let mut big = preamble.clone();
    big.extend_from_slice(&[0xff, 0xff]);
    let err = refusal(&big).await;
    assert!(
        matches!(
            err,
            TransportError::Handshake(HandshakeError::TooLarge { len: 65535, .. })
        ),
        "{err}"
    );
    let mut forged = preamble.clone();
    forged.extend_from_slice(&[48, 0]);
    forged.extend_from_slice(&[7; 48]);
    let err = refusal(&forged).await;
    assert!(
        matches!(
            err,
            TransportError::Handshake(HandshakeError::MixerFailedAuth(_))
        ),
        "{err}"
    );
    let err = refusal(&preamble[..5]).await;
    assert!(matches!(err, TransportError::Io(_)), "{err}");
}

fn key_id_bytes(key: &LinkKey) -> Vec<u8> {
    let hex = key.id().to_string();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_recorder_without_the_key_fails_authentication() {
    // Greets like a recorder, then answers the handshake with noise.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = LinkAddr::Tcp(listener.local_addr().unwrap().to_string());
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(recbox::link::handshake::BANNER).await.unwrap();
        let mut first = vec![0; 14 + 2 + 48];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut first)
            .await
            .unwrap();
        s.write_all(&[48, 0]).await.unwrap();
        s.write_all(&[1; 48]).await.unwrap();
        s
    });
    let err = connect(&addr, &"k".parse().unwrap(), DEFAULT_MAX_FRAME)
        .await
        .err()
        .expect("a fake recorder must not be trusted");
    assert!(
        err.to_string()
            .starts_with("recorder failed authentication"),
        "{err}"
    );
    drop(fake.await.unwrap());
}

#[tokio::test]
async fn write_error_is_reported_on_a_later_send() {
    let ((client_reader, client_sender), (server_reader, server_sender)) =
        pair(&tcp(), DEFAULT_MAX_FRAME).await;
    drop((server_reader, server_sender));
    drop(client_reader);
    // The peer is gone: writes fail once the reset arrives, and sends report it.
    let failed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        loop {
            match client_sender.send(media(n, 64 * 1024)).await {
                Ok(()) => n += 1,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("sends keep succeeding on a dead link");
    assert!(matches!(failed, TransportError::WriteFailed(_)), "{failed}");
    assert!(client_sender.send(Frame::Ping { seq: 1 }).await.is_err());
}

#[tokio::test]
async fn tcp_port_zero_reports_the_real_port() {
    let listener = LinkListener::bind(&tcp()).await.unwrap();
    let LinkAddr::Tcp(host_port) = listener.local_addr() else {
        panic!("expected a TCP address");
    };
    let port: u16 = host_port.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_ne!(port, 0);
}

#[tokio::test]
async fn unix_bind_replaces_only_stale_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("link.sock");
    let addr = LinkAddr::Unix(path.clone());

    // A socket file whose listener is gone is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = LinkListener::bind(&addr).await.unwrap();

    // One with a live listener is not.
    let err = LinkListener::bind(&addr)
        .await
        .err()
        .expect("a live socket must not be taken over");
    assert!(matches!(err, TransportError::Bind { .. }), "{err}");
    drop(live);

    // Nor is a file that is not a socket.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = LinkListener::bind(&LinkAddr::Unix(file.clone()))
        .await
        .err()
        .expect("a regular file must not be removed");
    assert!(matches!(err, TransportError::Bind { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn connect_to_nothing_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let addr = unix(&dir);
    let err = connect(&addr, &"k".parse().unwrap(), DEFAULT_MAX_FRAME)
        .await
        .err()
        .expect("nothing listens there");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
