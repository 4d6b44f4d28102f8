//! `recbox mixer`: the mixer alone, sending to a recorder on another machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{load_config, notifier, shutdown_signal, KeyArgs};
use recbox::appliance::{Appliance, Plan};
use recbox::config::{Config, ConfigError};
use recbox::encoder::EncoderKind;
use recbox::link::transport::LinkAddr;
use recbox::media::picture::VideoSize;

#[derive(clap::Args)]
pub struct Args {
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

impl Args {
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

pub async fn run(args: Args) -> Result<()> {
    let config = args.config()?;
    let key = match args.key.given()? {
        Some(key) => key,
        None => config.link_key()?.context(
            "no link key: give --key-file FILE, --key KEY, RECBOX_LINK_KEY or link.key_file in --config",
        )?,
    };
    let recorder = args.recorder.clone().unwrap_or_else(|| config.local_link());
    let plan = Plan::mixer_only(&config, recorder, key);
    let shutdown = shutdown_signal()?;
    let (appliance, _handle) = Appliance::new(plan, notifier());
    appliance.run(shutdown).await.context("mixer")
}
