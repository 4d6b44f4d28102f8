//! The RTP ingest over real loopback UDP: H.264 from openh264 and Opus from libopus,
//! packetized and sent the way an SFU forwards them, must come out bit-exact; with
//! seeded loss and reordering, losses are reported, a PLI reaches the sender and the
//! output resumes at the keyframe it then sends.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::rtp::{self, frames, Ingest};

use rand::{rngs::StdRng, Rng, SeedableRng};
use recbox::ingest::depacketize::h264::H264Packetizer;
use recbox::ingest::rtcp::{self, RtcpMessage};
use recbox::ingest::rtp::{RtpPacket, RtpSender};
use recbox::ingest::{IngestOutput, MediaKind};
use recbox::synth::{PatternSource, PatternSpec, ToneSource, ToneSpec};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const VIDEO: u32 = 0x5151_0001;
const AUDIO: u32 = 0x5151_0002;
const VIDEO_PT: u8 = 96;
const AUDIO_PT: u8 = 111;
/// Far below a datagram: the test pattern compresses well, and small payloads make
/// its frames span several FU-A packets.
const MAX_PAYLOAD: usize = 200;
/// Timestamps start near the 32-bit wrap, video sequence numbers near the 16-bit one.
const TS0: u32 = u32::MAX - 90_000;

async fn start(streams: &[(u32, MediaKind, u8)], playout_delay: Duration) -> Ingest {
    let mut ingest = rtp::bind().await;
    for &(ssrc, kind, pt) in streams {
        let config = rtp::stream(ssrc, kind, pt, playout_delay);
        ingest.demux_mut().add_stream(config).unwrap();
    }
    Ingest::run(ingest)
}

/// One encoded video frame and the RTP packets it was sent in.
struct SentFrame {
    ts: i64,
    data: Vec<u8>,
    keyframe: bool,
    packets: Vec<RtpPacket>,
}

fn video_frame(src: &mut PatternSource, sender: &mut RtpSender) -> SentFrame {
    let frame = src.next_frame().unwrap();
    let ts = TS0.wrapping_add(frame.pts as u32);
    let payloads = H264Packetizer::new(MAX_PAYLOAD)
        .unwrap()
        .packetize(&frame.data)
        .unwrap();
    let last = payloads.len() - 1;
    let packets = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| sender.packet(ts, i == last, p))
        .collect();
    SentFrame {
        ts: i64::from(TS0) + frame.pts,
        data: frame.data,
        keyframe: frame.keyframe,
        packets,
    }
}

