//! `recbox demo`: a meeting recorded end to end on this machine, then inspected.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{parse_duration, parse_video_size, CodecArgs};
use recbox::demo::{DemoConfig, FaultPlan};
use recbox::encoder::EncoderKind;
use recbox::mixer::engine::EngineConfig;
use recbox::recorder::inspect;
use recbox::recorder::layout::MP4_FILE;

#[derive(clap::Args)]
pub struct Args {
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
    #[command(flatten)]
    codecs: CodecArgs,
}

pub async fn run(args: Args) -> Result<()> {
    let (width, height) = args.size;
    let config = DemoConfig {
        duration: args.duration,
        storage: args.storage,
        participants: args.participants,
        engine: EngineConfig {
            width,
            height,
            encoder: args.encoder,
            ..EngineConfig::default()
        },
        fault: args.fault,
        chimes: args.chimes,
        microphone: args.microphone,
        codecs: args.codecs.mix()?,
        ..DemoConfig::default()
    };
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
