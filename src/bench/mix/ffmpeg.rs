//! The ffmpeg side: an SDP describing every input stream, a filter graph that lays
//! the participants out exactly as recbox's compositor does (`scale` + `pad` into
//! the same tiles, `xstack`) and mixes the audio (`amix` without normalisation and a
//! limiter at -1 dBFS, as recbox's mixer), the encoder settings closest to recbox's,
//! and the clock on ffmpeg's output: MPEG-TS on a pipe, each video frame stamped
//! when its last byte arrives.

use super::inputs::Inputs;
use crate::ingest::MediaKind;
use crate::mixer::engine::EngineConfig;
use crate::mixer::layout::{self, fit, LayoutError, Rect};
use crate::synth::PatternCodec;

/// What the ffmpeg side is asked to do, besides the inputs.
#[derive(Debug, Clone)]
pub struct FfmpegSettings {
    /// libx264 preset, e.g. `veryfast`.
    pub preset: String,
    /// Threads of every decoder, the filter graph and the encoder.
    pub threads: u16,
    pub gop_frames: u32,
}

/// The SDP of the inputs' streams in their order, stream `i` on `base_port + 2i`.
pub(crate) fn sdp(inputs: &Inputs, host: &str, base_port: u16) -> String {
    let mut s = format!(
        "v=0\r\no=- 0 0 IN IP4 {host}\r\ns=recbox mixer benchmark\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    );
    for (i, stream) in inputs.streams.iter().enumerate() {
        let port = base_port + 2 * i as u16;
        let pt = stream.payload_type;
        match (stream.kind, stream.codec) {
            (MediaKind::Video, PatternCodec::Vp8) => s.push_str(&format!(
                "m=video {port} RTP/AVP {pt}\r\na=rtpmap:{pt} VP8/90000\r\n"
            )),
            (MediaKind::Video, PatternCodec::Vp9) => s.push_str(&format!(
                "m=video {port} RTP/AVP {pt}\r\na=rtpmap:{pt} VP9/90000\r\n"
            )),
            (MediaKind::Video, PatternCodec::H264) => s.push_str(&format!(
                "m=video {port} RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1\r\n"
            )),
            // RFC 7587: always opus/48000/2, whatever the stream carries.
            (MediaKind::Audio, _) => s.push_str(&format!(
                "m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} opus/48000/2\r\n"
            )),
        }
    }
    s
}

/// Where participant `i`'s picture goes: its tile and, inside it, the fitted rectangle.
pub(crate) fn placements(
    participants: usize,
    source: (usize, usize),
    output: (usize, usize),
) -> Result<Vec<(Rect, Rect)>, LayoutError> {
    Ok(layout::tiles(participants, output.0, output.1)?
        .into_iter()
        .map(|tile| (tile, fit(source.0, source.1, tile)))
        .collect())
}

/// The `-filter_complex` graph: video `[v]` and audio `[a]` from the SDP's streams
/// (video `k` and audio `k` are participant `k + 1`'s).
pub(crate) fn filter_graph(
    participants: usize,
    source: (usize, usize),
    engine: &EngineConfig,
) -> Result<String, LayoutError> {
    let output = (usize::from(engine.width), usize::from(engine.height));
    let places = placements(participants, source, output)?;
    let mut parts = Vec::new();
    for (k, (tile, target)) in places.iter().enumerate() {
        let mut chain = Vec::new();
        if (target.width, target.height) != source {
            // recbox averages areas when shrinking and interpolates when enlarging.
            let flags = if target.width < source.0 {
                "area"
            } else {
                "bilinear"
            };
            chain.push(format!(
                "scale={}:{}:flags={flags}",
                target.width, target.height
            ));
        }
        if target != tile {
            chain.push(format!(
                "pad={}:{}:{}:{}:color=black",
                tile.width,
                tile.height,
                target.x - tile.x,
                target.y - tile.y
            ));
        }
        if chain.is_empty() {
            chain.push("null".into());
        }
        parts.push(format!("[0:v:{k}]{}[v{k}]", chain.join(",")));
    }
    let labels: String = (0..participants).map(|k| format!("[v{k}]")).collect();
    let stacked_w = places.iter().map(|(t, _)| t.right()).max().unwrap_or(0);
    let stacked_h = places.iter().map(|(t, _)| t.bottom()).max().unwrap_or(0);
    let mut video = if participants > 1 {
        let positions: Vec<String> = places
            .iter()
            .map(|(t, _)| format!("{}_{}", t.x, t.y))
            .collect();
        vec![format!(
            "{labels}xstack=inputs={participants}:layout={}:fill=black",
            positions.join("|")
        )]
    } else {
        vec![format!(
            "{labels}pad={stacked_w}:{stacked_h}:{}:{}:color=black",
            places[0].0.x, places[0].0.y
        )]
    };
    if (stacked_w, stacked_h) != output {
        video.push(format!("pad={}:{}:0:0:color=black", output.0, output.1));
    }
    // A steady output rate whatever the inputs do, as recbox's frame clock.
    video.push(format!("fps={},format=yuv420p[v]", engine.fps));
    parts.push(video.join(","));
    let audio: String = (0..participants).map(|k| format!("[0:a:{k}]")).collect();
    parts.push(format!(
        "{audio}amix=inputs={participants}:normalize=0,\
         alimiter=limit={:.4}:level=0,aformat=sample_rates=48000:channel_layouts=stereo[a]",
        10f64.powf(-1.0 / 20.0)
    ));
    Ok(parts.join(";"))
}

/// The encoder options: libx264 and libopus set as close to recbox's encoders as
/// they go (constrained baseline, same bitrate and GOP, no B frames, no look-ahead).
fn encoder_args(engine: &EngineConfig, settings: &FfmpegSettings) -> Vec<String> {
    let kbps = |bps: u32| format!("{}k", bps / 1000);
    let video_rate = kbps(engine.video_bitrate_bps);
    [
        "-c:v",
        "libx264",
        "-preset",
        &settings.preset,
        "-tune",
        "zerolatency",
        "-profile:v",
        "baseline",
        "-b:v",
        &video_rate,
        "-maxrate",
        &video_rate,
        "-bufsize",
        &video_rate,
        "-g",
        &settings.gop_frames.to_string(),
        "-keyint_min",
        &settings.gop_frames.to_string(),
        "-sc_threshold",
        "0",
        "-bf",
        "0",
        "-threads",
        &settings.threads.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(audio_encoder_args(engine))
    .collect()
}

/// The audio encoder options, as recbox encodes its mix (the box has no audio
/// encoder in hardware).
fn audio_encoder_args(engine: &EngineConfig) -> Vec<String> {
    [
        "-c:a".to_owned(),
        "libopus".to_owned(),
        "-b:a".to_owned(),
        format!("{}k", engine.audio_bitrate_bps / 1000),
        "-application".to_owned(),
        "audio".to_owned(),
        "-frame_duration".to_owned(),
        "20".to_owned(),
    ]
    .into()
}

/// How often `-progress` reports the frames out, in the null-sink form.
pub(crate) const PROGRESS_PERIOD_S: f64 = 0.1;

/// The command line for the form without a video encoder: the same inputs and
/// graph, the composited pictures handed raw (`wrapped_avframe`, no copy) to the
/// null muxer, the audio still encoded; the frames out are reported on stdout
/// (`-progress`, see [`ProgressClock`]).
pub(crate) fn null_args(
    sdp_path: &str,
    graph: &str,
    engine: &EngineConfig,
    settings: &FfmpegSettings,
) -> Vec<String> {
    let mut args = input_args(sdp_path, graph, settings);
    args.extend(["-c:v", "wrapped_avframe"].map(String::from));
    args.extend(audio_encoder_args(engine));
    args.extend(
        [
            "-progress",
            "pipe:1",
            "-stats_period",
            &PROGRESS_PERIOD_S.to_string(),
            "-f",
            "null",
            "-",
        ]
        .map(String::from),
    );
    args
}

/// Everything up to the output options: threads, the SDP input, the graph, the maps.
fn input_args(sdp_path: &str, graph: &str, settings: &FfmpegSettings) -> Vec<String> {
    let threads = settings.threads.to_string();
    [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-filter_complex_threads",
        &threads,
        "-protocol_whitelist",
        "file,udp,rtp",
        "-threads",
        &threads,
        "-i",
        sdp_path,
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-map",
        "[a]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Follows ffmpeg's `-progress` output (`key=value` lines) and stamps each report
/// of the video frames out so far.
#[derive(Debug, Default)]
pub(crate) struct ProgressClock {
    partial: String,
    /// (instant, frames out by then), in the order reported.
    reports: Vec<(u64, u64)>,
}

impl ProgressClock {
    pub(crate) fn push(&mut self, data: &[u8], now_ns: u64) {
        self.partial.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if let Some(frames) = line
                .trim()
                .strip_prefix("frame=")
                .and_then(|n| n.trim().parse().ok())
            {
                self.reports.push((now_ns, frames));
            }
        }
    }

    /// By video frame: an instant it was out by, the frames of each report spread
    /// evenly since the report before (a report comes every [`PROGRESS_PERIOD_S`]).
    pub(crate) fn finish(self) -> Vec<u64> {
        let mut arrivals = Vec::new();
        let (mut last_ns, mut last_frames) = match self.reports.first() {
            Some(&(ns, frames)) => {
                arrivals.extend(std::iter::repeat_n(ns, frames as usize));
                (ns, frames)
            }
            None => return arrivals,
        };
        for &(ns, frames) in &self.reports[1..] {
            let new = frames.saturating_sub(last_frames);
            for k in 1..=new {
                arrivals.push(last_ns + (ns - last_ns) * k / new);
            }
            (last_ns, last_frames) = (ns, frames.max(last_frames));
        }
        arrivals
    }
}

/// The whole command line after `ffmpeg`: read `sdp_path`, write the MP4 to stdout.
pub(crate) fn args(
    sdp_path: &str,
    graph: &str,
    engine: &EngineConfig,
    settings: &FfmpegSettings,
) -> Vec<String> {
    let mut args = input_args(sdp_path, graph, settings);
    args.extend(encoder_args(engine, settings));
    args.extend(
        [
            // MPEG-TS writes each video frame out whole as soon as it is muxed.
            "-f",
            "mpegts",
            "-mpegts_start_pid",
            "0x100",
            "-flush_packets",
            "1",
            "pipe:1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args
}

/// MPEG-TS packet size.
const TS_PACKET: usize = 188;
/// PID of the video stream: the first elementary stream from `-mpegts_start_pid`.
const VIDEO_PID: u16 = 0x100;

/// Follows an MPEG-TS as it arrives and stamps each video frame (one PES each) with
/// the time its last byte arrived.
#[derive(Debug, Default)]
pub(crate) struct TsClock {
    buf: Vec<u8>,
    /// The frame being received: when its latest packet came.
    open: Option<u64>,
    /// By video frame: when it had arrived whole.
    video_arrivals: Vec<u64>,
    /// Something that is not MPEG-TS was seen; nothing more is read.
    pub(crate) error: Option<String>,
}

impl TsClock {
    pub(crate) fn push(&mut self, data: &[u8], now_ns: u64) {
        if self.error.is_some() {
            return;
        }
        self.buf.extend_from_slice(data);
        let whole = self.buf.len() / TS_PACKET * TS_PACKET;
        for packet in self.buf[..whole].chunks_exact(TS_PACKET) {
            if packet[0] != 0x47 {
                self.error = Some("lost MPEG-TS sync".into());
                return;
            }
            let pid = u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2]);
            if pid != VIDEO_PID {
                continue;
            }
            // A payload unit start begins the next frame's PES: the open one is whole.
            if packet[1] & 0x40 != 0 {
                self.video_arrivals.extend(self.open.take());
            }
            self.open = Some(now_ns);
        }
        self.buf.drain(..whole);
    }

    /// By video frame: when it had arrived whole (the last one at the stream's end).
    pub(crate) fn finish(mut self) -> Vec<u64> {
        self.video_arrivals.extend(self.open.take());
        self.video_arrivals
    }
}

/// Width, height, frame rate and frame count of the first video stream, from the
/// `ffprobe -show_entries stream=width,height,r_frame_rate,nb_read_packets -of
/// csv=p=0` output.
pub(crate) fn parse_probe(output: &str) -> Option<(u32, u32, f64, u64)> {
    // MPEG-TS lists the stream once more under its program.
    let line = output.lines().find(|l| !l.trim().is_empty())?;
    let mut f = line.trim().split(',');
    let width = f.next()?.parse().ok()?;
    let height = f.next()?.parse().ok()?;
    let rate = f.next()?;
    let rate = match rate.split_once('/') {
        Some((n, d)) => n.parse::<f64>().ok()? / d.parse::<f64>().ok()?,
        None => rate.parse().ok()?,
    };
    let frames = f.next()?.parse().ok()?;
    Some((width, height, rate, frames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::sim::CodecMix;
    use crate::synth::PatternSpec;
    use std::time::Duration;

    fn inputs(n: u8) -> Inputs {
        let video = PatternSpec {
            width: 64,
            height: 48,
            ..PatternSpec::default()
        };
        let vp8 = CodecMix::default()
            .with(&"2".parse().unwrap(), PatternCodec::Vp8)
            .unwrap();
        Inputs::record(n, Duration::from_millis(100), video, vp8, 1).unwrap()
    }

    #[test]
    fn sdp_lists_every_stream_on_its_port() {
        let sdp = sdp(&inputs(2), "127.0.0.1", 40000);
        let media: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            media,
            [
                "m=video 40000 RTP/AVP 96",
                "m=audio 40002 RTP/AVP 111",
                "m=video 40004 RTP/AVP 96",
                "m=audio 40006 RTP/AVP 111"
            ]
        );
        assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"));
        // Participant 1 sends H.264, participant 2 VP8.
        assert_eq!(sdp.matches("a=fmtp:96 packetization-mode=1\r\n").count(), 1);
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"));
        assert!(sdp.ends_with("m=video 40004 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio 40006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"));
    }

    #[test]
    fn the_graph_places_participants_in_recbox_tiles() {
        let engine = EngineConfig::default();
        let four = filter_graph(4, (320, 240), &engine).unwrap();
        // 320x240 enlarged to 480x360 and pillarboxed in a 640x360 tile.
        assert!(
            four.starts_with(
                "[0:v:0]scale=480:360:flags=bilinear,pad=640:360:80:0:color=black[v0];"
            ),
            "{four}"
        );
        assert!(four.contains("xstack=inputs=4:layout=0_0|640_0|0_360|640_360:fill=black,fps=30"));
        assert!(four.contains(
            "[0:a:0][0:a:1][0:a:2][0:a:3]amix=inputs=4:normalize=0,alimiter=limit=0.8913"
        ));
        // 3x3 tiles of 426x240 leave 2 columns: padded to the full output.
        let nine = filter_graph(9, (320, 240), &engine).unwrap();
        assert!(
            nine.starts_with("[0:v:0]pad=426:240:52:0:color=black[v0];"),
            "{nine}"
        );
        assert!(
            nine.contains(":fill=black,pad=1280:720:0:0:color=black,fps=30"),
            "{nine}"
        );
        let one = filter_graph(1, (640, 480), &engine).unwrap();
        assert!(
            one.starts_with("[0:v:0]scale=960:720:flags=bilinear,pad=1280:720:160:0"),
            "{one}"
        );
        assert!(filter_graph(17, (320, 240), &engine).is_err());
    }

    #[test]
    fn encoder_settings_follow_recbox() {
        let engine = EngineConfig::default();
        let settings = FfmpegSettings {
            preset: "veryfast".into(),
            threads: 1,
            gop_frames: 60,
        };
        let a = args("in.sdp", "GRAPH", &engine, &settings).join(" ");
        for want in [
            "-threads 1 -i in.sdp -filter_complex GRAPH",
            "-c:v libx264 -preset veryfast -tune zerolatency -profile:v baseline -b:v 2500k",
            "-g 60 -keyint_min 60",
            "-c:a libopus -b:a 96k",
            "-f mpegts -mpegts_start_pid 0x100",
        ] {
            assert!(a.contains(want), "{want} in {a}");
        }
        assert!(a.ends_with("pipe:1"));
    }

    /// A TS packet of `pid`, starting a payload unit or not.
    fn ts(pid: u16, start: bool) -> Vec<u8> {
        let mut p = vec![0xff; TS_PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 | if start { 0x40 } else { 0 };
        p[2] = pid as u8;
        p[3] = 0x10;
        p
    }

    #[test]
    fn frames_are_stamped_with_their_last_packet() {
        let audio = 0x101;
        let mut clock = TsClock::default();
        // Frame 0: two packets in two reads; audio between; frame 1 starts later.
        clock.push(&ts(VIDEO_PID, true), 1);
        clock.push(&[ts(VIDEO_PID, false), ts(audio, true)].concat(), 2);
        let frame1 = [ts(VIDEO_PID, true), ts(VIDEO_PID, false)].concat();
        // Split mid-packet: the packet counts when it is whole.
        clock.push(&frame1[..200], 3);
        clock.push(&frame1[200..], 4);
        clock.push(&ts(audio, false), 5);
        assert_eq!(clock.error, None);
        assert_eq!(clock.finish(), [2, 4]);
        let mut junk = TsClock::default();
        junk.push(&[0u8; TS_PACKET], 0);
        assert!(junk.error.is_some());
        assert_eq!(TsClock::default().finish(), Vec::<u64>::new());
    }

    #[test]
    fn null_sink_and_progress() {
        let engine = EngineConfig::default();
        let settings = FfmpegSettings {
            preset: "veryfast".into(),
            threads: 1,
            gop_frames: 60,
        };
        let a = null_args("in.sdp", "GRAPH", &engine, &settings).join(" ");
        assert!(a.contains("-i in.sdp -filter_complex GRAPH -map [v] -map [a] -c:v wrapped_avframe -c:a libopus -b:a 96k"), "{a}");
        assert!(
            a.ends_with("-progress pipe:1 -stats_period 0.1 -f null -"),
            "{a}"
        );
        assert!(!a.contains("libx264"), "{a}");

        let mut clock = ProgressClock::default();
        clock.push(b"frame=2\nfps=0.0\nprogress=continue\nfra", 100);
        // A report split between reads counts when its line is whole.
        clock.push(b"me=", 150);
        clock.push(b"6\nprogress=continue\n", 200);
        clock.push(b"frame=6\nframe=7\n", 300);
        assert_eq!(clock.finish(), [100, 100, 125, 150, 175, 200, 300]);
        assert_eq!(ProgressClock::default().finish(), Vec::<u64>::new());
    }

    #[test]
    fn probe_lines() {
        assert_eq!(
            parse_probe("1280,720,30/1,300\n"),
            Some((1280, 720, 30.0, 300))
        );
        assert_eq!(
            parse_probe("1280,720,30000/1001,9").unwrap().2,
            30000.0 / 1001.0
        );
        assert_eq!(
            parse_probe("\n1280,720,30/1,238\n\n1280,720,30/1,238\n"),
            Some((1280, 720, 30.0, 238))
        );
        assert_eq!(parse_probe("1280,720"), None);
        assert_eq!(parse_probe(""), None);
    }
}
