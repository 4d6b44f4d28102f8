//! The mixer's link to a real recorder through a proxy that breaks it: the recorder
//! is reported unreachable within the bound (at once for a cut, after the pong
//! timeout for a link that stops moving), media is held, the link comes back, the
//! same recording continues as a new segment, and no media is lost. A fake recorder
//! without the key is sent nothing after the handshake and reported unreachable.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::proxy::{Mode, Proxy};
use common::{key, start_recorder, ROOM};
use recbox::link::frame::{FaultKind, FaultTarget};
use recbox::link::transport::LinkAddr;
use recbox::mixer::link::{LinkConfig, LinkReport, RecorderLink};
use recbox::recorder::layout::{parse_chain, CHAIN_FILE};
use recbox::sfu::Notice;
use recbox::synth::SyntheticFeed;
use tokio::sync::mpsc;
use tokio::time::{interval, timeout, Instant};

/// Far beyond what loopback needs: a loaded machine only makes the test slower.
const PATIENCE: Duration = Duration::from_secs(30);

struct Mixer {
    link: RecorderLink,
    feed: SyntheticFeed,
    reports: mpsc::UnboundedReceiver<LinkReport>,
    log: Vec<(Instant, LinkReport)>,
    /// Media frames handed to the link, by track: (video, audio).
    sent: (u64, u64),
}

impl Mixer {
    fn new(to: SocketAddr, recording: &str, pong_timeout: Duration) -> Self {
        let feed = common::feed();
        let mut config = LinkConfig::new(LinkAddr::Tcp(to.to_string()), key(), recording, ROOM);
        config.ping_interval = Duration::from_millis(100);
        config.pong_timeout = pong_timeout;
        config.reconnect_backoff = (Duration::from_millis(50), Duration::from_millis(200));
        let (tx, reports) = mpsc::unbounded_channel();
        let link = RecorderLink::new(config, feed.start_params(recording, ROOM), tx);
        Self {
            link,
            feed,
            reports,
            log: Vec::new(),
            sent: (0, 0),
        }
    }

    /// Runs the link, feeding media at about five times real time, until `done`
    /// holds for the reports so far (or, with `media` false, without feeding).
    async fn run_until(&mut self, media: bool, done: impl Fn(&[(Instant, LinkReport)]) -> bool) {
        let mut tick = interval(Duration::from_millis(5));
        let work = async {
            while !done(&self.log) {
                tokio::select! {
                    wake = self.link.wait() => self.link.on_wake(wake).await,
                    Some(r) = self.reports.recv() => self.log.push((Instant::now(), r)),
                    _ = tick.tick(), if media => {
                        for _ in 0..2 {
                            let m = self.feed.next_media().unwrap();
                            match m.track {
                                recbox::link::frame::Track::Video => self.sent.0 += 1,
                                recbox::link::frame::Track::Audio => self.sent.1 += 1,
                            }
                            self.link.send(m).await;
                        }
                    }
                }
            }
        };
        timeout(PATIENCE, work)
            .await
            .expect("the link did not get there in time");
    }

    async fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        self.run_until(true, |_| Instant::now() >= end).await;
    }
}

fn is_fault(r: &LinkReport, kind: FaultKind) -> bool {
    matches!(r, LinkReport::Notice(Notice::Fault(f)) if f.kind == kind && f.target == FaultTarget::Recorder)
}

fn is_cleared(r: &LinkReport, kind: FaultKind) -> bool {
    matches!(r, LinkReport::Notice(Notice::Cleared { kind: k, target: FaultTarget::Recorder, .. }) if *k == kind)
}

/// Why the first `recorder_unreachable` in the log said the recorder was away.
fn unreachable_detail(log: &[(Instant, LinkReport)]) -> String {
    log.iter()
        .find_map(|(_, r)| match r {
            LinkReport::Notice(Notice::Fault(f)) if f.kind == FaultKind::RecorderUnreachable => {
                Some(f.detail.to_string())
            }
            _ => None,
        })
        .expect("a recorder_unreachable fault")
}

fn count(log: &[(Instant, LinkReport)], f: impl Fn(&LinkReport) -> bool) -> usize {
    log.iter().filter(|(_, r)| f(r)).count()
}

async fn recorder_behind_proxy(storage: &std::path::Path) -> Proxy {
    let addr = start_recorder("127.0.0.1:0", storage, |c| {
        c.stats_interval = Duration::from_millis(200)
    })
    .await;
    let LinkAddr::Tcp(addr) = addr else {
        unreachable!("a TCP recorder")
    };
    Proxy::start(addr.parse().unwrap()).await
}

