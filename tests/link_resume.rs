//! A media link cut in the middle of a recording: the mixer side reconnects, sends
//! the same `Start`, replays its media from the last keyframe it sent and goes on.
//! The recorder — the same one, or a new one on the same storage — continues the
//! recording as a second segment, and every frame sent is in the recording exactly
//! once, from the start to the end, decodable.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::segments::check_segments;
use common::*;
use recbox::link::frame::{Media, StartParams, Stats, Track};
use recbox::link::session::MixerEvent;
use recbox::link::transport::LinkAddr;
use recbox::mixer::uplink::{Uplink, UplinkEvent};
use recbox::recorder::layout::{parse_chain, CHAIN_FILE, MP4_FILE, PLAYLIST_FILE};
use recbox::recorder::recovery::index_from_file;
use recbox::recorder::service::recover_unfinished;
use recbox::synth::SyntheticFeed;

const PATIENCE: Duration = Duration::from_secs(60);

/// The mixer's side: one feed over successive links.
struct Mixer {
    feed: SyntheticFeed,
    start: StartParams,
    /// (track slot, pts) of every frame sent, replays counted once.
    sent: BTreeSet<(usize, i64)>,
    /// What went out since the last video keyframe: replayed after a cut.
    since_keyframe: Vec<Media>,
}

fn slot(track: Track) -> usize {
    match track {
        Track::Video => 0,
        Track::Audio => 1,
    }
}

impl Mixer {
    fn new() -> Self {
        let feed = feed();
        let start = feed.start_params("rec-1", ROOM);
        Self {
            feed,
            start,
            sent: BTreeSet::new(),
            since_keyframe: Vec::new(),
        }
    }

    /// Connects, starts (or restarts) the recording and waits for `Started`.
    async fn connect(&self, addr: &LinkAddr) -> (Uplink, PathBuf) {
        let mut up = connect(addr, "rec-1").await;
        up.start(self.start.clone()).await.unwrap();
        let path = tokio::time::timeout(PATIENCE, async {
            loop {
                match up.next_event().await {
                    Some(UplinkEvent::Recorder(MixerEvent::Started { path, .. })) => {
                        return PathBuf::from(path.as_str())
                    }
                    Some(UplinkEvent::Recorder(MixerEvent::Fault(f))) => panic!("fault: {f:?}"),
                    Some(UplinkEvent::Recorder(_)) => {}
                    other => panic!("link closed before Started: {other:?}"),
                }
            }
        })
        .await
        .expect("the recorder answers Start");
        (up, path)
    }

    /// Sends media up to media time `until_s`.
    async fn send(&mut self, up: &Uplink, until_s: f64) {
        while self.feed.next_time_us() < (until_s * 1e6) as u64 {
            let m = self.feed.next_media().unwrap();
            if m.track == Track::Video && m.keyframe {
                self.since_keyframe.clear();
            }
            self.since_keyframe.push(m.clone());
            self.sent.insert((slot(m.track), m.pts));
            up.media(m).await.unwrap();
        }
    }

    /// After a reconnection: what the recorder may not have written goes again.
    async fn replay(&self, up: &Uplink) {
        assert!(self.since_keyframe[0].keyframe);
        for m in &self.since_keyframe {
            up.media(m.clone()).await.unwrap();
        }
    }
}

/// Waits until the recording in `dir` was closed (its playlist ended).
/// How long after Started the link is cut, at the least.
const CUT_AFTER: Duration = Duration::from_millis(500);

