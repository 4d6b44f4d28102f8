use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tracing::info;

use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::handshake::LinkKey;
use recbox::link::transport::{LinkAddr, LinkListener};
use recbox::mixer::uplink::{Uplink, UplinkEvent};
use recbox::recorder::service::{self, RecorderConfig};
use recbox::recorder::{inspect, recovery};
use recbox::sfu::sim::{ImpairmentConfig, Schedule, SfuSim, SimConfig, SimEvent};
use recbox::synth::{PatternSpec, SyntheticFeed, ToneSpec};

#[derive(Parser)]
#[command(name = "recbox", version, about = "Meeting-room recording box")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct KeyArgs {
    /// Pre-shared media-link key (prefer --key-file or RECBOX_LINK_KEY: argv is visible to others).
    #[arg(long, env = "RECBOX_LINK_KEY", hide_env_values = true)]
    key: Option<String>,
    /// File holding the pre-shared media-link key (surrounding whitespace is ignored).
    #[arg(long, conflicts_with = "key")]
    key_file: Option<PathBuf>,
}

impl KeyArgs {
    fn load(&self) -> Result<LinkKey> {
        let key = match (&self.key, &self.key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading link key file {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => {
                bail!("no link key: give --key-file FILE, --key KEY or RECBOX_LINK_KEY")
            }
        };
        LinkKey::new(key).context("link key")
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the recorder: accept media-link sessions and write recordings.
    Recorder {
        /// Where to listen: tcp:HOST:PORT, HOST:PORT or unix:/path/to.sock
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: LinkAddr,
        /// Storage root for recordings.
        #[arg(long)]
        storage: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Interval of the Stats frames sent to the mixer, e.g. 5s or 500ms.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        stats_interval: Duration,
        /// Largest accepted media-link frame in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_FRAME)]
        max_frame: usize,
    },
    /// Run a short recording end to end on this machine with built-in defaults:
    /// a synthetic participant is sent over a real media link to a real recorder.
    Demo {
        /// How long to record, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Storage root for the recording.
        #[arg(long, default_value = "recordings")]
        storage: PathBuf,
    },
    /// Print what a recording directory holds: tracks, fragments, time span, health.
    Inspect { dir: PathBuf },
    /// Recover a recording by hand: truncate a torn tail, rebuild the index and playlist.
    Repair { dir: PathBuf },
    /// Run a simulated SFU: once a mixer connects to the control channel, send it N
    /// participants as real H.264 and Opus RTP; print every notice it sends as a JSON line.
    SfuSim(SfuSimArgs),
    /// Print throughput figures of the media link and the recording writer.
    Bench {
        /// Seconds per link case.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Directory on the filesystem to measure writes on (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Trials per fault kind in the fault-latency part (needs root).
        #[arg(long, default_value_t = 100)]
        trials: usize,
    },
}

#[derive(clap::Args)]
struct SfuSimArgs {
    /// Where to listen for the mixer's control WebSocket (ws://ADDR/).
    #[arg(long, default_value = "127.0.0.1:8188")]
    listen: SocketAddr,
    /// Participants in the meeting when the mixer connects (1..=16).
    #[arg(long, default_value_t = 4)]
    participants: u8,
    /// Joins and leaves, e.g. "join 5@10s, leave 2@20s" (times from the mixer's hello).
    #[arg(long, default_value = "")]
    schedule: Schedule,
    /// Probability that an RTP packet is lost, e.g. 0.05.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that an RTP packet is swapped with the next one.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Random extra delay of each RTP packet, up to this (e.g. 20ms).
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Seed of the simulated network and of sequence numbers and timestamps.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Audio RTP port, when the mixer's hello does not name one.
    #[arg(long)]
    audio_port: Option<u16>,
    /// Video RTP port, when the mixer's hello does not name one.
    #[arg(long)]
    video_port: Option<u16>,
    /// Where RTP goes (default: the address the mixer connects from).
    #[arg(long)]
    rtp_host: Option<IpAddr>,
    /// Video size of every participant, WIDTHxHEIGHT.
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    size: (u16, u16),
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u16,
    /// Frames between regular keyframes (keyframe requests are answered at once).
    #[arg(long, default_value_t = 60)]
    gop: u32,
}

impl SfuSimArgs {
    fn config(self) -> SimConfig {
        let (width, height) = self.size;
        SimConfig {
            participants: self.participants,
            schedule: self.schedule,
            impairment: ImpairmentConfig {
                loss: self.loss,
                reorder: self.reorder,
                jitter: self.jitter.unwrap_or_default(),
            },
            seed: self.seed,
            video: PatternSpec {
                width,
                height,
                fps: self.fps,
                gop: self.gop,
                ..PatternSpec::default()
            },
            audio_port: self.audio_port,
            video_port: self.video_port,
            rtp_host: self.rtp_host,
            ..SimConfig::default()
        }
    }
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    s.split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
        .ok_or_else(|| format!("`{s}` is not a video size (example: 320x240)"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    recbox::duration::parse(s).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo and the benchmarks print their own lines (the bench provokes storage
    // faults on purpose); the services log what they do.
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        Command::Bench { .. } => "error",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Recorder {
            listen,
            storage,
            key,
            stats_interval,
            max_frame,
        } => {
            let mut config = RecorderConfig::new(storage, key.load()?);
            config.stats_interval = stats_interval;
            config.max_frame = max_frame;
            rt.block_on(run_recorder(listen, config))
        }
        Command::Demo { duration, storage } => rt.block_on(demo(duration, storage)),
        Command::Inspect { dir } => {
            let report =
                inspect::inspect(&dir).with_context(|| format!("inspecting {}", dir.display()))?;
            println!("{report}");
            Ok(())
        }
        Command::Repair { dir } => {
            let report =
                recovery::recover(&dir).with_context(|| format!("repairing {}", dir.display()))?;
            println!("{report}");
            Ok(())
        }
        Command::SfuSim(args) => {
            let listen = args.listen;
            rt.block_on(sfu_sim(listen, args.config()))
        }
        Command::Bench {
            seconds,
            dir,
            trials,
        } => rt.block_on(bench(seconds, dir, trials)),
    }
}

async fn run_recorder(listen: LinkAddr, config: RecorderConfig) -> Result<()> {
    std::fs::create_dir_all(&config.storage)
        .with_context(|| format!("creating storage root {}", config.storage.display()))?;
    let recovered = service::recover_unfinished(&config.storage);
    if recovered > 0 {
        info!(recovered, "unfinished recordings recovered");
    }
    let listener = LinkListener::bind(&listen, config.max_frame)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    service::serve(listener, Arc::new(config))
        .await
        .context("recorder stopped")
}

async fn demo(duration: Duration, storage: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&storage)
        .with_context(|| format!("creating storage root {}", storage.display()))?;
    let key = LinkKey::new(rand::random::<[u8; 32]>().to_vec())?;
    let mut config = RecorderConfig::new(storage.clone(), key.clone());
    config.stats_interval = Duration::from_secs(2);
    let listener = LinkListener::bind(&"127.0.0.1:0".parse()?, config.max_frame).await?;
    let addr = listener.local_addr();
    tokio::spawn(service::serve(listener, Arc::new(config)));

    let recording = format!("demo-{}", service::now_millis());
    let mut feed = SyntheticFeed::new(
        PatternSpec {
            width: 640,
            height: 360,
            ..PatternSpec::default()
        },
        ToneSpec::default(),
    )?;
    let mut uplink = Uplink::connect(
        &addr,
        key,
        recbox::link::frame::text(&recording),
        DEFAULT_MAX_FRAME,
    )
    .await?;
    println!("demo: recording {recording} for {duration:?} over the media link at {addr}");
    uplink
        .start(feed.start_params(&recording, "demo-room"))
        .await?;

    // Real-time pace, so stats and progress look like a real meeting.
    let t0 = Instant::now();
    while feed.next_time_us() < duration.as_micros() as u64 {
        let due = Duration::from_micros(feed.next_time_us());
        tokio::time::sleep_until((t0 + due).into()).await;
        uplink.media(feed.next_media()?).await?;
        while let Some(event) = uplink.try_event() {
            report(&event);
        }
    }
    uplink.stop().await?;
    let dir = loop {
        match uplink.next_event().await {
            Some(UplinkEvent::Recorder(recbox::link::session::MixerEvent::Stopped(summary))) => {
                println!(
                    "demo: stopped: {} fragments, {} bytes, {:.1} s of media",
                    summary.fragments,
                    summary.file_bytes,
                    summary.media_ms as f64 / 1000.0
                );
                break find_recording_dir(&storage, &recording)?;
            }
            Some(event) => report(&event),
            None => bail!("the recorder went away before confirming the stop"),
        }
    };
    println!("\n{}", inspect::inspect(&dir)?);
    println!("play it: ffplay {}", dir.join("recording.mp4").display());
    Ok(())
}

fn report(event: &UplinkEvent) {
    use recbox::link::session::MixerEvent;
    match event {
        UplinkEvent::Recorder(MixerEvent::Stats(s)) => println!(
            "demo: recorded {:.1} s, file {} bytes, index {} bytes, {} MB free",
            s.duration_ms as f64 / 1000.0,
            s.file_bytes,
            s.index_bytes,
            s.free_bytes / 1_000_000
        ),
        UplinkEvent::Recorder(MixerEvent::Fault(f)) => {
            println!("demo: FAULT {:?} on {:?}: {}", f.kind, f.target, f.detail)
        }
        UplinkEvent::Recorder(MixerEvent::Started { path, .. }) => {
            println!("demo: recorder writes to {path}")
        }
        UplinkEvent::Recorder(other) => println!("demo: {other:?}"),
        UplinkEvent::Closed(reason) => println!("demo: link closed: {reason:?}"),
    }
}

fn find_recording_dir(storage: &std::path::Path, recording: &str) -> Result<PathBuf> {
    let room = storage.join("demo-room");
    for entry in std::fs::read_dir(&room).with_context(|| format!("reading {}", room.display()))? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(recording) {
            return Ok(path);
        }
    }
    bail!(
        "no recording directory for {recording} under {}",
        room.display()
    )
}

/// Runs the simulated SFU until interrupted; stdout carries only the announcements,
/// one JSON line each, as the terminals and the control platform would see them.
async fn sfu_sim(listen: SocketAddr, config: SimConfig) -> Result<()> {
    let sim = SfuSim::bind(listen, config)
        .await
        .context("starting the simulated SFU")?;
    let addr = sim.local_addr()?;
    info!("control channel: ws://{addr}/");
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let serve = tokio::spawn(sim.run(tx));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(SimEvent::Announcement(a)) => println!("{}", a.to_json_line()),
                Some(SimEvent::MixerConnected { name }) => info!(%name, "mixer said hello"),
                Some(SimEvent::KeyframeForced { participant, cause }) => {
                    info!(participant, ?cause, "keyframe sent on request")
                }
                Some(SimEvent::Sent(_)) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    serve.abort();
    match serve.await {
        Ok(result) => result.context("simulated SFU stopped"),
        Err(_) => Ok(()),
    }
}

async fn bench(seconds: f64, dir: Option<PathBuf>, trials: usize) -> Result<()> {
    let mut out = std::io::stdout();
    println!("== media link throughput (loopback) ==");
    recbox::bench::link::run(&mut out, seconds).await?;
    println!("\n== recorder write throughput vs plain sequential write ==");
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    recbox::bench::writer::run(&mut out, &dir)?;
    println!("\n== fault latency: fault to Fault frame at the link client ==");
    recbox::bench::faults::run(&mut out, trials).await?;
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("recbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