/// The segments of the one recording in the room, in chain order.
fn segments(storage: &std::path::Path, recording: &str) -> Vec<PathBuf> {
    let first = common::recording_dir(storage, recording);
    match std::fs::read_to_string(first.join(CHAIN_FILE)) {
        Ok(chain) => parse_chain(&chain)
            .unwrap()
            .into_iter()
            .map(|e| e.dir)
            .collect(),
        Err(_) => vec![first],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_is_reported_at_once_and_the_recording_continues() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recorder_behind_proxy(dir.path()).await;
    let mut mixer = Mixer::new(proxy.addr, "rec-cut", Duration::from_secs(2));
    mixer.run_for(Duration::from_millis(600)).await;
    assert!(mixer.link.is_up());

    proxy.set(Mode::Cut);
    mixer
        .run_until(true, |log| {
            log.iter()
                .any(|(_, r)| is_fault(r, FaultKind::RecorderUnreachable))
        })
        .await;
    // A cut closes the connection: the link went down for that, not because a ping
    // went unanswered.
    let detail = unreachable_detail(&mixer.log);
    assert!(!detail.starts_with("no answer to ping"), "{detail}");
    // Media keeps coming while the recorder is away.
    mixer.run_for(Duration::from_millis(400)).await;
    assert!(!mixer.link.is_up());
    assert!(mixer.link.held_bytes() > 0);

    proxy.set(Mode::Pass);
    mixer
        .run_until(true, |log| {
            log.iter()
                .any(|(_, r)| is_cleared(r, FaultKind::RecorderUnreachable))
        })
        .await;
    mixer.run_for(Duration::from_millis(400)).await;
    let summary = mixer
        .link
        .stop(PATIENCE)
        .await
        .expect("the recorder confirms the stop");

    // Reported once, cleared once, nothing dropped.
    assert_eq!(
        count(&mixer.log, |r| is_fault(r, FaultKind::RecorderUnreachable)),
        1
    );
    assert_eq!(
        count(&mixer.log, |r| is_cleared(
            r,
            FaultKind::RecorderUnreachable
        )),
        1
    );
    assert_eq!(
        count(&mixer.log, |r| is_fault(r, FaultKind::MediaDropped)),
        0
    );
    assert_eq!(
        count(&mixer.log, |r| matches!(r, LinkReport::Started { .. })),
        2
    );

    // One recording, continued in a second segment: every frame sent is in it once.
    let dirs = segments(dir.path(), "rec-cut");
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let (video, audio) = common::segments::check_segments(&dirs);
    assert_eq!((video, audio), mixer.sent, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_stops_moving_is_reported_after_the_pong_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recorder_behind_proxy(dir.path()).await;
    let pong_timeout = Duration::from_millis(500);
    let mut mixer = Mixer::new(proxy.addr, "rec-freeze", pong_timeout);
    mixer.run_for(Duration::from_millis(300)).await;

    proxy.set(Mode::Freeze);
    mixer
        .run_until(false, |log| {
            log.iter()
                .any(|(_, r)| is_fault(r, FaultKind::RecorderUnreachable))
        })
        .await;
    let detail = unreachable_detail(&mixer.log);
    // The link went down because a pong was overdue (not because the socket broke),
    // counted from the ping it awaited: what the mixer decided, not a wall-clock
    // distance that a slow machine stretches or shrinks.
    assert!(
        detail.starts_with("no answer to ping")
            && detail.ends_with(&format!("within {pong_timeout:?}")),
        "{detail}"
    );

    proxy.set(Mode::Pass);
    mixer
        .run_until(false, |log| {
            log.iter()
                .any(|(_, r)| is_cleared(r, FaultKind::RecorderUnreachable))
        })
        .await;
    mixer
        .link
        .stop(PATIENCE)
        .await
        .expect("the recorder confirms the stop");
}

/// A fake recorder that knows the banner but not the key: it answers the mixer's
/// first handshake message with noise, then counts what else the mixer sends.
async fn fake_recorder() -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                s.write_all(recbox::link::handshake::BANNER).await.unwrap();
                // Preamble, length, Noise message 1 (an ephemeral key and a tag).
                let mut first = vec![0; 14 + 2 + 48];
                if s.read_exact(&mut first).await.is_err() {
                    return;
                }
                s.write_all(&[48, 0]).await.unwrap();
                s.write_all(&[1; 48]).await.unwrap();
                let mut rest = Vec::new();
                let _ = timeout(PATIENCE, s.read_to_end(&mut rest)).await;
                let _ = tx.send(rest.len());
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_without_the_key_gets_nothing_and_is_reported_unreachable() {
    let (addr, mut after_handshake) = fake_recorder().await;
    let mut mixer = Mixer::new(addr, "rec-fake", Duration::from_secs(2));
    // Media is offered all along: none of it may reach the fake.
    mixer
        .run_until(true, |log| {
            log.iter()
                .any(|(_, r)| is_fault(r, FaultKind::RecorderUnreachable))
        })
        .await;
    let detail = unreachable_detail(&mixer.log);
    assert!(
        detail.contains("recorder failed authentication"),
        "{detail}"
    );
    assert!(!mixer.link.is_up());
    // The mixer gave up on that connection without sending a byte more: no Start,
    // no media, not even its Hello.
    let extra = timeout(PATIENCE, after_handshake.recv())
        .await
        .expect("the mixer closes the connection")
        .unwrap();
    assert_eq!(
        extra, 0,
        "bytes sent to a recorder that did not prove the key"
    );
}
