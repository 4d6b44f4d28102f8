//! RTP with a known SSRC from another address than the SFU's is not mixed, and is
//! counted: over real loopback UDP, a participant's H.264 comes from one socket and a
//! different picture with the same SSRC (and the same numbering) from a second one.
//! The ingest takes only the first sender's; the mixer tells the SFU how many
//! packets it dropped in its ingest notice.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::rtp::{self, frames, Ingest, PATIENCE};
use recbox::ingest::depacketize::h264::H264Packetizer;
use recbox::ingest::rtcp::{self as rtcp_wire, RtcpMessage};
use recbox::ingest::rtp::{RtpPacket, RtpSender};
use recbox::ingest::stats::StreamStats;
use recbox::ingest::udp::IngestCommand;
use recbox::ingest::MediaKind;
use recbox::mixer::engine::EngineConfig;
use recbox::mixer::link::LinkConfig;
use recbox::mixer::service::{self as mixer, MixerConfig};
use recbox::sfu::notice::StreamReport;
use recbox::sfu::sim::SimEvent;
use recbox::synth::video::rgb_to_yuv;
use recbox::synth::{PatternSource, PatternSpec, PALETTE};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

const VIDEO: u32 = 0x5151_0001;
const VIDEO_PT: u8 = 96;
const FRAMES: usize = 40;

fn pattern(rgb: [u8; 3]) -> PatternSource {
    PatternSource::new(PatternSpec {
        width: 160,
        height: 120,
        gop: 20,
        rgb,
        ..PatternSpec::default()
    })
    .unwrap()
}

/// The next picture of `src` as the RTP packets of `sender`.
fn packets(src: &mut PatternSource, sender: &mut RtpSender) -> (Vec<u8>, Vec<Vec<u8>>) {
    let frame = src.next_frame().unwrap();
    let payloads = H264Packetizer::new(400)
        .unwrap()
        .packetize(&frame.data)
        .unwrap();
    let last = payloads.len() - 1;
    let wire = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let packet: RtpPacket = sender.packet(frame.pts as u32, i == last, p);
            packet.to_bytes().unwrap()
        })
        .collect();
    (frame.data, wire)
}

async fn stream_stats(ingest: &Ingest, ssrc: u32) -> StreamStats {
    let (tx, rx) = oneshot::channel();
    ingest.commands.send(IngestCommand::Stats(tx)).unwrap();
    let all = rx.await.unwrap();
    all.into_iter().find(|&(s, _)| s == ssrc).unwrap().1
}

