//! `recbox recorder`: the recorder alone, accepting media-link sessions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::info;

use super::{parse_duration, parse_size, shutdown_signal, KeyArgs};
use recbox::duration;
use recbox::link::codec::DEFAULT_MAX_FRAME;
use recbox::link::handshake::KeyRing;
use recbox::link::transport::LinkAddr;
use recbox::recorder::monitor::MonitorConfig;
use recbox::recorder::recording::WriterOptions;
use recbox::recorder::service::{self, RecorderConfig, DEFAULT_STATS_INTERVAL};
use recbox::size;
use recbox::storage::health::HealthConfig;

#[derive(clap::Args)]
pub struct Args {
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
    #[arg(long, default_value = duration::format(service::DEFAULT_HANDSHAKE_TIMEOUT), value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// Most connections waiting to authenticate; beyond it the oldest is closed.
    #[arg(long, default_value_t = service::DEFAULT_MAX_UNAUTHENTICATED)]
    max_unauthenticated: usize,
    /// Interval of the Stats frames sent to the mixer, e.g. 5s or 500ms.
    #[arg(long, default_value = duration::format(DEFAULT_STATS_INTERVAL), value_parser = parse_duration)]
    stats_interval: Duration,
    /// Largest accepted media-link frame in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Where recordings continue while the storage is faulted (full, offline,
    /// read-only, failing), e.g. the board's own flash; none by default.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Most bytes one recording may put on the spool, e.g. 512M or 2G.
    #[arg(long, default_value = size::format(WriterOptions::default().spool_max_bytes), value_parser = parse_size)]
    spool_max: u64,
    /// How often the storage is checked (free space, mount table, and a probe
    /// write while it is faulted), e.g. 1s or 200ms.
    #[arg(long, default_value = duration::format(MonitorConfig::DEFAULT_POLL), value_parser = parse_duration)]
    storage_poll: Duration,
    /// LowSpace warning below this much free space, e.g. 2G (default: the
    /// smaller of 1 GiB and 5% of the storage).
    #[arg(long, value_parser = parse_size)]
    low_space: Option<u64>,
    /// DiskFull (and failover) below this much free space, before a write fails.
    #[arg(long, default_value = size::format(HealthConfig::default().full_space_bytes), value_parser = parse_size)]
    full_space: u64,
}

pub async fn run(args: Args) -> Result<()> {
    let previous = KeyArgs {
        key: None,
        key_file: args.previous_key_file,
    };
    let keys = KeyRing {
        current: args.key.load()?,
        previous: previous.given().context("previous link key")?,
    };
    let mut config = RecorderConfig::new(args.storage, keys);
    config.handshake_timeout = args.handshake_timeout;
    config.max_unauthenticated = args.max_unauthenticated;
    config.stats_interval = args.stats_interval;
    config.max_frame = args.max_frame;
    config.spool = args.spool;
    config.writer.spool_max_bytes = args.spool_max;
    config.storage_poll = args.storage_poll;
    config.health.low_space_bytes = args.low_space;
    config.health.full_space_bytes = args.full_space;
    let shutdown = shutdown_signal()?;
    let listener = service::open(&args.listen, &config).await?;
    service::serve_until(listener, Arc::new(config), shutdown).await;
    info!("recorder stopped");
    Ok(())
}
