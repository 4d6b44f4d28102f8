//! `recbox bench mix`: the mixer side by side with ffmpeg in one run.
//!
//! The same N participants (recorded once: the synthetic H.264 test pattern and Opus
//! tones, cut into RTP packets) are replayed over loopback UDP at real-time pace to
//! each side in turn, each side a child process of its own:
//!
//! - recbox: `recbox bench-mix-side`, the mixer service and a real recorder over a
//!   loopback media link, writing the recording to disk;
//! - ffmpeg: one SDP input of all streams, `scale`/`pad` into recbox's tiles,
//!   `xstack`, `amix`, libx264 and libopus, MPEG-TS on a pipe.
//!
//! Both are measured alike: CPU time from `/proc/PID/stat` over the replay after a
//! warm-up, divided by the seconds of output that came out meanwhile; peak RSS
//! from `wait4`; and latency on the pictures: participant 1's video carries a
//! changing number (see [`marker`]), and the output frame that first shows each
//! number is matched with the instant that number's first RTP packet was sent.
//! "Out" is when the frame reaches the recorder over the media link (recbox) or
//! comes out of ffmpeg's pipe; recbox also gives when the fragment holding it was
//! durable (fsynced, its index record written), which waits for the end of its
//! group of pictures.

pub mod ffmpeg;
pub mod inputs;
pub mod latency;
pub mod marker;
pub mod measure;
pub mod recbox_side;
pub mod replay;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use thiserror::Error;

use self::ffmpeg::{FfmpegSettings, ProgressClock, TsClock};
use self::inputs::{InputError, Inputs};
use self::marker::{MarkerLayout, MarkerReader};
use self::measure::{cpu_time, monotonic_ns, threads, wait_child, Exit};
use self::recbox_side::{engine_config, parse_side_line, parse_tap, skipped_frames, SideLine};
use self::replay::{replay, Destination, ReplayLog};
use super::latency::Percentiles;
use crate::encoder::EncoderKind;
use crate::mixer::engine::EngineConfig;
use crate::recorder::index::{IndexHeader, IndexRecord, HEADER_SIZE, RECORD_SIZE};
use crate::recorder::layout::INDEX_FILE;
use crate::sfu::sim::CodecMix;
use crate::synth::{PatternCodec, PatternSpec};