async fn send(socket: &UdpSocket, to: SocketAddr, packet: &RtpPacket) {
    socket
        .send_to(&packet.to_bytes().unwrap(), to)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_and_video_come_out_bit_exact() {
    let mut ingest = start(
        &[
            (VIDEO, MediaKind::Video, VIDEO_PT),
            (AUDIO, MediaKind::Audio, AUDIO_PT),
        ],
        Duration::from_millis(100),
    )
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Sender reports first, so that both streams can be put on one clock.
    let ntp = 3_900_000_000u64 << 32;
    for (ssrc, rtp_ts) in [(VIDEO, TS0), (AUDIO, TS0)] {
        let sr = rtcp::sender_report(ssrc, ntp, rtp_ts, 0, 0).unwrap();
        socket.send_to(&sr, ingest.addr).await.unwrap();
    }

    let mut video_src = PatternSource::new(PatternSpec {
        gop: 30,
        ..PatternSpec::default()
    })
    .unwrap();
    let mut audio_src = ToneSource::new(ToneSpec::default()).unwrap();
    let mut video_tx = RtpSender::new(VIDEO, VIDEO_PT, 65_500).unwrap();
    let mut audio_tx = RtpSender::new(AUDIO, AUDIO_PT, 7).unwrap();
    let (n_video, n_audio) = (45, 75); // 1.5 s of each
    let mut sent_video = Vec::new();
    let mut sent_audio = Vec::new();
    let (mut v, mut a) = (0, 0);
    while v < n_video || a < n_audio {
        // Interleave in presentation order: video every 1/30 s, audio every 1/50 s.
        if v < n_video && (a == n_audio || v * 50 <= a * 30) {
            let frame = video_frame(&mut video_src, &mut video_tx);
            for p in &frame.packets {
                send(&socket, ingest.addr, p).await;
            }
            sent_video.push(frame);
            v += 1;
        } else {
            let packet = audio_src.next_packet().unwrap();
            let rtp = audio_tx.packet(TS0.wrapping_add(packet.pts as u32), false, &packet.data);
            send(&socket, ingest.addr, &rtp).await;
            sent_audio.push((i64::from(TS0) + packet.pts, packet.data));
            a += 1;
        }
        // Pace like a real sender so loopback never overflows the receive buffer.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(sent_video.iter().filter(|f| f.keyframe).count() >= 2);
    assert!(sent_video.iter().any(|f| f.packets.len() > 1));

    let mut out = Vec::new();
    ingest
        .collect_until(&mut out, |o| {
            frames(o, VIDEO).len() == n_video && frames(o, AUDIO).len() == n_audio
        })
        .await;
    for (got, sent) in frames(&out, VIDEO).iter().zip(&sent_video) {
        assert_eq!(got.kind, MediaKind::Video);
        assert_eq!((got.ts, got.keyframe), (sent.ts, sent.keyframe));
        assert!(got.data == sent.data, "video frame at {} differs", sent.ts);
    }
    for (got, (ts, data)) in frames(&out, AUDIO).iter().zip(&sent_audio) {
        assert_eq!((got.ts, &got.data), (*ts, data));
    }
    assert!(!out.iter().any(|o| matches!(o, IngestOutput::Lost { .. })));

    let demux = ingest.finish().await;
    let video = demux.stream(VIDEO).unwrap().stats();
    assert_eq!(video.lost + video.malformed + video.late, 0, "{video}");
    assert_eq!(demux.stats().rtcp, 2);
    // Both streams' first frames are at the sender-report instant on the shared clock.
    let sync = demux.sync();
    assert_eq!(
        sync.wallclock_us(VIDEO, sent_video[0].ts),
        sync.wallclock_us(AUDIO, sent_audio[0].0)
    );
    assert_eq!(
        sync.wallclock_us(VIDEO, sent_video[30].ts),
        Some(3_900_000_000 * 1_000_000 + 1_000_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_triggers_pli_and_output_resumes_at_the_forced_keyframe() {
    // A long playout delay keeps the test independent of scheduling: a swapped pair
    // is always reunited, so only the packets dropped on purpose are lost.
    let mut ingest = start(
        &[(VIDEO, MediaKind::Video, VIDEO_PT)],
        Duration::from_millis(500),
    )
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // No keyframe but the first and the one the PLI asks for.
    let mut src = PatternSource::new(PatternSpec {
        gop: 10_000,
        ..PatternSpec::default()
    })
    .unwrap();
    let mut tx = RtpSender::new(VIDEO, VIDEO_PT, 65_000).unwrap();
    let mut rng = StdRng::seed_from_u64(11);

    // Phase 1: 5 % loss (not in the first frame) and swapped neighbours.
    let mut sent: Vec<SentFrame> = Vec::new();
    let mut wire: Vec<(RtpPacket, bool)> = Vec::new();
    for k in 0..200 {
        let frame = video_frame(&mut src, &mut tx);
        for p in &frame.packets {
            wire.push((p.clone(), k > 0 && rng.gen_bool(0.05)));
        }
        sent.push(frame);
    }
    let dropped = wire.iter().filter(|(_, d)| *d).count() as u64;
    assert!(dropped > 0);
    let mut order: Vec<&RtpPacket> = wire.iter().filter(|(_, d)| !d).map(|(p, _)| p).collect();
    let mut swaps = 0;
    let mut i = 0;
    while i + 1 < order.len() {
        if rng.gen_bool(0.1) {
            order.swap(i, i + 1);
            swaps += 1;
            i += 1;
        }
        i += 1;
    }
    assert!(swaps > 0);
    for p in order {
        send(&socket, ingest.addr, p).await;
        tokio::time::sleep(Duration::from_micros(300)).await;
    }

    // The sender gets a PLI for the video stream (receiver reports may come too).
    let wait_pli = async {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, ingest.addr);
            let messages = rtcp::parse(&buf[..n]).unwrap();
            if messages.contains(&RtcpMessage::Pli {
                sender_ssrc: rtp::INGEST_SSRC,
                media_ssrc: VIDEO,
            }) {
                break;
            }
        }
    };
    timeout(rtp::PATIENCE, wait_pli)
        .await
        .expect("no PLI reached the sender");

    // Phase 2: answer with a keyframe and send cleanly.
    src.force_keyframe();
    let resume_at = sent.len();
    for _ in 0..20 {
        let frame = video_frame(&mut src, &mut tx);
        for p in &frame.packets {
            send(&socket, ingest.addr, p).await;
        }
        sent.push(frame);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(sent[resume_at].keyframe);
    let last_ts = sent.last().unwrap().ts;
    let mut out = Vec::new();
    ingest
        .collect_until(&mut out, |o| {
            frames(o, VIDEO).last().is_some_and(|f| f.ts == last_ts)
        })
        .await;

    // Whatever comes out is exact and in order; what was damaged is left out.
    let by_ts: HashMap<i64, &SentFrame> = sent.iter().map(|f| (f.ts, f)).collect();
    let got = frames(&out, VIDEO);
    for f in &got {
        let original = by_ts[&f.ts];
        assert!(f.data == original.data, "frame at {} differs", f.ts);
        assert_eq!(f.keyframe, original.keyframe);
    }
    assert!(got.windows(2).all(|w| w[0].ts < w[1].ts));
    assert!(
        got.len() < sent.len(),
        "frames after the loss must be dropped"
    );
    // Everything from the forced keyframe on is delivered.
    let resumed: Vec<i64> = got
        .iter()
        .map(|f| f.ts)
        .filter(|&t| t >= sent[resume_at].ts)
        .collect();
    let expected: Vec<i64> = sent[resume_at..].iter().map(|f| f.ts).collect();
    assert_eq!(resumed, expected);

    assert_eq!(rtp::lost(&out, VIDEO), dropped);
    assert!(out.contains(&IngestOutput::KeyframeRequest { ssrc: VIDEO }));

    let stats = ingest.finish().await.stream(VIDEO).unwrap().stats();
    assert_eq!(stats.lost, dropped, "{stats}");
    assert!(stats.reordered >= swaps as u64, "{stats}");
    assert!(stats.keyframe_requests >= 1);
    assert!(stats.frames_dropped > 0);
}
