use std::io::IsTerminal;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "recbox", version, about = "Meeting-room recording box")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the recorder: accept media-link sessions and write recordings.
    Recorder(cmd::recorder::Args),
    /// Run the box: recorder and mixer in one process over the local socket,
    /// recording the SFU's meeting, as the systemd unit does.
    Run(cmd::run::Args),
    /// Run the mixer alone: join the SFU's meeting, mix it and send it to a recorder
    /// on another machine. Settings come from --config (or the built-in defaults),
    /// flags override them.
    Mixer(cmd::mixer::Args),
    /// Media-link keys.
    #[command(subcommand)]
    Key(cmd::key::Args),
    /// Check a configuration file, or print the documented defaults.
    #[command(subcommand)]
    Config(cmd::config::Args),
    /// The web page's admin password.
    #[command(subcommand)]
    Web(cmd::web::Args),
    /// Print what a recording directory holds: tracks, fragments, time span, health.
    Inspect(cmd::inspect::Args),
    /// Recover a recording by hand: truncate a torn tail, rebuild the index and playlist.
    Repair(cmd::repair::Args),
    /// Run a meeting end to end on this machine with built-in defaults: a simulated
    /// SFU sends N participants as real RTP, the mixer mixes and composites them, the
    /// recorder writes the recording; progress and every notice are shown.
    #[cfg(feature = "lab")]
    Demo(cmd::demo::Args),
    /// Run a simulated SFU: once a mixer connects to the control channel, send it N
    /// participants as real H.264 and Opus RTP; print every notice it sends as a JSON line.
    #[cfg(feature = "lab")]
    SfuSim(cmd::sfu_sim::Args),
    /// Print benchmark figures: media-link and recording-writer throughput, fault
    /// latencies (to the link, and end to end to the terminals), and the mixer side
    /// by side with ffmpeg.
    #[cfg(feature = "lab")]
    Bench(cmd::bench::Args),
    /// The recbox side of `bench mix`: mixer and recorder in one process, for a
    /// fixed roster; stops when stdin closes.
    #[cfg(feature = "lab")]
    #[command(hide = true)]
    BenchMixSide(cmd::bench::MixSideArgs),
}

impl Command {
    /// The demo and the benchmarks print their own lines (the bench provokes storage
    /// faults on purpose); the services log what they do.
    fn default_log_level(&self) -> &'static str {
        match self {
            #[cfg(feature = "lab")]
            Command::Demo(_) | Command::Bench(_) => "error",
            _ => "info",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| cli.command.default_log_level().into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: the journal would keep the escapes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Recorder(args) => rt.block_on(cmd::recorder::run(args)),
        Command::Run(args) => rt.block_on(cmd::run::run(args)),
        Command::Mixer(args) => rt.block_on(cmd::mixer::run(args)),
        Command::Key(args) => cmd::key::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Web(args) => cmd::web::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Repair(args) => cmd::repair::run(args),
        #[cfg(feature = "lab")]
        Command::Demo(args) => rt.block_on(cmd::demo::run(args)),
        #[cfg(feature = "lab")]
        Command::SfuSim(args) => rt.block_on(cmd::sfu_sim::run(args)),
        #[cfg(feature = "lab")]
        Command::Bench(args) => rt.block_on(cmd::bench::run(args)),
        #[cfg(feature = "lab")]
        Command::BenchMixSide(args) => rt.block_on(cmd::bench::mix_side(args)),
    }
}
