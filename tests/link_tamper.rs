//! A man in the middle of the media link, between a real mixer-side link and a real
//! recorder: a flipped byte, a replayed record and a record cut short each end the
//! session with its reason; the recording written so far stays intact and goes on in
//! a new segment once the link is back. What crosses the wire is never plaintext media.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::segments::check_segments_but_a_gap_after;
use common::*;
use recbox::link::frame::Track;
use recbox::link::handshake::{BANNER, MAX_HANDSHAKE_MSG, PREAMBLE_LEN};
use recbox::link::session::MixerEvent;
use recbox::link::transport::LinkAddr;
use recbox::mixer::uplink::{Uplink, UplinkEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(60);
/// The record of the mixer's stream that is tampered with: well into the media.
const VICTIM: usize = 120;

#[derive(Clone, Copy, Debug)]
enum Tamper {
    Flip,
    Replay,
    Truncate,
}

/// Relays mixer -> recorder record by record, tampering with record [`VICTIM`] of
/// the first connection only; keeps every byte the mixer sent.
async fn proxy(to: SocketAddr, tamper: Tamper, wire: Arc<Mutex<Vec<u8>>>) -> LinkAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = LinkAddr::Tcp(listener.local_addr().unwrap().to_string());
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(to).await.unwrap();
            let tamper = std::mem::take(&mut first).then_some(tamper);
            tokio::spawn(relay(client, server, tamper, wire.clone()));
        }
    });
    addr
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    tamper: Option<Tamper>,
    wire: Arc<Mutex<Vec<u8>>>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
    let mut pre = vec![0; PREAMBLE_LEN + 2];
    if cr.read_exact(&mut pre).await.is_err() {
        return;
    }
    let len = u16::from_le_bytes([pre[PREAMBLE_LEN], pre[PREAMBLE_LEN + 1]]) as usize;
    assert!(len <= MAX_HANDSHAKE_MSG);
    pre.resize(pre.len() + len, 0);
    cr.read_exact(&mut pre[PREAMBLE_LEN + 2..]).await.unwrap();
    sw.write_all(&pre).await.unwrap();
    let mut previous = Vec::new();
    for n in 0.. {
        let mut prefix = [0; 2];
        if cr.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let mut record = prefix.to_vec();
        record.resize(2 + u16::from_le_bytes(prefix) as usize, 0);
        if cr.read_exact(&mut record[2..]).await.is_err() {
            return;
        }
        wire.lock().unwrap().extend_from_slice(&record);
        let out = match tamper {
            Some(Tamper::Flip) if n == VICTIM => {
                let mut r = record.clone();
                let i = r.len() / 2;
                r[i] ^= 0x01;
                r
            }
            Some(Tamper::Replay) if n == VICTIM => previous.clone(),
            Some(Tamper::Truncate) if n == VICTIM => {
                let _ = sw.write_all(&record[..record.len() / 2]).await;
                // The recorder sees the end of the stream inside the record; its
                // answer still reaches the mixer.
                let _ = sw.shutdown().await;
                return;
            }
            _ => record.clone(),
        };
        if sw.write_all(&out).await.is_err() {
            return;
        }
        previous = record;
    }
}

/// Waits for `Started`, returning the segment's directory.
async fn started(up: &mut Uplink) -> PathBuf {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match up.next_event().await {
                Some(UplinkEvent::Recorder(MixerEvent::Started { path, .. })) => {
                    return PathBuf::from(path.as_str())
                }
                Some(UplinkEvent::Recorder(_)) => {}
                other => panic!("link closed before Started: {other:?}"),
            }
        }
    })
    .await
    .expect("the recorder answers Start")
}

async fn tampered_session_ends_and_the_recording_continues(tamper: Tamper, reason: &str) {
    let storage = tempfile::tempdir().unwrap();
    let recorder = start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;
    let LinkAddr::Tcp(to) = &recorder else {
        unreachable!()
    };
    let wire = Arc::new(Mutex::new(Vec::new()));
    let addr = proxy(to.parse().unwrap(), tamper, wire.clone()).await;

    let mut feed = feed();
    let start = feed.start_params("rec-1", ROOM);
    let mut up = connect(&addr, "rec-1").await;
    up.start(start.clone()).await.unwrap();
    let first = started(&mut up).await;
    // Media until the recorder ends the session; keep what went since the last
    // keyframe to send again, as the mixer does.
    let mut since_keyframe = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            while let Some(event) = up.try_event() {
                match event {
                    UplinkEvent::Recorder(MixerEvent::Rejected { reason }) => return reason,
                    UplinkEvent::Closed(why) => {
                        return why.map(|e| e.to_string()).unwrap_or_default()
                    }
                    UplinkEvent::Recorder(_) => {}
                }
            }
            let m = feed.next_media().unwrap();
            if m.track == Track::Video && m.keyframe {
                since_keyframe.clear();
            }
            since_keyframe.push(m.clone());
            if up.media(m).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .expect("the recorder ends the tampered session");
    assert!(closed.contains(reason), "{tamper:?}: {closed}");
    drop(up);

    // The link is back: the same recording goes on in a second segment.
    let mut up = connect(&addr, "rec-1").await;
    up.start(start).await.unwrap();
    let second = started(&mut up).await;
    assert_ne!(first, second);
    for m in since_keyframe {
        up.media(m).await.unwrap();
    }
    let until = feed.next_time_us() as f64 / 1e6 + 1.0;
    send_media(&up, &mut feed, until).await;
    let mut events = Vec::new();
    stop(&mut up, &mut events).await;
    let (video, audio) = check_segments_but_a_gap_after(&[first, second], Some(0));
    assert!(
        video > 60 && audio > 100,
        "{video} video, {audio} audio samples"
    );

    // Nothing of the media is readable on the wire: no Annex B start code followed
    // by an SPS, PPS or IDR slice header.
    let wire = wire.lock().unwrap();
    assert!(wire.len() > 10_000, "{} bytes on the wire", wire.len());
    for (i, w) in wire.windows(5).enumerate() {
        let plain = w[..4] == [0, 0, 0, 1] && matches!(w[4] & 0x1f, 5 | 7 | 8);
        assert!(!plain, "plaintext H.264 at byte {i} of the wire");
    }
    assert!(!wire.windows(BANNER.len()).any(|w| w == BANNER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_ends_the_session() {
    tampered_session_ends_and_the_recording_continues(Tamper::Flip, "failed authentication").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_record_ends_the_session() {
    tampered_session_ends_and_the_recording_continues(Tamper::Replay, "failed authentication")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_record_ends_the_session() {
    tampered_session_ends_and_the_recording_continues(Tamper::Truncate, "ended inside a record")
        .await;
}