fn near([y, u, v]: [u8; 3], [dy, du, dv]: [u8; 3]) -> bool {
    y.abs_diff(dy) <= 6 && u.abs_diff(du) <= 6 && v.abs_diff(dv) <= 6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sender_of_the_same_ssrc_is_dropped_and_counted() {
    let mut bound = rtp::bind().await;
    let config = rtp::stream(
        VIDEO,
        MediaKind::Video,
        VIDEO_PT,
        Duration::from_millis(300),
    );
    bound.demux_mut().add_stream(config).unwrap();
    let mut ingest = Ingest::run(bound);
    let sfu = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let intruder = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let (real_rgb, fake_rgb) = (PALETTE[0], PALETTE[1]);
    let (mut real, mut fake) = (pattern(real_rgb), pattern(fake_rgb));
    // The intruder copies the stream's numbering and sends each picture just before
    // the SFU does: without the lock its packets would be taken and the SFU's
    // dropped as duplicates.
    let (mut real_tx, mut fake_tx) = (
        RtpSender::new(VIDEO, VIDEO_PT, 100).unwrap(),
        RtpSender::new(VIDEO, VIDEO_PT, 100).unwrap(),
    );
    let (mut sent, mut real_packets, mut fake_packets) = (Vec::new(), 0u64, 0u64);
    for k in 0..FRAMES {
        let (data, wire) = packets(&mut real, &mut real_tx);
        let (_, forged) = packets(&mut fake, &mut fake_tx);
        if k > 0 {
            for p in &forged {
                intruder.send_to(p, ingest.addr).await.unwrap();
                fake_packets += 1;
            }
        }
        for p in &wire {
            sfu.send_to(p, ingest.addr).await.unwrap();
            real_packets += 1;
            // Paced like a real sender, so loopback never overflows the receive buffer.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if k == 0 {
            // The stream's source is the first one heard: the SFU's.
            timeout(PATIENCE, async {
                while stream_stats(&ingest, VIDEO).await.packets == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the ingest takes the first packet");
        }
        sent.push(data);
    }

    let mut out = Vec::new();
    ingest
        .collect_until(&mut out, |o| frames(o, VIDEO).len() == FRAMES)
        .await;
    let got = frames(&out, VIDEO);
    for (i, (got, sent)) in got.iter().zip(&sent).enumerate() {
        assert!(got.data == *sent, "frame {i} is not the SFU's");
    }
    let pixels = rtp::decode(got.iter().map(|f| f.data.as_slice()));
    assert!(
        pixels.iter().all(|&p| near(rgb_to_yuv(real_rgb), p)),
        "only the SFU's picture: {pixels:?}"
    );
    assert!(!pixels.iter().any(|&p| near(rgb_to_yuv(fake_rgb), p)));
    let stats = stream_stats(&ingest, VIDEO).await;
    assert_eq!(stats.packets, real_packets, "{stats}");
    assert_eq!(stats.spoofed, fake_packets, "{stats}");
    assert_eq!(stats.duplicates, 0, "{stats}");

    // RTCP (receiver reports every second) goes to the SFU only: an intruder cannot
    // redirect it. After the second report, the first round is all sent.
    let mut buf = [0u8; 1500];
    for _ in 0..2 {
        let (len, _) = timeout(PATIENCE, sfu.recv_from(&mut buf))
            .await
            .expect("receiver reports reach the SFU")
            .unwrap();
        let rtcp = rtcp_wire::parse(&buf[..len]).unwrap();
        assert!(matches!(rtcp[0], RtcpMessage::ReceiverReport { .. }));
    }
    assert!(
        intruder.try_recv_from(&mut buf).is_err(),
        "the intruder got RTCP"
    );
    ingest.finish().await;
}

async fn next(events: &mut mpsc::UnboundedReceiver<SimEvent>) -> SimEvent {
    timeout(PATIENCE, events.recv())
        .await
        .expect("the SFU hears from the mixer")
        .expect("the SFU runs")
}

/// The mixer's ingest notice, as the SFU gets it: the stream of `ssrc`.
fn ingest_report(event: &SimEvent, ssrc: u32) -> Option<StreamReport> {
    let SimEvent::Announcement(a) = event else {
        return None;
    };
    (a.kind == "ingest")
        .then(|| a.streams.iter().find(|s| s.ssrc == ssrc).cloned())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sfu_hears_of_spoofed_packets_in_the_ingest_notice() {
    let storage = tempfile::tempdir().unwrap();
    let recorder = common::start_recorder("127.0.0.1:0", storage.path(), |_| {}).await;
    let (url, mut sim_events) = common::start_sfu_with(|c| {
        c.participants = 1;
        c.report_sent = true;
    })
    .await;
    let config = MixerConfig {
        ingest: "127.0.0.1:0".parse().unwrap(),
        playout_delay: Duration::from_millis(100),
        engine: EngineConfig {
            width: 160,
            height: 90,
            fps: 10,
            ..EngineConfig::default()
        },
        link: LinkConfig::new(recorder, common::key(), "rec-1", common::ROOM),
        stats_interval: Duration::from_millis(300),
        microphone: None,
    };
    let (ingest, adapter) = mixer::join_sfu(&config, &url, "test mixer").await.unwrap();
    let port = ingest.local_addr().unwrap().port();
    let (reports, mut mixer_reports) = mpsc::unbounded_channel();
    tokio::spawn(async move { while mixer_reports.recv().await.is_some() {} });
    let (stop, stop_rx) = oneshot::channel();
    let mixer = tokio::spawn(mixer::run(config, ingest, adapter, reports, stop_rx));

    // The participant's video SSRC, from what the SFU sends; then its counters show
    // the ingest has taken the SFU's packets first.
    let ssrc = loop {
        if let SimEvent::Sent(s) = next(&mut sim_events).await {
            if s.kind == MediaKind::Video {
                break s.ssrc;
            }
        }
    };
    loop {
        if ingest_report(&next(&mut sim_events).await, ssrc).is_some_and(|r| r.counters.packets > 0)
        {
            break;
        }
    }

    let intruder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut fake = pattern(PALETTE[3]);
    let mut fake_tx = RtpSender::new(ssrc, VIDEO_PT, 7).unwrap();
    let mut forged = 0u64;
    for _ in 0..10 {
        for p in packets(&mut fake, &mut fake_tx).1 {
            intruder.send_to(&p, to).await.unwrap();
            forged += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (report, text) = loop {
        let event = next(&mut sim_events).await;
        if let Some(r) = ingest_report(&event, ssrc).filter(|r| r.counters.spoofed == forged) {
            let SimEvent::Announcement(a) = event else {
                unreachable!()
            };
            break (r, a.text);
        }
    };
    assert!(
        text.contains(&format!(
            "{forged} packets of these streams from other addresses"
        )),
        "{text}"
    );
    // The SFU's own stream goes on being received.
    let before = report.counters.frames;
    loop {
        if ingest_report(&next(&mut sim_events).await, ssrc)
            .is_some_and(|r| r.counters.frames > before)
        {
            break;
        }
    }
    let _ = stop.send(());
    let summary = timeout(PATIENCE * 2, mixer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(summary.is_some(), "the recording was stopped cleanly");
}
