//! A real peer: ffmpeg encodes H.264 (libx264) and Opus (libopus) to files, then sends
//! those same encoded streams as RTP to the real UDP ingest. The access units that
//! come out are the ones in the file (split by the project's Annex B parser), and
//! they decode; every Opus packet arrives and decodes.

mod common;

use std::time::Duration;

use common::rtp::{self, frames, Ingest};
use common::{access_units, ffmpeg};
use recbox::ingest::MediaKind;
use recbox::media::h264::{nal_type, nal_units, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use ropus::{Channels, DecodeMode, Decoder};

const VIDEO: u32 = 0x1111_0001;
const AUDIO: u32 = 0x1111_0002;
const VIDEO_FRAMES: usize = 30;
const AUDIO_PACKETS: usize = 50;

fn without_parameter_sets<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    nals.into_iter()
        .filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS | NAL_AUD))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_rtp_is_reassembled_as_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let h264 = dir.path().join("video.h264");
    let opus = dir.path().join("audio.ogg");
    // Baseline profile: what the openh264 decoder (and the box's decoders) handle.
    ffmpeg(&format!(
        "-f lavfi -i testsrc=size=320x240:rate=30 -frames:v {VIDEO_FRAMES} -c:v libx264 \
         -profile:v baseline -pix_fmt yuv420p -g 15 -bf 0 -f h264 {}",
        h264.display()
    ));
    ffmpeg(&format!(
        "-f lavfi -i sine=frequency=440:sample_rate=48000 -frames:a {AUDIO_PACKETS} \
         -c:a libopus -f ogg {}",
        opus.display()
    ));
    let audio_packets = common::packet_counts(&opus)[0] as usize;
    let stream = std::fs::read(&h264).unwrap();
    let encoded = access_units(&stream);
    assert_eq!(encoded.len(), VIDEO_FRAMES);

    let mut ingest = rtp::bind().await;
    let delay = Duration::from_millis(200);
    for (ssrc, kind, pt) in [
        (VIDEO, MediaKind::Video, 96),
        (AUDIO, MediaKind::Audio, 111),
    ] {
        ingest
            .demux_mut()
            .add_stream(rtp::stream(ssrc, kind, pt, delay))
            .unwrap();
    }
    let mut ingest = Ingest::run(ingest);
    // RTCP (sender reports) multiplexed on the RTP port, as the ingest expects.
    let url = format!(
        "rtp://127.0.0.1:{0}?rtcpport={0}&pkt_size=1200",
        ingest.addr.port()
    );
    let send = format!(
        "-re -framerate 30 -i {h264} -re -i {opus} \
         -map 0:v -c copy -f rtp -ssrc {VIDEO} -payload_type 96 {url} \
         -map 1:a -c copy -f rtp -ssrc {AUDIO} -payload_type 111 {url}",
        h264 = h264.display(),
        opus = opus.display(),
    );
    let sender = tokio::task::spawn_blocking(move || ffmpeg(&send));

    let mut out = Vec::new();
    ingest
        .collect_until(&mut out, |o| {
            frames(o, VIDEO).len() == VIDEO_FRAMES && frames(o, AUDIO).len() == audio_packets
        })
        .await;
    sender.await.unwrap();

    let video = frames(&out, VIDEO);
    let sps_pps: Vec<&[u8]> = encoded[0]
        .iter()
        .copied()
        .filter(|n| matches!(nal_type(n), NAL_SPS | NAL_PPS))
        .collect();
    assert_eq!(sps_pps.len(), 2);
    for (i, (got, sent)) in video.iter().zip(&encoded).enumerate() {
        let got_nals: Vec<&[u8]> = nal_units(&got.data).collect();
        assert_eq!(
            without_parameter_sets(got_nals.iter().copied()),
            without_parameter_sets(sent.iter().copied()),
            "access unit {i} differs"
        );
        let idr = sent.iter().any(|n| nal_type(n) == NAL_IDR);
        assert_eq!(got.keyframe, idr, "access unit {i}");
        if idr {
            // Every keyframe can start decoding: the parameter sets are in it.
            for set in &sps_pps {
                assert!(got_nals.contains(set), "keyframe {i} lacks a parameter set");
            }
        }
    }
    assert_eq!(video.iter().filter(|f| f.keyframe).count(), 2);
    assert_eq!(
        rtp::decode(video.iter().map(|f| f.data.as_slice())).len(),
        VIDEO_FRAMES
    );

    let mut decoder = Decoder::new(48_000, Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 5760];
    for f in frames(&out, AUDIO) {
        let n = decoder
            .decode(&f.data, &mut pcm, DecodeMode::Normal)
            .unwrap();
        assert_eq!(n, 960, "20 ms Opus packets");
    }

    let demux = ingest.finish().await;
    for ssrc in [VIDEO, AUDIO] {
        let stats = demux.stream(ssrc).unwrap().stats();
        assert_eq!(stats.lost + stats.malformed + stats.late, 0, "{stats}");
    }
    assert!(demux.sync().wallclock_us(VIDEO, video[0].ts).is_some());
}