/// How long a side may take to be ready for RTP, and to stop.
const PATIENCE: Duration = Duration::from_secs(60);
/// After the replay, for what is still in flight to come out before the stop.
const DRAIN: Duration = Duration::from_millis(1500);
/// How often the recording's index is looked at for new durable fragments.
const INDEX_POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Error)]
pub enum MixBenchError {
    #[error("{0} not found: the mix benchmark needs ffmpeg and ffprobe (Debian: apt-get install ffmpeg)")]
    NoFfmpeg(&'static str),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error("{side}: {what} (its log: {log})")]
    Side {
        side: &'static str,
        what: String,
        log: PathBuf,
    },
    #[error("layout: {0}")]
    Layout(#[from] crate::mixer::layout::LayoutError),
    #[error("--seconds must be at least 1 s more than the warm-up of {warmup:?}, got {seconds}")]
    TooShort { seconds: f64, warmup: Duration },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MixBenchError {
    let what = what.into();
    move |e| MixBenchError::Io(what, e)
}

#[derive(Debug, Clone)]
pub struct MixBenchConfig {
    pub participants: Vec<u8>,
    /// Length of the replay, warm-up included.
    pub seconds: f64,
    /// Not measured: decoders waiting for a keyframe, ffmpeg probing its inputs.
    pub warmup: Duration,
    /// Where inputs, recordings and logs go.
    pub dir: PathBuf,
    pub ffmpeg: FfmpegSettings,
    /// Runs of each side per participant count, alternating; the run with the
    /// median CPU of each side goes in the table (a shared machine's speed drifts).
    pub rounds: usize,
    /// The output video's encoder: `Software` (openh264 against libx264), or `Null`
    /// (no encoding: recbox's null encoder against ffmpeg's raw video to a null
    /// sink, as the box pays for everything but the hardware encoder; no latency).
    pub encoder: EncoderKind,
    /// The participants' video codecs (the same numbers in every room size).
    pub codecs: CodecMix,
}

/// One side's run, measured.
struct SideRun {
    name: &'static str,
    /// The encoded output, when the side writes one.
    output: Option<PathBuf>,
    /// By output video frame: when it reached the measuring point.
    arrived_ns: Vec<u64>,
    /// recbox only, by output video frame: when its fragment was durable.
    durable_ns: Option<Vec<Option<u64>>>,
    /// recbox only: output frames skipped because it fell behind.
    skipped: Option<u64>,
    replay: ReplayLog,
    window: CpuWindow,
    exit: Exit,
    log: PathBuf,
}

#[derive(Debug, Clone, Copy, Default)]
struct CpuWindow {
    from_ns: u64,
    to_ns: u64,
    cpu: Duration,
    threads: Option<u64>,
}

/// What one side's figures are.
struct Figures {
    cpu_per_output_s: f64,
    peak_rss_mb: f64,
    latency: Option<Percentiles<f64>>,
    durable: Option<Percentiles<f64>>,
    skipped: Option<u64>,
    /// Output frames decoded, and stamped on their way out.
    decoded: usize,
    stamped: usize,
    probe: String,
    kbps: f64,
    threads: Option<u64>,
}

pub fn run(out: &mut dyn Write, config: &MixBenchConfig) -> Result<(), MixBenchError> {
    for tool in ["ffmpeg", "ffprobe"] {
        let found = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(MixBenchError::NoFfmpeg(tool));
        }
    }
    if config.seconds < config.warmup.as_secs_f64() + 1.0 {
        return Err(MixBenchError::TooShort {
            seconds: config.seconds,
            warmup: config.warmup,
        });
    }
    let duration = Duration::from_secs_f64(config.seconds);
    let engine = engine_config(config.encoder.clone());
    let video = PatternSpec::default();
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}")
            .and_then(|()| out.flush())
            .map_err(io("stdout"))
    };
    w(
        out,
        format!(
            "== mixer: recbox vs ffmpeg on the same RTP inputs (files under {}) ==",
            config.dir.display()
        ),
    )?;
    w(out, settings_text(&engine, &video, config, duration))?;
    let mut rows = Vec::new();
    for (round, &n) in config.participants.iter().enumerate() {
        w(out, format!("\n-- {n} participants --"))?;
        let inputs = Inputs::record(n, duration, video, config.codecs, u64::from(n))?;
        // Alternate which side goes first, round after round, so a drift in the
        // machine's speed favours neither.
        let mut sides: [Vec<(Figures, SideRun)>; 2] = [Vec::new(), Vec::new()];
        for r in 0..config.rounds.max(1) {
            let dir = config
                .dir
                .join(format!("{n}p"))
                .join(format!("round{}", r + 1));
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            for side in 0..2 {
                let recbox_now = (side + round + r) % 2 == 0;
                let run = if recbox_now {
                    run_recbox(&inputs, &dir, config)?
                } else {
                    run_ffmpeg(&inputs, &dir, &engine, config)?
                };
                let f = figures_of(&run, &inputs, &engine, config)?;
                sides[usize::from(!recbox_now)].push((f, run));
            }
        }
        let mut figures = Vec::new();
        for mut runs in sides {
            let cpus: Vec<String> = runs
                .iter()
                .map(|(f, _)| format!("{:.3}", f.cpu_per_output_s))
                .collect();
            runs.sort_by(|a, b| a.0.cpu_per_output_s.total_cmp(&b.0.cpu_per_output_s));
            let (f, run) = runs.swap_remove(runs.len() / 2);
            w(out, detail_line(&run, &f))?;
            w(
                out,
                format!(
                    "  CPU s/s by round: {} (the median's run above)",
                    cpus.join(" ")
                ),
            )?;
            figures.push(f);
        }
        rows.push((n, figures));
    }
    let target = match config.encoder {
        EncoderKind::Null => "0.7",
        _ => "1",
    };
    w(out, format!("\n{}", table(&rows, target)))?;
    Ok(())
}

