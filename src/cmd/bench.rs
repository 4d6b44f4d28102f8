//! `recbox bench`: the benchmarks, and the recbox side of `bench mix` run as a child.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::parse_duration;
use recbox::bench::faults_e2e::E2eSfu;
use recbox::bench::mix::ffmpeg::FfmpegSettings;
use recbox::bench::mix::recbox_side::SideConfig;
use recbox::bench::mix::MixBenchConfig;
use recbox::bench::soak::SoakConfig;
use recbox::bench::BenchPart;
use recbox::encoder::EncoderKind;

#[derive(clap::Args)]
pub struct Args {
    /// Parts to run: link, writer, faults, faults-e2e, mix, soak (default: all but
    /// soak; the fault parts need root, mix needs ffmpeg).
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
    /// Faults-e2e: the SFUs the announcements go through, side by side: sim, janus
    /// (a real Janus in a network namespace), e.g. sim,janus.
    #[arg(long, value_delimiter = ',', default_value = "sim")]
    sfu: Vec<E2eSfu>,
    /// Mix: participant counts to measure, e.g. 4,9.
    #[arg(long, value_delimiter = ',', default_value = "4,9")]
    participants: Vec<u8>,
    /// Mix and soak: participants sending VP8 instead of H.264 (in every room), e.g. 2,4.
    #[arg(long, value_name = "LIST", default_value = "")]
    vp8: recbox::sfu::sim::ParticipantList,
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
    /// Mix: the output video's encoder, `software` (openh264 against libx264) or
    /// `none` (the encoder out of the figures, as with the box's hardware one:
    /// recbox's null encoder against ffmpeg's raw video to a null sink).
    #[arg(long, default_value = "software")]
    encoder: EncoderKind,
    /// Soak: minutes of meeting (3 hours: 180).
    #[arg(long, default_value_t = 30)]
    minutes: u32,
    /// Soak: participants in the meeting.
    #[arg(long, default_value_t = 9)]
    soak_participants: u8,
    /// Soak: how often the mixer + recorder process is sampled.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    soak_sample: Duration,
}

/// The recbox side of `bench mix`: mixer and recorder in one process, for a fixed
/// roster; stops when stdin closes.
#[derive(clap::Args)]
pub struct MixSideArgs {
    #[arg(long)]
    roster: PathBuf,
    #[arg(long)]
    storage: PathBuf,
    #[arg(long)]
    tap: Option<PathBuf>,
    #[arg(long, default_value = "software")]
    encoder: EncoderKind,
}

pub async fn mix_side(args: MixSideArgs) -> Result<()> {
    let config = SideConfig {
        roster: args.roster,
        storage: args.storage,
        tap: args.tap,
        encoder: args.encoder,
    };
    recbox::bench::mix::recbox_side::serve(config, &mut std::io::stdout()).await?;
    Ok(())
}

pub async fn run(args: Args) -> Result<()> {
    if let Some(&bad) = args.participants.iter().find(|n| !(1..=16).contains(*n)) {
        bail!("--participants must be 1..=16 each, got {bad}");
    }
    if !matches!(args.encoder, EncoderKind::Software | EncoderKind::Null) {
        bail!("--encoder must be software or none, got {}", args.encoder);
    }
    let codecs =
        recbox::sfu::sim::CodecMix::default().with(&args.vp8, recbox::synth::PatternCodec::Vp8)?;
    let mut out = std::io::stdout();
    let parts = if args.parts.is_empty() {
        &BenchPart::DEFAULT[..]
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
                recbox::bench::faults_e2e::run(&mut out, args.trials, &args.sfu).await?;
            }
            BenchPart::Mix => {
                let dir = dir("mix")?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let engine = recbox::bench::mix::recbox_side::engine_config(args.encoder.clone());
                let config = MixBenchConfig {
                    participants: args.participants.clone(),
                    codecs,
                    seconds: args.mix_seconds,
                    warmup: args.warmup,
                    rounds: args.mix_rounds,
                    encoder: args.encoder.clone(),
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
            BenchPart::Soak => {
                if !(1..=16).contains(&args.soak_participants) || args.minutes == 0 {
                    bail!("--soak-participants must be 1..=16 and --minutes at least 1");
                }
                let config = SoakConfig {
                    minutes: args.minutes,
                    participants: args.soak_participants,
                    encoder: args.encoder.clone(),
                    sample: args.soak_sample.max(Duration::from_secs(1)),
                    dir: dir("soak")?,
                    codecs,
                };
                tokio::task::block_in_place(|| recbox::bench::soak::run(&mut out, &config))?;
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
