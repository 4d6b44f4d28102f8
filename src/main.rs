use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use tracing::{info, warn};

use recbox::appliance::front::Front;
use recbox::appliance::{Appliance, Plan};
use recbox::bench::mix::ffmpeg::FfmpegSettings;
use recbox::bench::mix::recbox_side::SideConfig;
use recbox::bench::mix::MixBenchConfig;
use recbox::bench::BenchPart;
use recbox::config::{Config, ConfigError};
use recbox::demo::{DemoConfig, FaultPlan};
use recbox::encoder::EncoderKind;
use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::handshake::{KeyRing, LinkKey};
use recbox::link::keyfile;
use recbox::link::transport::LinkAddr;
use recbox::media::picture::VideoSize;
use recbox::mixer::engine::EngineConfig;
use recbox::recorder::layout::MP4_FILE;
use recbox::recorder::service::{self, RecorderConfig};
use recbox::recorder::{inspect, recovery};
use recbox::sfu::sim::{ImpairmentConfig, Schedule, SfuSim, SimConfig, SimEvent};
use recbox::synth::PatternSpec;
use recbox::systemd::{Notifier, NotifyEnv};

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
    /// The key given on the command line (or in the environment), if any.
    fn given(&self) -> Result<Option<LinkKey>> {
        let key = match (&self.key, &self.key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading link key file {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        LinkKey::new(key).map(Some).context("link key")
    }

    fn load(&self) -> Result<LinkKey> {
        self.given()?
            .context("no link key: give --key-file FILE, --key KEY or RECBOX_LINK_KEY")
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a fresh random link key (64 hex digits) to FILE, readable only by its owner.
    New {
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
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
        /// File holding the previous link key, still accepted while mixers move to
        /// the current one (key rotation).
        #[arg(long)]
        previous_key_file: Option<PathBuf>,
        /// A connection that has not proven the link key by then is closed.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        handshake_timeout: Duration,
        /// Most connections waiting to authenticate; beyond it the oldest is closed.
        #[arg(long, default_value_t = service::DEFAULT_MAX_UNAUTHENTICATED)]
        max_unauthenticated: usize,
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
    /// Run the box: recorder and mixer in one process over the local socket,
    /// recording the SFU's meeting, as the systemd unit does.
    Run {
        /// Configuration file [default: /etc/recbox/recbox.toml, or the built-in
        /// defaults when that file does not exist].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the mixer alone: join the SFU's meeting, mix it and send it to a recorder
    /// on another machine. Settings come from --config (or the built-in defaults),
    /// flags override them.
    Mixer(MixerArgs),
    /// Media-link keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check a configuration file, or print the documented defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
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
        /// Chime on this ALSA device (alone: the default one) when the recording
        /// starts, stops or meets a fault.
        #[arg(long, value_name = "DEVICE", num_args = 0..=1,
              default_missing_value = recbox::audio::DEFAULT_SPEAKER)]
        chimes: Option<String>,
        /// ALSA capture device to mix in as the room microphone, e.g. default (one that
        /// cannot be opened is logged: RUST_LOG=warn).
        #[arg(long, value_name = "DEVICE")]
        microphone: Option<String>,
    },
    /// Print what a recording directory holds: tracks, fragments, time span, health.
    Inspect { dir: PathBuf },
    /// Recover a recording by hand: truncate a torn tail, rebuild the index and playlist.
    Repair { dir: PathBuf },
    /// Run a simulated SFU: once a mixer connects to the control channel, send it N
    /// participants as real H.264 and Opus RTP; print every notice it sends as a JSON line.
    SfuSim(SfuSimArgs),
    /// Print benchmark figures: media-link and recording-writer throughput, fault
    /// latencies (to the link, and end to end to the terminals), and the mixer side
    /// by side with ffmpeg.
    Bench(BenchArgs),
    /// The recbox side of `bench mix`: mixer and recorder in one process, for a
    /// fixed roster; stops when stdin closes.
    #[command(hide = true)]
    BenchMixSide {
        #[arg(long)]
        roster: PathBuf,
        #[arg(long)]
        storage: PathBuf,
        #[arg(long)]
        tap: PathBuf,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Parts to run: link, writer, faults, faults-e2e, mix (default: all of them;
    /// the fault parts need root, mix needs ffmpeg).
    parts: Vec<BenchPart>,
    /// Seconds per link case.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Directory on the filesystem to measure writes on, and to keep the mix
    /// part's inputs, outputs and logs in (default: a temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Trials per fault kind in the fault-latency parts.
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Mix: participant counts to measure, e.g. 4,9.
    #[arg(long, value_delimiter = ',', default_value = "4,9")]
    participants: Vec<u8>,
    /// Mix: seconds of input replayed to each side, warm-up included.
    #[arg(long, default_value_t = 10.0)]
    mix_seconds: f64,
    /// Mix: runs of each side per participant count (the median's CPU is shown).
    #[arg(long, default_value_t = 3)]
    mix_rounds: usize,
    /// Mix: time at the start that is not measured, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Mix: libx264 preset of the ffmpeg side.
    #[arg(long, default_value = "veryfast")]
    x264_preset: String,
    /// Mix: threads of ffmpeg's decoders, filter graph and encoder.
    #[arg(long, default_value_t = 1)]
    ffmpeg_threads: u16,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check FILE: print the configuration it gives, or every problem with its key.
    Check { file: PathBuf },
    /// Print the documented default configuration (board/recbox.toml).
    Defaults,
}

#[derive(clap::Args)]
struct MixerArgs {
    /// Configuration file to take the [mixer], [sfu], [link] and [recording]
    /// sections from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The SFU's control channel, ws://HOST:PORT/PATH (sfu.url).
    #[arg(long)]
    sfu: Option<String>,
    /// The recorder: tcp:HOST:PORT, HOST:PORT or unix:/path.sock [default: the
    /// local socket, link.socket].
    #[arg(long)]
    recorder: Option<LinkAddr>,
    #[command(flatten)]
    key: KeyArgs,
    /// The room, the directory of its recordings (mixer.room).
    #[arg(long)]
    room: Option<String>,
    /// The mixer's name at the SFU (mixer.name).
    #[arg(long)]
    name: Option<String>,
    /// Where participants' RTP arrives, ADDR:PORT (mixer.ingest).
    #[arg(long)]
    ingest: Option<SocketAddr>,
    /// Output video size, WIDTHxHEIGHT (mixer.size).
    #[arg(long)]
    size: Option<VideoSize>,
    /// Output frames per second (mixer.fps).
    #[arg(long)]
    fps: Option<u16>,
    /// Video encoder: auto, software, v4l2 or v4l2:/dev/videoN (mixer.encoder).
    #[arg(long)]
    encoder: Option<EncoderKind>,
    /// H.264 bit rate in bits per second (mixer.video_bitrate).
    #[arg(long)]
    video_bitrate: Option<u32>,
}

impl MixerArgs {
    /// The configuration with the flags applied.
    fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(path) => load_config(path)?,
            None => Config::default(),
        };
        let m = &mut c.mixer;
        if let Some(url) = &self.sfu {
            c.sfu.url = url.clone();
        }
        if let Some(room) = &self.room {
            m.room = room.clone();
        }
        if let Some(name) = &self.name {
            m.name = name.clone();
        }
        if let Some(ingest) = self.ingest {
            m.ingest = ingest;
        }
        if let Some(size) = self.size {
            m.size = size;
        }
        if let Some(fps) = self.fps {
            m.fps = fps;
        }
        if let Some(encoder) = &self.encoder {
            m.encoder = encoder.clone();
        }
        if let Some(bitrate) = self.video_bitrate {
            m.video_bitrate = bitrate;
        }
        let problems = c.problems();
        if !problems.is_empty() {
            bail!("{}", ConfigError::Invalid(problems));
        }
        Ok(c)
    }
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
    s.parse::<VideoSize>()
        .map(|v| (v.width, v.height))
        .map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    recbox::duration::parse(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    recbox::size::parse(s).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo and the benchmarks print their own lines (the bench provokes storage
    // faults on purpose); the services log what they do.
    let default_level = match cli.command {
        Command::Demo { .. } => "error",
        Command::Bench { .. } => "error",
        Command::BenchMixSide { .. } => "info",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: the journal would keep the escapes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Recorder {
            listen,
            storage,
            key,
            previous_key_file,
            handshake_timeout,
            max_unauthenticated,
            stats_interval,
            max_frame,
            spool,
            spool_max,
            storage_poll,
            low_space,
            full_space,
        } => {
            let previous = KeyArgs {
                key: None,
                key_file: previous_key_file,
            };
            let keys = KeyRing {
                current: key.load()?,
                previous: previous.given().context("previous link key")?,
            };
            let mut config = RecorderConfig::new(storage, keys);
            config.handshake_timeout = handshake_timeout;
            config.max_unauthenticated = max_unauthenticated;
            config.stats_interval = stats_interval;
            config.max_frame = max_frame;
            config.spool = spool;
            config.writer.spool_max_bytes = spool_max;
            config.storage_poll = storage_poll;
            config.health.low_space_bytes = low_space;
            config.health.full_space_bytes = full_space;
            rt.block_on(run_recorder(listen, config))
        }
        Command::Run { config } => {
            let config = box_config(config)?;
            rt.block_on(run_box(config))
        }
        Command::Key(KeyCommand::New { file, force }) => {
            keyfile::write_new(&file, rand::random(), force)?;
            println!("wrote a new link key to {}", file.display());
            Ok(())
        }
        Command::Mixer(args) => {
            let config = args.config()?;
            let key = match args.key.given()? {
                Some(key) => key,
                None => config.link_key()?.context(
                    "no link key: give --key-file FILE, --key KEY, RECBOX_LINK_KEY or link.key_file in --config",
                )?,
            };
            let recorder = args.recorder.clone().unwrap_or_else(|| config.local_link());
            rt.block_on(run_mixer(config, recorder, key))
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let loaded = Config::load(&file).map_err(|e| config_error(&file, e))?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", loaded.config.to_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", recbox::config::DOCUMENTED_DEFAULTS);
            Ok(())
        }
        Command::Demo {
            duration,
            storage,
            participants,
            size: (width, height),
            encoder,
            fault,
            chimes,
            microphone,
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
                chimes,
                microphone,
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
        Command::Bench(args) => {
            if let Some(&bad) = args.participants.iter().find(|n| !(1..=16).contains(*n)) {
                bail!("--participants must be 1..=16 each, got {bad}");
            }
            rt.block_on(bench(args))
        }
        Command::BenchMixSide {
            roster,
            storage,
            tap,
        } => {
            let config = SideConfig {
                roster,
                storage,
                tap,
            };
            rt.block_on(recbox::bench::mix::recbox_side::serve(
                config,
                &mut std::io::stdout(),
            ))?;
            Ok(())
        }
    }
}

async fn run_recorder(listen: LinkAddr, config: RecorderConfig) -> Result<()> {
    let listener = service::open(&listen, &config).await?;
    service::serve(listener, Arc::new(config)).await;
    Ok(())
}

fn config_error(path: &Path, e: ConfigError) -> anyhow::Error {
    match e {
        ConfigError::Invalid(problems) => {
            let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            anyhow!(
                "invalid configuration {}:\n{}",
                path.display(),
                lines.join("\n")
            )
        }
        ConfigError::Syntax(message) => anyhow!("{}: {message}", path.display()),
        e => e.into(),
    }
}

fn load_config(path: &Path) -> Result<Config> {
    let loaded = Config::load(path).map_err(|e| config_error(path, e))?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    Ok(loaded.config)
}

/// The box's configuration: the given file, else the default one if it exists,
/// else the built-in defaults.
fn box_config(path: Option<PathBuf>) -> Result<Config> {
    match path {
        Some(path) => load_config(&path),
        None => {
            let path = Path::new(recbox::config::DEFAULT_PATH);
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    info!(path = %path.display(), "no configuration file: built-in defaults");
                    Ok(Config::default())
                }
                _ => load_config(path),
            }
        }
    }
}

/// What systemd asked to be told, if anything.
fn notifier() -> Notifier {
    let notifier = NotifyEnv::from_env()
        .map_err(|e| e.to_string())
        .and_then(|env| Notifier::new(&env).map_err(|e| e.to_string()));
    notifier.unwrap_or_else(|e| {
        warn!("not notifying systemd: {e}");
        Notifier::none()
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are in place once this returns, so
/// a signal during start-up (recovery can take a while) also stops cleanly.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn run_box(config: Config) -> Result<()> {
    // Both ends are in this process: without a configured key, any will do.
    let key = match config.link_key()? {
        Some(key) => key,
        None => LinkKey::new(rand::random::<[u8; 32]>().to_vec()).expect("a non-empty key"),
    };
    let plan = Plan::both(&config, key);
    let shutdown = shutdown_signal()?;
    let (appliance, handle) = Appliance::new(plan, notifier());
    let front = Front::open(&config).spawn(&handle);
    drop(handle);
    let result = appliance.run(shutdown).await.context("recbox");
    // The front ends with the appliance's events, after the last chime.
    let _ = front.await;
    result
}

async fn run_mixer(config: Config, recorder: LinkAddr, key: LinkKey) -> Result<()> {
    let plan = Plan::mixer_only(&config, recorder, key);
    let shutdown = shutdown_signal()?;
    let (appliance, _handle) = Appliance::new(plan, notifier());
    appliance.run(shutdown).await.context("mixer")
}

async fn demo(config: DemoConfig) -> Result<()> {
    if !(1..=16).contains(&config.participants) {
        bail!("--participants must be 1..=16, got {}", config.participants);
    }
    let outcome = recbox::demo::run(config, &mut std::io::stdout()).await?;
    for (n, dir) in outcome.segments.iter().enumerate() {
        let mut inspection = match inspect::inspect(dir) {
            Ok(inspection) => inspection,
            Err(e) => {
                println!("\nrecording  {}: {e}", dir.display());
                continue;
            }
        };
        // The chain is the same in every segment: shown once, under the last.
        if n + 1 < outcome.segments.len() {
            inspection.chain.clear();
        }
        println!("\n{inspection}");
    }
    let files: Vec<String> = outcome
        .segments
        .iter()
        .map(|dir| dir.join(MP4_FILE).display().to_string())
        .collect();
    match files.as_slice() {
        [] => {}
        [one] => println!("play it: ffplay {one}"),
        [first, rest @ ..] => println!(
            "play it: ffplay {first}\n  the recording goes on in {}, in order: {}",
            match rest.len() {
                1 => "one more segment".to_string(),
                n => format!("{n} more segments"),
            },
            rest.join(" ")
        ),
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

async fn bench(args: BenchArgs) -> Result<()> {
    let mut out = std::io::stdout();
    let parts = if args.parts.is_empty() {
        &BenchPart::ALL[..]
    } else {
        &args.parts[..]
    };
    let dir = |part: &str| match &args.dir {
        Some(d) => Ok(d.join(part)),
        None => tempfile_dir(part),
    };
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match part {
            BenchPart::Link => {
                println!("== media link throughput (loopback) ==");
                recbox::bench::link::run(&mut out, args.seconds).await?;
            }
            BenchPart::Writer => {
                println!("== recorder write throughput vs plain sequential write ==");
                let dir = match &args.dir {
                    Some(d) => d.clone(),
                    None => tempfile_dir("write")?,
                };
                recbox::bench::writer::run(&mut out, &dir)?;
            }
            BenchPart::Faults => {
                println!("== fault latency: fault to Fault frame at the link client ==");
                recbox::bench::faults::run(&mut out, args.trials).await?;
            }
            BenchPart::FaultsE2e => {
                println!("== fault feedback end to end: fault to announcement at the terminals ==");
                recbox::bench::faults_e2e::run(&mut out, args.trials).await?;
            }
            BenchPart::Mix => {
                let dir = dir("mix")?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let engine = recbox::bench::mix::recbox_side::engine_config();
                let config = MixBenchConfig {
                    participants: args.participants.clone(),
                    seconds: args.mix_seconds,
                    warmup: args.warmup,
                    rounds: args.mix_rounds,
                    dir,
                    ffmpeg: FfmpegSettings {
                        preset: args.x264_preset.clone(),
                        threads: args.ffmpeg_threads,
                        gop_frames: (engine.keyframe_interval.as_secs_f64() * f64::from(engine.fps))
                            .round() as u32,
                    },
                };
                // Blocking work of its own (child processes, replay threads).
                tokio::task::block_in_place(|| recbox::bench::mix::run(&mut out, &config))?;
            }
        }
    }
    Ok(())
}

fn tempfile_dir(part: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("recbox-bench-{part}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