/// The inputs' video codecs: `H.264 (openh264)`, or which participants send VP8.
fn codecs_text(codecs: &CodecMix) -> String {
    let vp8: Vec<String> = (1..=16)
        .filter(|&n| codecs.of(n) == PatternCodec::Vp8)
        .map(|n| n.to_string())
        .collect();
    match vp8.as_slice() {
        [] => "H.264 (openh264)".to_owned(),
        [one] => format!("H.264 (openh264; VP8 by libvpx for participant {one})"),
        _ => format!(
            "H.264 (openh264; VP8 by libvpx for participants {})",
            vp8.join(",")
        ),
    }
}

fn settings_text(
    engine: &EngineConfig,
    video: &PatternSpec,
    config: &MixBenchConfig,
    duration: Duration,
) -> String {
    let gop = config.ffmpeg.gop_frames;
    if config.encoder == EncoderKind::Null {
        return format!(
            "inputs: per participant {} {}x{} @ {} fps (keyframe every {} frames) + Opus 20 ms mono, \
             replayed as RTP over loopback UDP in real time for {:.0} s (first {:.0} s not measured)\n\
             output (both): {}x{} @ {} fps, grid layout, NO video encoding (the box's encoder is hardware), Opus stereo {} kbit/s\n\
             recbox: mixer service + recorder in one process (`recbox bench-mix-side --encoder none`): the composited \
             pictures go to the null encoder (a copy of a stored black access unit each), recorded as fragmented MP4, fsync per fragment\n\
             ffmpeg: {}, one SDP input, scale+pad+xstack, amix normalize=0 + alimiter -1 dBFS, libopus {}k, \
             raw video (wrapped_avframe) to the null muxer; -threads {} for decoders, -filter_complex_threads {}\n\
             measured per side: CPU s of the process per s of output while replaying (after the warm-up), peak RSS (wait4); \
             frames out: received by the recorder (recbox), ffmpeg's -progress reports (every {} s); no latency (no pictures to read)",
            codecs_text(&config.codecs),
            video.width,
            video.height,
            video.fps,
            video.gop,
            duration.as_secs_f64(),
            config.warmup.as_secs_f64(),
            engine.width,
            engine.height,
            engine.fps,
            engine.audio_bitrate_bps / 1000,
            ffmpeg_version(),
            engine.audio_bitrate_bps / 1000,
            config.ffmpeg.threads,
            config.ffmpeg.threads,
            ffmpeg::PROGRESS_PERIOD_S,
        );
    }
    format!(
        "inputs: per participant {} {}x{} @ {} fps (keyframe every {} frames) + Opus 20 ms mono, \
         replayed as RTP over loopback UDP in real time for {:.0} s (first {:.0} s not measured)\n\
         output (both): {}x{} @ {} fps, grid layout, H.264 {} kbit/s with a keyframe every {gop} frames, Opus stereo {} kbit/s\n\
         recbox: mixer service + recorder in one process (`recbox bench-mix-side`), decoding by libavcodec \
         (one thread a participant's decoder), encoding by openh264 (constrained baseline, \
         its default threading: one slice, one thread) and libopus (through libavcodec), 100 ms jitter buffer + 80 ms mix delay, fragmented MP4 on disk, fsync per fragment\n\
         ffmpeg: {}, one SDP input, scale+pad+xstack, amix normalize=0 + alimiter -1 dBFS, \
         libx264 -preset {} -tune zerolatency -profile:v baseline -b:v/-maxrate/-bufsize {}k -g {gop} -bf 0, \
         libopus {}k; -threads {} for decoders and encoder, -filter_complex_threads {}; \
         MPEG-TS to a pipe, flushed per packet\n\
         measured per side: CPU s of the process per s of output while replaying (after the warm-up), \
         peak RSS (wait4), latency from a marker's first RTP packet sent to the first output frame showing it \
         (recbox: received by the recorder over the link; durable: its fragment fsynced and indexed; ffmpeg: out of its pipe)",
        codecs_text(&config.codecs),
        video.width,
        video.height,
        video.fps,
        video.gop,
        duration.as_secs_f64(),
        config.warmup.as_secs_f64(),
        engine.width,
        engine.height,
        engine.fps,
        engine.video_bitrate_bps / 1000,
        engine.audio_bitrate_bps / 1000,
        ffmpeg_version(),
        config.ffmpeg.preset,
        engine.video_bitrate_bps / 1000,
        engine.audio_bitrate_bps / 1000,
        config.ffmpeg.threads,
        config.ffmpeg.threads,
    )
}

