//! The simulated SFU against the mixer's side over real loopback sockets: the
//! WebSocket control channel through `WsSfuAdapter`, RTP into the real UDP ingest.
//! Sent frames come out bit-exact; with seeded loss and reordering, reordered packets
//! are recovered, losses are counted exactly, PLIs are answered and decoding resumes
//! at the keyframe; notices come out of `recbox sfu-sim` as JSON lines.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::rtp::{self, frames, Ingest, PATIENCE};
use recbox::ingest::udp::{IngestCommand, UdpIngest};
use recbox::ingest::{IngestOutput, MediaKind};
use recbox::link::frame::{text, Fault, FaultKind, FaultTarget};
use recbox::sfu::control::{Hello, ParticipantInfo, CONTROL_VERSION};
use recbox::sfu::sim::{ImpairmentConfig, KeyframeCause, SentMedia, SimConfig, SimEvent};
use recbox::sfu::{Announcement, Notice, RosterEvent, SfuAdapter, WsSfuAdapter};
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PatternSpec, PALETTE};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn hello(port: Option<u16>) -> Hello {
    Hello {
        version: CONTROL_VERSION,
        name: text("test mixer"),
        audio_port: port,
        video_port: port,
    }
}

async fn start_sim(config: SimConfig) -> (String, mpsc::UnboundedReceiver<SimEvent>) {
    common::start_sfu_with(|c| *c = config).await
}

async fn next_join(adapter: &mut WsSfuAdapter) -> ParticipantInfo {
    match timeout(PATIENCE, adapter.next_event()).await.unwrap() {
        Ok(Some(RosterEvent::Joined(p))) => p,
        other => panic!("expected a join, got {other:?}"),
    }
}

/// Connects a mixer to the simulated SFU with an ingest on one port for everything,
/// takes the first `n` joins, sets up their streams and asks for their media.
async fn mixer(
    url: &str,
    n: usize,
    playout_delay: Duration,
) -> (WsSfuAdapter, Ingest, Vec<ParticipantInfo>) {
    let mut ingest: UdpIngest = rtp::bind().await;
    let port = ingest.local_addr().unwrap().port();
    let mut adapter = WsSfuAdapter::connect(url, hello(Some(port))).await.unwrap();
    assert_eq!(adapter.sfu(), "recbox sfu-sim");
    let mut people = Vec::new();
    for _ in 0..n {
        let p = next_join(&mut adapter).await;
        assert_eq!((p.audio.port, p.video.port), (port, port));
        for (s, kind) in [(p.audio, MediaKind::Audio), (p.video, MediaKind::Video)] {
            let config = rtp::stream(s.ssrc, kind, s.payload_type, playout_delay);
            ingest.demux_mut().add_stream(config).unwrap();
        }
        people.push(p);
    }
    let ingest = Ingest::run(ingest);
    for p in &people {
        adapter.forward(&p.id).unwrap();
    }
    (adapter, ingest, people)
}

fn small_video(gop: u32) -> PatternSpec {
    PatternSpec {
        width: 160,
        height: 120,
        gop,
        ..PatternSpec::default()
    }
}

/// Gathers what the ingest outputs and what the simulated SFU reports until `done`.
async fn gather(
    ingest: &mut Ingest,
    events: &mut mpsc::UnboundedReceiver<SimEvent>,
    out: &mut Vec<IngestOutput>,
    sim: &mut Vec<SimEvent>,
    done: impl Fn(&[IngestOutput], &[SimEvent]) -> bool,
) {
    let wait = async {
        while !done(out, sim) {
            tokio::select! {
                o = ingest.outputs.recv() => out.extend(o.expect("ingest stopped")),
                e = events.recv() => sim.push(e.expect("simulated SFU stopped")),
            }
        }
    };
    timeout(PATIENCE, wait)
        .await
        .expect("media did not arrive in time");
}

fn sent(events: &[SimEvent], ssrc: u32) -> Vec<&SentMedia> {
    events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Sent(s) if s.ssrc == ssrc => Some(s),
            _ => None,
        })
        .collect()
}