async fn closed(dir: &Path) {
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(dir.join(PLAYLIST_FILE))
        .is_ok_and(|t| t.contains("#EXT-X-ENDLIST"))
    {
        assert!(Instant::now() < deadline, "{} never closed", dir.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records ~3.4 s, cuts the link without Stop, reconnects (to a new recorder on the
/// same storage if `restart`), replays and records up to 6 s, stops, and checks.
async fn cut_and_resume(restart: bool) {
    let storage = tempfile::tempdir().unwrap();
    let stats_every = |c: &mut recbox::recorder::service::RecorderConfig| {
        c.stats_interval = Duration::from_millis(50);
    };
    let (addr, recorder) = start_recorder_task("127.0.0.1:0", storage.path(), stats_every).await;
    let mut mixer = Mixer::new();
    let (up, first) = mixer.connect(&addr).await;
    // The recorder's clock for the recording started before its Started.
    let started = Instant::now();
    // The cut falls in the middle of the fourth group of pictures, and well after
    // the start: a duration counted from the new session would be shorter.
    mixer.send(&up, 3.4).await;
    tokio::time::sleep_until((started + CUT_AFTER).into()).await;
    drop(up);
    let cut = started.elapsed();

    let addr = if restart {
        // What a restarted recorder finds: the first recorder closed what it had
        // (a crash would have left it for the recovery below).
        recorder.abort();
        closed(&first).await;
        recover_unfinished(storage.path());
        start_recorder_task("127.0.0.1:0", storage.path(), stats_every)
            .await
            .0
    } else {
        addr
    };
    let (mut up, second) = mixer.connect(&addr).await;
    mixer.replay(&up).await;
    mixer.send(&up, 6.0).await;

    // Stats of the continued recording count from its original start, over both
    // segments.
    let stats: Stats = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(UplinkEvent::Recorder(MixerEvent::Stats(s))) = up.next_event().await {
                return s;
            }
        }
    })
    .await
    .unwrap();
    // Sent after the cut, so at least that long after the recording's start.
    assert!(
        stats.duration_ms >= cut.as_millis() as u64,
        "{stats:?}, cut {cut:?} after Started"
    );
    let first_bytes = std::fs::metadata(first.join(MP4_FILE)).unwrap().len();
    assert!(stats.file_bytes > first_bytes, "{stats:?}");

    let mut events = Vec::new();
    let summary = stop(&mut up, &mut events).await;
    assert!(
        !events.iter().any(|e| matches!(e, MixerEvent::Fault(_))),
        "{events:?}"
    );

    // Two segments, chained.
    assert!(
        second.ends_with(format!(
            "{}.seg1",
            first.file_name().unwrap().to_str().unwrap()
        )),
        "{second:?} after {first:?}"
    );
    let dirs = vec![first.clone(), second.clone()];
    for dir in &dirs {
        let chain = parse_chain(&std::fs::read_to_string(dir.join(CHAIN_FILE)).unwrap()).unwrap();
        assert_eq!(
            chain.iter().map(|e| e.dir.clone()).collect::<Vec<_>>(),
            dirs
        );
    }
    // The second segment starts where the first one's media ends: at the cut's
    // group of pictures (3 s), or earlier when the recorder had not written all it
    // had received before the link broke (what it lacks, the mixer sends again).
    let resumed_at = index_from_file(&first.join(MP4_FILE))
        .unwrap()
        .last()
        .map_or(0, |r| r.end_us()) as f64
        / 1e6;
    let inspect = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .arg("inspect")
        .arg(&second)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}");
    assert!(text.contains("chain    2 segments"), "{text}");
    assert!(
        text.contains(&format!("#0 closed from 0.000 s  {}", first.display()))
            && text.contains(&format!(
                "#1 closed from {resumed_at:.3} s  {}",
                second.display()
            )),
        "{text}"
    );
    assert_eq!(text.matches(", healthy").count(), 2, "{text}");

    // Sequence numbers and media times run on from one segment to the next, every
    // index matches its file, each segment starts with a keyframe.
    let (video, audio) = check_segments(&dirs);
    let count = |s| mixer.sent.iter().filter(|(t, _)| *t == s).count() as u64;
    assert_eq!((video, audio), (count(0), count(1)));

    // ffprobe finds every frame sent exactly once, from the start to the end.
    let mut found = Vec::new();
    for dir in &dirs {
        let pts = packet_pts(&dir.join(MP4_FILE));
        for (s, track) in pts.iter().enumerate() {
            found.extend(track.iter().map(|&t| (s, t)));
        }
    }
    found.sort_unstable();
    let before = found.len();
    found.dedup();
    assert_eq!(found.len(), before, "a frame is in the recording twice");
    let found: BTreeSet<_> = found.into_iter().collect();
    let expected = &mixer.sent;
    assert_eq!(
        found.difference(expected).count() + expected.difference(&found).count(),
        0,
        "missing: {:?}; unexpected: {:?}",
        expected.difference(&found).take(10).collect::<Vec<_>>(),
        found.difference(expected).take(10).collect::<Vec<_>>()
    );
    // And it decodes all of it.
    let decoded: usize = dirs
        .iter()
        .map(|d| decoded_frames(&d.join(MP4_FILE))[0])
        .sum();
    assert_eq!(decoded as u64, count(0));

    let files: u64 = dirs
        .iter()
        .map(|d| std::fs::metadata(d.join(MP4_FILE)).unwrap().len())
        .sum();
    assert_eq!(summary.file_bytes, files);
    assert_eq!(summary.media_ms, 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_resumed_as_a_second_segment() {
    cut_and_resume(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_recorder_resumes_the_recording_as_a_second_segment() {
    cut_and_resume(true).await;
}