fn ffmpeg_version() -> String {
    Command::new("ffmpeg")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|v| format!("ffmpeg {v}"))
        })
        .unwrap_or_else(|| "ffmpeg".into())
}

/// Replays the inputs to a side whose process is `pid`, taking its CPU time at the
/// end of the warm-up and at the end of the replay.
fn measured_replay(
    pid: u32,
    inputs: &Inputs,
    to: Destination,
    warmup: Duration,
) -> Result<(ReplayLog, CpuWindow), MixBenchError> {
    let mut marks = Vec::new();
    let log = replay(inputs, to, &[warmup, inputs.duration], &mut |_| {
        marks.push((monotonic_ns(), cpu_time(pid).ok(), threads(pid)))
    })
    .map_err(io("replaying the inputs"))?;
    let window = match marks[..] {
        [(from_ns, Some(a), _), (to_ns, Some(b), threads)] => CpuWindow {
            from_ns,
            to_ns,
            cpu: b.saturating_sub(a),
            threads,
        },
        _ => CpuWindow::default(),
    };
    Ok((log, window))
}

fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child, MixBenchError> {
    let file = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    command
        .stderr(file)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {:?}", command.get_program())))
}

fn side_error(side: &'static str, what: impl Into<String>, log: &Path) -> MixBenchError {
    MixBenchError::Side {
        side,
        what: what.into(),
        log: log.to_path_buf(),
    }
}