/// The simulated SFU reports a frame after sending its packets, so the ingest may
/// output it first: true once every frame out of the ingest has been reported.
fn reported(out: &[IngestOutput], events: &[SimEvent], ssrcs: &[u32]) -> bool {
    ssrcs.iter().all(|&ssrc| {
        frames(out, ssrc)
            .last()
            .is_none_or(|f| sent(events, ssrc).iter().any(|s| s.ts == f.ts as u32))
    })
}

fn ssrcs(people: &[ParticipantInfo]) -> Vec<u32> {
    people
        .iter()
        .flat_map(|p| [p.audio.ssrc, p.video.ssrc])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_sent_arrives_bit_exact() {
    let (url, mut events) = start_sim(SimConfig {
        participants: 2,
        video: small_video(15),
        // Small packets, so that access units span several FU-A packets.
        max_payload: 300,
        report_sent: true,
        ..SimConfig::default()
    })
    .await;
    let (_adapter, mut ingest, people) = mixer(&url, 2, Duration::from_millis(200)).await;
    let (mut out, mut sim) = (Vec::new(), Vec::new());
    // 1 s of media: 30 video frames and 50 audio packets per participant.
    let want = |ssrc: u32| if ssrc & 0xf == 1 { 30 } else { 50 };
    let all = ssrcs(&people);
    gather(&mut ingest, &mut events, &mut out, &mut sim, |o, e| {
        all.iter().all(|&s| frames(o, s).len() >= want(s)) && reported(o, e, &all)
    })
    .await;
    for &ssrc in &all {
        let got = &frames(&out, ssrc)[..want(ssrc)];
        let sent = sent(&sim, ssrc);
        assert!(sent.len() >= got.len());
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!((g.ts as u32, g.keyframe), (s.ts, s.keyframe));
            assert!(g.data == s.data, "frame at {} of {ssrc:#x} differs", s.ts);
            assert_eq!(s.dropped, 0);
        }
        // A sender report precedes the media: every frame is on the sender's clock.
        assert!(got.iter().all(|f| f.wallclock_us.is_some()), "{ssrc:#x}");
    }
    assert!(sent(&sim, people[0].video.ssrc)
        .iter()
        .any(|s| s.packets > 2));
    assert!(!out.iter().any(|o| matches!(o, IngestOutput::Lost { .. })));
    // Distinct colours: each participant's picture is its palette colour.
    for (i, p) in people.iter().enumerate() {
        let video = frames(&out, p.video.ssrc);
        let pixels = rtp::decode(video.iter().map(|f| f.data.as_slice()));
        let [y, u, v] = rgb_to_yuv(PALETTE[i]);
        let [dy, du, dv] = pixels[0];
        assert!(
            y.abs_diff(dy) <= 6 && u.abs_diff(du) <= 6 && v.abs_diff(dv) <= 6,
            "participant {} is {:?}, expected about {:?}",
            i + 1,
            pixels[0],
            [y, u, v]
        );
    }
    let demux = ingest.finish().await;
    for &ssrc in &all {
        let stats = demux.stream(ssrc).unwrap().stats();
        assert_eq!(stats.lost + stats.late + stats.malformed, 0, "{stats}");
    }
    // Sender reports arrived on the RTP port and put both streams on one clock.
    assert!(demux.stats().rtcp >= 4);
    assert!(demux.sync().wallclock_us(all[0], 0).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_counted_reordering_recovered_and_pli_answered() {
    let (url, mut events) = start_sim(SimConfig {
        participants: 1,
        // No keyframes but the first and those asked for.
        video: small_video(100_000),
        max_payload: 300,
        impairment: ImpairmentConfig {
            loss: 0.05,
            reorder: 0.05,
            jitter: Duration::from_millis(2),
        },
        seed: 7,
        report_sent: true,
        ..SimConfig::default()
    })
    .await;
    // A long playout delay: every reordered packet is waited for, only drops are lost.
    let (_adapter, mut ingest, people) = mixer(&url, 1, Duration::from_millis(300)).await;
    let (video, audio) = (people[0].video.ssrc, people[0].audio.ssrc);
    let (mut out, mut sim) = (Vec::new(), Vec::new());
    // Until a loss was followed by a keyframe sent in answer to a PLI, and ten frames
    // decoded after it.
    gather(&mut ingest, &mut events, &mut out, &mut sim, |o, e| {
        let answered = e.iter().any(|e| {
            matches!(
                e,
                SimEvent::KeyframeForced {
                    cause: KeyframeCause::Pli,
                    ..
                }
            )
        });
        let first_loss = o
            .iter()
            .position(|o| matches!(o, IngestOutput::Lost { ssrc, .. } if *ssrc == video));
        answered
            && reported(o, e, &[video, audio])
            && first_loss.is_some_and(|at| {
                let after = frames(&o[at..], video);
                after.first().is_some_and(|f| f.keyframe) && after.len() > 10
            })
    })
    .await;

    for ssrc in [video, audio] {
        let sent = sent(&sim, ssrc);
        let by_ts: HashMap<u32, &SentMedia> = sent.iter().map(|s| (s.ts, *s)).collect();
        let got = frames(&out, ssrc);
        // What comes out is exactly what was sent.
        for f in &got {
            let s = by_ts[&(f.ts as u32)];
            assert!(f.data == s.data && f.keyframe == s.keyframe);
        }
        // Every packet dropped before the last frame out is reported, and no more.
        let last = got.last().unwrap().ts as u32;
        let upto = sent.iter().position(|s| s.ts == last).unwrap();
        let dropped: usize = sent[..upto].iter().map(|s| s.dropped).sum();
        let last_at = out
            .iter()
            .rposition(|o| matches!(o, IngestOutput::Frame(f) if f.ssrc == ssrc))
            .unwrap();
        assert_eq!(
            rtp::lost(&out[..last_at], ssrc),
            dropped as u64,
            "{ssrc:#x}"
        );
        assert!(dropped > 0, "{ssrc:#x}: the seed must drop something");
    }
    // After every loss, video resumes at a keyframe; everything decodes.
    let mut resumed = true;
    for o in &out {
        match o {
            IngestOutput::Lost { ssrc, .. } if *ssrc == video => resumed = false,
            IngestOutput::Frame(f) if f.ssrc == video => {
                assert!(resumed || f.keyframe, "delta frame right after a loss");
                resumed = true;
            }
            _ => {}
        }
    }
    let video_frames = frames(&out, video);
    rtp::decode(video_frames.iter().map(|f| f.data.as_slice()));
    let keyframes = video_frames.iter().filter(|f| f.keyframe).count();
    assert!(keyframes >= 2, "only {keyframes} keyframes");

    let demux = ingest.finish().await;
    let stats = demux.stream(video).unwrap().stats();
    assert!(stats.reordered > 0, "{stats}");
    assert!(
        stats.keyframe_requests > 0 && stats.frames_dropped > 0,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_joining_and_leaving_while_the_ingest_runs() {
    let (url, _events) = start_sim(SimConfig {
        participants: 1,
        schedule: "join 2@300ms, leave 1@600ms".parse().unwrap(),
        video: small_video(15),
        ..SimConfig::default()
    })
    .await;
    let (mut adapter, mut ingest, people) = mixer(&url, 1, Duration::from_millis(100)).await;
    let late = next_join(&mut adapter).await;
    for (s, kind) in [
        (late.audio, MediaKind::Audio),
        (late.video, MediaKind::Video),
    ] {
        let config = rtp::stream(s.ssrc, kind, s.payload_type, Duration::from_millis(100));
        ingest
            .commands
            .send(IngestCommand::AddStream(config))
            .unwrap();
    }
    adapter.forward(&late.id).unwrap();
    let mut out = Vec::new();
    ingest
        .collect_until(&mut out, |o| frames(o, late.video.ssrc).len() >= 10)
        .await;
    assert!(frames(&out, late.audio.ssrc).len() >= 10);
    rtp::decode(
        frames(&out, late.video.ssrc)
            .iter()
            .map(|f| f.data.as_slice()),
    );

    // The first participant leaves: its streams are removed, the other's counted on.
    match timeout(PATIENCE, adapter.next_event()).await.unwrap() {
        Ok(Some(RosterEvent::Left(p))) => assert_eq!(p.id, people[0].id),
        other => panic!("expected a leave, got {other:?}"),
    }
    for ssrc in [people[0].audio.ssrc, people[0].video.ssrc] {
        ingest
            .commands
            .send(IngestCommand::RemoveStream(ssrc))
            .unwrap();
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    ingest.commands.send(IngestCommand::Stats(tx)).unwrap();
    let stats = rx.await.unwrap();
    let ssrcs: Vec<u32> = stats.iter().map(|&(ssrc, _)| ssrc).collect();
    let mut want = vec![late.audio.ssrc, late.video.ssrc];
    want.sort_unstable();
    assert_eq!(ssrcs, want);
    assert!(stats.iter().all(|(_, s)| s.frames >= 10 && s.lost == 0));
    ingest.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_request_on_the_control_channel_is_answered() {
    let (url, mut events) = start_sim(SimConfig {
        participants: 1,
        video: small_video(100_000),
        ..SimConfig::default()
    })
    .await;
    let (adapter, ingest, people) = mixer(&url, 1, Duration::from_millis(100)).await;
    adapter.request_keyframe(&people[0].id).unwrap();
    let forced = async {
        loop {
            if let Some(SimEvent::KeyframeForced { participant, cause }) = events.recv().await {
                break (participant, cause);
            }
        }
    };
    assert_eq!(
        timeout(PATIENCE, forced).await.unwrap(),
        (1, KeyframeCause::Control)
    );
    ingest.finish().await;
}

/// `recbox sfu-sim` as a process; killed when dropped.
struct SimProcess {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    url: String,
}

impl SimProcess {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_recbox"))
            .args(["sfu-sim", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drained for the whole run (the process logs there); the control URL is in it.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("sfu-sim: {line}");
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(PATIENCE);
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdout,
            url: url.expect("sfu-sim did not log its control URL"),
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_reaches_the_adapter_and_notices_are_printed() {
    let mut sim = SimProcess::start(&[
        "--participants",
        "2",
        "--schedule",
        "leave 2@200ms, join 3@400ms",
        "--audio-port",
        "9",
        "--video-port",
        "9",
    ]);
    // No ports in the hello: the configured ones are announced. No `forward`: no media.
    let mut adapter = WsSfuAdapter::connect(&sim.url, hello(None)).await.unwrap();
    let mut roster = Vec::new();
    for _ in 0..4 {
        let event = timeout(PATIENCE, adapter.next_event()).await.unwrap();
        roster.push(match event.unwrap().unwrap() {
            RosterEvent::Joined(p) => format!("join {} {} {}", p.id, p.name, p.video.port),
            RosterEvent::Left(p) => format!("leave {}", p.id),
            RosterEvent::Renewed(p) => format!("renew {}", p.id),
        });
    }
    assert_eq!(
        roster,
        [
            "join p1 Participant 1 9",
            "join p2 Participant 2 9",
            "leave p2",
            "join p3 Participant 3 9"
        ]
    );
    assert_eq!(adapter.roster().participants().count(), 2);

    let notice = Notice::Fault(Fault {
        recording: text("rec-1"),
        kind: FaultKind::DiskFull,
        target: FaultTarget::Storage,
        detail: text("No space left on device (os error 28)"),
        at: 1_700_000_000_000,
    });
    adapter.send_notice(notice.clone()).unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        sim.stdout.read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    // Shown on the terminals of the two participants in the meeting.
    let mut shown = Announcement::new(&notice);
    shown.terminals = vec!["p1".into(), "p3".into()];
    assert_eq!(line.trim_end(), shown.to_json_line());
    assert!(line.contains(r#""to":"terminals","kind":"disk_full","text":"Recording problem: the recording disk is full."#));
}

#[test]
fn bad_participant_count_is_refused_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["sfu-sim", "--listen", "127.0.0.1:0", "--participants", "17"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--participants must be 1..=16, got 17"),
        "{stderr}"
    );
}

#[test]
fn a_bad_codec_mix_is_refused_clearly() {
    for (args, want) in [
        (
            &["--vp8", "2", "--vp9", "1-2"][..],
            "participant 2 is given two video codecs",
        ),
        (
            &["--vp8", "0"][..],
            "`0` is not a list of participants 1..=16",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
            .args(["sfu-sim", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
