//! `recbox sfu-sim`: the simulated SFU of the lab.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::info;

use super::{parse_duration, parse_video_size, CodecArgs};
use recbox::sfu::sim::{ImpairmentConfig, Schedule, SfuSim, SimConfig, SimEvent};
use recbox::synth::PatternSpec;

#[derive(clap::Args)]
pub struct Args {
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
    #[command(flatten)]
    codecs: CodecArgs,
}

impl Args {
    fn config(self) -> Result<SimConfig> {
        let (width, height) = self.size;
        Ok(SimConfig {
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
            codecs: self.codecs.mix()?,
            ..SimConfig::default()
        })
    }
}

/// Runs the simulated SFU until interrupted; stdout carries only the announcements,
/// one JSON line each, as the terminals and the control platform would see them.
pub async fn run(args: Args) -> Result<()> {
    let listen = args.listen;
    let config = args.config()?;
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