/// Waits for child `pid` to end, for `patience` at most, then kills it.
fn reap(pid: u32, patience: Duration) -> std::io::Result<Exit> {
    let deadline = Instant::now() + patience;
    while !measure::has_exited(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !measure::has_exited(pid) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    wait_child(pid)
}

fn run_recbox(
    inputs: &Inputs,
    dir: &Path,
    config: &MixBenchConfig,
) -> Result<SideRun, MixBenchError> {
    const SIDE: &str = "recbox";
    let roster = dir.join("roster.json");
    let json = serde_json::to_string_pretty(&inputs.roster()).expect("a roster serializes");
    std::fs::write(&roster, json).map_err(io(format!("writing {}", roster.display())))?;
    let storage = dir.join("recbox");
    let _ = std::fs::remove_dir_all(&storage);
    let (tap, log) = (dir.join("recbox-tap.txt"), dir.join("recbox.log"));
    let exe = std::env::current_exe().map_err(io("finding the recbox binary"))?;
    let mut child = spawn_logged(
        Command::new(exe)
            .arg("bench-mix-side")
            .arg("--roster")
            .arg(&roster)
            .arg("--storage")
            .arg(&storage)
            .arg("--tap")
            .arg(&tap)
            .arg("--encoder")
            .arg(config.encoder.to_string())
            .stdin(Stdio::piped()),
        &log,
    )?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, lines) = mpsc::channel();
    let (dir_tx, dir_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match parse_side_line(&line) {
                Some(SideLine::Recording(dir)) => {
                    let _ = dir_tx.send(dir);
                }
                Some(other) => {
                    let _ = lines_tx.send(other);
                }
                None => {}
            }
        }
    });
    let port = match lines.recv_timeout(PATIENCE) {
        Ok(SideLine::Ready(port)) => port,
        _ => {
            drop(stdin);
            let _ = reap(pid, Duration::from_secs(5));
            return Err(side_error(SIDE, "did not get ready", &log));
        }
    };
    let stop_poll = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop_poll.clone();
        std::thread::spawn(move || poll_index(dir_rx, &stop))
    };
    // The ingest learns the SSRCs just before `ready`: a moment for it to take them.
    std::thread::sleep(Duration::from_millis(100));
    let to = Destination::Muxed(([127, 0, 0, 1], port).into());
    let (replay_log, window) = measured_replay(pid, inputs, to, config.warmup)?;
    std::thread::sleep(DRAIN);
    drop(stdin);
    let exit = reap(pid, PATIENCE).map_err(io("waiting for the recbox side"))?;
    stop_poll.store(true, Ordering::Relaxed);
    let (recording, records) = poller.join().unwrap_or_default();
    if exit.code != Some(0) {
        return Err(side_error(
            SIDE,
            format!("ended with {:?}", exit.code),
            &log,
        ));
    }
    let recording = recording.ok_or_else(|| side_error(SIDE, "made no recording", &log))?;
    let tap_text =
        std::fs::read_to_string(&tap).map_err(io(format!("reading {}", tap.display())))?;
    let video = parse_tap(&tap_text).map_err(|e| side_error(SIDE, e, &log))?;
    let durable = video
        .iter()
        .map(|&(pts, _)| {
            let us = (pts.max(0) as u64) * 1_000_000 / 90_000;
            records
                .iter()
                .find(|(r, _)| r.start_us <= us && us < r.end_us())
                .map(|&(_, seen)| seen)
        })
        .collect();
    Ok(SideRun {
        name: SIDE,
        output: Some(recording.join(crate::recorder::layout::MP4_FILE)),
        arrived_ns: video.iter().map(|&(_, ns)| ns).collect(),
        durable_ns: Some(durable),
        skipped: Some(skipped_frames(&video, frame_ticks(config))),
        replay: replay_log,
        window,
        exit,
        log,
    })
}

/// One output frame in 90 kHz ticks.
fn frame_ticks(config: &MixBenchConfig) -> i64 {
    let fps = engine_config(config.encoder.clone()).fps;
    crate::mixer::frame_clock::PTS_HZ as i64 / i64::from(fps)
}

/// Stamps each index record of the recording when it appears; returns the
/// recording's directory and the records.
fn poll_index(
    dir: mpsc::Receiver<PathBuf>,
    stop: &AtomicBool,
) -> (Option<PathBuf>, Vec<(IndexRecord, u64)>) {
    let dir = loop {
        match dir.recv_timeout(Duration::from_millis(20)) {
            Ok(d) => break d,
            Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => return (None, Vec::new()),
        }
    };
    let path = dir.join(INDEX_FILE);
    let mut records = Vec::new();
    let mut at = HEADER_SIZE;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if let Ok(bytes) = std::fs::read(&path) {
            let now = monotonic_ns();
            while let Some(b) = bytes.get(at..at + RECORD_SIZE) {
                if let Ok(r) =
                    IndexRecord::decode(b.try_into().expect("record size"), IndexHeader::default())
                {
                    records.push((r, now));
                }
                at += RECORD_SIZE;
            }
        }
        if stopping {
            return (Some(dir), records);
        }
        std::thread::sleep(INDEX_POLL);
    }
}

