use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tracing::info;

use recbox::bench::BenchPart;
use recbox::demo::{DemoConfig, FaultPlan};
use recbox::encoder::EncoderKind;
use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::handshake::LinkKey;
use recbox::link::transport::{LinkAddr, LinkListener};
use recbox::mixer::engine::EngineConfig;
use recbox::recorder::service::{self, RecorderConfig};
use recbox::recorder::{inspect, recovery};
use recbox::sfu::sim::{ImpairmentConfig, Schedule, SfuSim, SimConfig, SimEvent};
use recbox::synth::PatternSpec;

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
        /// Where recordings continue while the storage is faulted (full, offline,
        /// read-only, failing), e.g. the board's own flash; none by default.
        #[arg(long)]
        spool: Option<PathBuf>,
        /// Most bytes one recording may put on the spool, e.g. 512M or 2G.
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        spool_max: u64,
        /// How often the storage is checked (free space, mount table, and a probe
        /// write while it is faulted), e.g. 1s or 200ms.
        #[arg(long, default_value = "50ms", value_parser = parse_duration)]
        storage_poll: Duration,
        /// LowSpace warning below this much free space, e.g. 2G (default: the
        /// smaller of 1 GiB and 5% of the storage).
        #[arg(long, value_parser = parse_size)]
        low_space: Option<u64>,
        /// DiskFull (and failover) below this much free space, before a write fails.
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        full_space: u64,
    },
    /// Run a meeting end to end on this machine with built-in defaults: a simulated
    /// SFU sends N participants as real RTP, the mixer mixes and composites them, the
    /// recorder writes the recording; progress and every notice are shown.
    Demo {
        /// How long to record, e.g. 20s.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// Storage root for the recording.
        #[arg(long, default_value = "recordings")]
        storage: PathBuf,
        /// Participants in the meeting (1..=16).
        #[arg(long, default_value_t = 4)]
        participants: u8,
        /// Output video size, WIDTHxHEIGHT.
        #[arg(long, default_value = "1280x720", value_parser = parse_video_size)]
        size: (u16, u16),
        /// Video encoder: auto, software, v4l2 or v4l2:/dev/videoN.
        #[arg(long, default_value = "auto")]
        encoder: EncoderKind,
        /// Break the recording disk during the demo and repair it a few seconds later:
        /// disk-full@10s, low-space@10s, disk-offline@10s, read-only@10s, index-io@10s
        /// or io-error@10s (needs root: a small ext4 disk on a loop device is what breaks).
        #[arg(long)]
        fault: Option<FaultPlan>,
    },
    /// Print what a recording directory holds: tracks, fragments, time span, health.
    Inspect { dir: PathBuf },
    /// Recover a recording by hand: truncate a torn tail, rebuild the index and playlist.
    Repair { dir: PathBuf },
    /// Run a simulated SFU: once a mixer connects to the control channel, send it N
    /// participants as real H.264 and Opus RTP; print every notice it sends as a JSON line.
    SfuSim(SfuSimArgs),
    /// Print figures: media-link and recording-writer throughput, fault latencies.
    Bench {
        /// Parts to run: link, writer, faults, faults-e2e (default: all of them).
        parts: Vec<BenchPart>,
        /// Seconds per link case.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Directory on the filesystem to measure writes on (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Trials per fault kind in the fault-latency parts (need root).
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
    #[arg(long, default_value = "320x240", value_parser = parse_video_size)]
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

fn parse_video_size(s: &str) -> Result<(u16, u16), String> {
    s.split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
        .ok_or_else(|| format!("`{s}` is not a video size (example: 320x240)"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    recbox::duration::parse(s).map_err(|e| e.to_string())
}

/// A byte count with an optional binary suffix: 1048576, 512K, 64M, 2G.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let value: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 1048576, 512M, 2G)"))?;
    match value.checked_mul(1 << shift) {
        Some(0) => Err(format!("`{s}` must be more than zero bytes")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{s}` is too large")),
    }
}

/// The spool must be another place than the storage: inside it, it would fail with
/// it and its recordings would be taken for the storage's own.
fn check_spool(storage: &Path, spool: &Path) -> Result<()> {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (storage, spool) = (resolve(storage), resolve(spool));
    if spool.starts_with(&storage) || storage.starts_with(&spool) {
        bail!(
            "--spool {} must not be the storage root {} or inside it (nor contain it)",
            spool.display(),
            storage.display()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo and the benchmarks print their own lines (the bench provokes storage
    // faults on purpose); the services log what they do.
    let default_level = match cli.command {
        Command::Demo { .. } => "error",
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
            spool,
            spool_max,
            storage_poll,
            low_space,
            full_space,
        } => {
            let mut config = RecorderConfig::new(storage, key.load()?);
            config.stats_interval = stats_interval;
            config.max_frame = max_frame;
            config.spool = spool;
            config.writer.spool_max_bytes = spool_max;
            config.storage_poll = storage_poll;
            config.health.low_space_bytes = low_space;
            config.health.full_space_bytes = full_space;
            rt.block_on(run_recorder(listen, config))
        }
        Command::Demo {
            duration,
            storage,
            participants,
            size: (width, height),
            encoder,
            fault,
        } => {
            let config = DemoConfig {
                duration,
                storage,
                participants,
                engine: EngineConfig {
                    width,
                    height,
                    encoder,
                    ..EngineConfig::default()
                },
                fault,
                ..DemoConfig::default()
            };
            rt.block_on(demo(config))
        }
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
            parts,
            seconds,
            dir,
            trials,
        } => rt.block_on(bench(&parts, seconds, dir, trials)),
    }
}

async fn run_recorder(listen: LinkAddr, config: RecorderConfig) -> Result<()> {
    let roots = std::iter::once(&config.storage).chain(&config.spool);
    for root in roots.clone() {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating storage root {}", root.display()))?;
    }
    if let Some(spool) = &config.spool {
        check_spool(&config.storage, spool)?;
    }
    for root in roots {
        let recovered = service::recover_unfinished(root);
        if recovered > 0 {
            info!(recovered, root = %root.display(), "unfinished recordings recovered");
        }
    }
    let listener = LinkListener::bind(&listen, config.max_frame)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    service::serve(listener, Arc::new(config))
        .await
        .context("recorder stopped")
}

async fn demo(config: DemoConfig) -> Result<()> {
    if !(1..=16).contains(&config.participants) {
        bail!("--participants must be 1..=16, got {}", config.participants);
    }
    let outcome = recbox::demo::run(config, &mut std::io::stdout()).await?;
    for dir in &outcome.segments {
        println!("\n{}", inspect::inspect(dir)?);
    }
    if let Some(first) = outcome.segments.first() {
        println!("play it: ffplay {}", first.join("recording.mp4").display());
    }
    Ok(())
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

async fn bench(
    parts: &[BenchPart],
    seconds: f64,
    dir: Option<PathBuf>,
    trials: usize,
) -> Result<()> {
    let mut out = std::io::stdout();
    let parts = if parts.is_empty() {
        &BenchPart::ALL[..]
    } else {
        parts
    };
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match part {
            BenchPart::Link => {
                println!("== media link throughput (loopback) ==");
                recbox::bench::link::run(&mut out, seconds).await?;
            }
            BenchPart::Writer => {
                println!("== recorder write throughput vs plain sequential write ==");
                let dir = match &dir {
                    Some(d) => d.clone(),
                    None => tempfile_dir()?,
                };
                recbox::bench::writer::run(&mut out, &dir)?;
            }
            BenchPart::Faults => {
                println!("== fault latency: fault to Fault frame at the link client ==");
                recbox::bench::faults::run(&mut out, trials).await?;
            }
            BenchPart::FaultsE2e => {
                println!("== fault feedback end to end: fault to announcement at the terminals ==");
                recbox::bench::faults_e2e::run(&mut out, trials).await?;
            }
        }
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("recbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size(" 64m "), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        for bad in ["", "G", "1.5G", "-1M", "0", "99999999999999G", "12X"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "0s", "-1s", "fast", "NaNs"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_spool_must_be_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        assert!(check_spool(&storage, &dir.path().join("spool")).is_ok());
        for bad in [
            storage.clone(),
            storage.join("spool"),
            dir.path().to_path_buf(),
        ] {
            let err = check_spool(&storage, &bad).unwrap_err().to_string();
            assert!(err.contains("must not be the storage root"), "{err}");
        }
        // Spelled differently, still the same place.
        assert!(check_spool(&storage, &storage.join("x/..")).is_err());
    }
}