/// UDP ports `base..base + count`, all free a moment ago.
fn free_udp_ports(count: u16) -> Result<u16, MixBenchError> {
    for _ in 0..100 {
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(io("finding free UDP ports"))?;
        let base = probe.local_addr().map_err(io("UDP port"))?.port() & !1;
        drop(probe);
        let Some(end) = base.checked_add(count) else {
            continue;
        };
        let all: Result<Vec<_>, _> = (base..end)
            .map(|p| UdpSocket::bind(("0.0.0.0", p)))
            .collect();
        if all.is_ok() {
            return Ok(base);
        }
    }
    Err(MixBenchError::Io(
        "finding free UDP ports".into(),
        std::io::Error::other(format!("no {count} free consecutive ports")),
    ))
}

fn run_ffmpeg(
    inputs: &Inputs,
    dir: &Path,
    engine: &EngineConfig,
    config: &MixBenchConfig,
) -> Result<SideRun, MixBenchError> {
    const SIDE: &str = "ffmpeg";
    let ports = 2 * inputs.streams.len() as u16;
    let base = free_udp_ports(ports)?;
    let sdp_path = dir.join("inputs.sdp");
    std::fs::write(&sdp_path, ffmpeg::sdp(inputs, "127.0.0.1", base))
        .map_err(io(format!("writing {}", sdp_path.display())))?;
    let source = (
        usize::from(inputs.video.width),
        usize::from(inputs.video.height),
    );
    let graph = ffmpeg::filter_graph(usize::from(inputs.participants()), source, engine)?;
    let sdp = sdp_path.to_string_lossy();
    let encoding = config.encoder != EncoderKind::Null;
    let args = if encoding {
        ffmpeg::args(&sdp, &graph, engine, &config.ffmpeg)
    } else {
        ffmpeg::null_args(&sdp, &graph, engine, &config.ffmpeg)
    };
    let log = dir.join("ffmpeg.log");
    let output = encoding.then(|| dir.join("ffmpeg.ts"));
    std::fs::write(dir.join("ffmpeg.args"), args.join("\n")).map_err(io("writing ffmpeg.args"))?;
    let mut child = spawn_logged(
        Command::new("ffmpeg").args(&args).stdin(Stdio::null()),
        &log,
    )?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut file = match &output {
        Some(path) => {
            Some(std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?)
        }
        None => None,
    };
    // The encoded stream is stamped frame by frame as it comes out; the null
    // sink's frames by its progress reports.
    let reader = std::thread::spawn(move || {
        let (mut ts, mut progress) = (TsClock::default(), ProgressClock::default());
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = monotonic_ns();
            match &mut file {
                Some(file) => {
                    ts.push(&buf[..n], now);
                    if file.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                None => progress.push(&buf[..n], now),
            }
        }
        match file {
            Some(_) => ts.error.take().map_or_else(|| Ok(ts.finish()), Err),
            None => Ok(progress.finish()),
        }
    });
    let rtp_ports: Vec<u16> = (0..inputs.streams.len() as u16)
        .map(|i| base + 2 * i)
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while !measure::udp_ports_bound(&rtp_ports) {
        if measure::has_exited(pid) || Instant::now() > deadline {
            let _ = reap(pid, Duration::ZERO);
            return Err(side_error(SIDE, "did not open its RTP ports", &log));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let to = Destination::PerStream {
        host: [127, 0, 0, 1].into(),
        base_port: base,
    };
    let (replay_log, window) = measured_replay(pid, inputs, to, config.warmup)?;
    std::thread::sleep(DRAIN);
    // ffmpeg finishes its output on SIGINT, as on `q`.
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let exit = reap(pid, PATIENCE).map_err(io("waiting for ffmpeg"))?;
    let arrived_ns = reader
        .join()
        .map_err(|_| side_error(SIDE, "output reader failed", &log))?
        .map_err(|e| side_error(SIDE, format!("output: {e}"), &log))?;
    Ok(SideRun {
        name: SIDE,
        output,
        arrived_ns,
        durable_ns: None,
        skipped: None,
        replay: replay_log,
        window,
        exit,
        log,
    })
}

/// The marker code of every video frame of a recording, decoded by ffmpeg.
fn decode_codes(path: &Path, reader: &MarkerReader) -> Result<Vec<Option<u8>>, MixBenchError> {
    let c = reader.crop;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-vf"])
        .arg(format!(
            "crop={}:{}:{}:{},format=gray",
            c.width, c.height, c.x, c.y
        ))
        .args(["-f", "rawvideo", "pipe:1"])
        .output()
        .map_err(io("running ffmpeg to decode an output"))?;
    if !out.status.success() {
        return Err(MixBenchError::Io(
            format!("decoding {}", path.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        ));
    }
    Ok(out
        .stdout
        .chunks_exact(c.width * c.height)
        .map(|frame| reader.read(frame))
        .collect())
}

/// `WIDTHxHEIGHT @ FPS, FRAMES frames` of the first video stream.
fn probe(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=width,height,r_frame_rate,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output();
    let line = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    match ffmpeg::parse_probe(&line) {
        Some((w, h, rate, frames)) => format!("{w}x{h} @ {rate:.2} fps, {frames} frames"),
        None => "unreadable by ffprobe".into(),
    }
}

fn figures_of(
    run: &SideRun,
    inputs: &Inputs,
    engine: &EngineConfig,
    config: &MixBenchConfig,
) -> Result<Figures, MixBenchError> {
    let warmup = config.warmup;
    let source = (
        usize::from(inputs.video.width),
        usize::from(inputs.video.height),
    );
    let output = (usize::from(engine.width), usize::from(engine.height));
    let places = ffmpeg::placements(usize::from(inputs.participants()), source, output)?;
    let reader = MarkerLayout::for_size(source.0, source.1).reader(places[0].1);
    // The null encoder's pictures are black: no marker to read.
    let codes = match &run.output {
        Some(output) if config.encoder != EncoderKind::Null => decode_codes(output, &reader)?,
        _ => Vec::new(),
    };
    let frames = codes.len().min(run.arrived_ns.len());
    // Without decoding: every frame that came out.
    let out_frames = match codes.len() {
        0 => run.arrived_ns.len(),
        _ => frames,
    };
    let from_ns = run.replay.started_ns + warmup.as_nanos() as u64;
    let sent = &run.replay.state_sent_ns;
    let latencies =
        latency::marker_latencies(&codes[..frames], &run.arrived_ns[..frames], sent, from_ns);
    let durable = run.durable_ns.as_ref().map(|durable| {
        let (codes, at): (Vec<_>, Vec<_>) = codes[..frames]
            .iter()
            .zip(durable)
            .map(|(&c, &d)| (d.and(c), d.unwrap_or(0)))
            .unzip();
        latency::marker_latencies(&codes, &at, sent, from_ns)
    });
    write_samples(run, &latencies, durable.as_deref())?;
    let ms = |samples: &[latency::Sample]| samples.iter().map(|s| s.ms).collect::<Vec<_>>();
    let w = run.window;
    let in_window = run
        .arrived_ns
        .iter()
        .filter(|&&t| (w.from_ns..=w.to_ns).contains(&t))
        .count();
    let output_s = in_window as f64 / f64::from(engine.fps);
    let bytes = run
        .output
        .as_ref()
        .and_then(|o| std::fs::metadata(o).ok())
        .map_or(0, |m| m.len());
    Ok(Figures {
        cpu_per_output_s: w.cpu.as_secs_f64() / output_s,
        peak_rss_mb: run.exit.peak_rss_bytes as f64 / 1e6,
        latency: Percentiles::of(&ms(&latencies)),
        durable: durable.and_then(|d| Percentiles::of(&ms(&d))),
        skipped: run.skipped,
        decoded: codes.len(),
        stamped: run.arrived_ns.len(),
        probe: run
            .output
            .as_deref()
            .map_or_else(|| "to the null sink".into(), probe),
        kbps: bytes as f64 * 8.0 / 1000.0 / (out_frames.max(1) as f64 / f64::from(engine.fps)),
        threads: w.threads,
    })
}

/// Every latency sample of a side, as CSV beside its output.
fn write_samples(
    run: &SideRun,
    out: &[latency::Sample],
    durable: Option<&[latency::Sample]>,
) -> Result<(), MixBenchError> {
    let path = run.log.with_file_name(format!("{}-latency.csv", run.name));
    let mut csv = String::from("state,sent_s,out_ms,durable_ms\n");
    for s in out {
        let d = durable
            .and_then(|d| d.iter().find(|d| d.state == s.state))
            .map_or(String::new(), |d| format!("{:.1}", d.ms));
        let sent = (s.sent_ns - run.replay.started_ns) as f64 / 1e9;
        csv.push_str(&format!("{},{sent:.3},{:.1},{d}\n", s.state, s.ms));
    }
    std::fs::write(&path, csv).map_err(io(format!("writing {}", path.display())))
}

fn detail_line(run: &SideRun, f: &Figures) -> String {
    let samples = |p: &Option<Percentiles<f64>>| p.map_or(0, |p| p.count);
    format!(
        "{}: output {} ({} decoded, {} stamped), {:.0} kbit/s; {} threads; {} latency samples; \
         replay {} send errors, {:.1} ms worst lag; {} ({})",
        run.name,
        f.probe,
        f.decoded,
        f.stamped,
        f.kbps,
        f.threads.map_or("?".into(), |t| t.to_string()),
        samples(&f.latency) + samples(&f.durable),
        run.replay.send_errors,
        run.replay.worst_lag.as_secs_f64() * 1000.0,
        run.output
            .as_deref()
            .map_or("no file".into(), |o| o.display().to_string()),
        run.log.display(),
    )
}

/// The figures of every participant count, recbox, ffmpeg and recbox / ffmpeg.
fn table(rows: &[(u8, Vec<Figures>)], target: &str) -> String {
    let mut s = format!(
        "{:<6} {:<8} {:>9} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8}\n",
        "people",
        "side",
        "CPU s/s",
        "peak MB",
        "lat p50",
        "lat p99",
        "durable p50",
        "durable p99",
        "skipped"
    );
    let ms = |p: Option<Percentiles<f64>>, f: fn(&Percentiles<f64>) -> f64| {
        p.map_or("-".to_owned(), |p| format!("{:.0} ms", f(&p)))
    };
    for (n, figures) in rows {
        for (f, name) in figures.iter().zip(["recbox", "ffmpeg"]) {
            s.push_str(&format!(
                "{:<6} {:<8} {:>9.3} {:>10.1} {:>10} {:>10} {:>12} {:>12} {:>8}\n",
                n,
                name,
                f.cpu_per_output_s,
                f.peak_rss_mb,
                ms(f.latency, |p| p.p50),
                ms(f.latency, |p| p.p99),
                ms(f.durable, |p| p.p50),
                ms(f.durable, |p| p.p99),
                f.skipped.map_or("-".into(), |s| s.to_string()),
            ));
        }
        if let [r, f] = &figures[..] {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let lat = |f: &Figures, p: fn(&Percentiles<f64>) -> f64| f.latency.map(|l| p(&l));
            s.push_str(&format!(
                "{:<6} {:<8} {:>9} {:>10} {:>10} {:>10}\n",
                n,
                "ratio",
                ratio(Some(r.cpu_per_output_s), Some(f.cpu_per_output_s)),
                ratio(Some(r.peak_rss_mb), Some(f.peak_rss_mb)),
                ratio(lat(r, |p| p.p50), lat(f, |p| p.p50)),
                ratio(lat(r, |p| p.p99), lat(f, |p| p.p99)),
            ));
        }
    }
    s.push_str(&format!(
        "ratio = recbox / ffmpeg (target: CPU at or below {target}); skipped: output frames recbox \
         skipped, falling behind (gaps in the recording's pts)"
    ));
    s
}
