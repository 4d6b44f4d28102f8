//! The commands of the `recbox` binary, one module each; what they share is here:
//! the link key arguments, value parsers, loading the box configuration, telling
//! systemd, and the shutdown signals.

pub mod config;
pub mod inspect;
pub mod key;
pub mod mixer;
pub mod recorder;
pub mod repair;
pub mod run;
pub mod web;

#[cfg(feature = "lab")]
pub mod bench;
#[cfg(feature = "lab")]
pub mod demo;
#[cfg(feature = "lab")]
pub mod sfu_sim;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tracing::{info, warn};

use recbox::config::{Config, ConfigError};
use recbox::link::handshake::LinkKey;
use recbox::systemd::{Notifier, NotifyEnv};

#[derive(clap::Args, Clone)]
pub struct KeyArgs {
    /// Pre-shared media-link key (prefer --key-file or RECBOX_LINK_KEY: argv is visible to others).
    #[arg(long, env = "RECBOX_LINK_KEY", hide_env_values = true)]
    key: Option<String>,
    /// File holding the pre-shared media-link key (surrounding whitespace is ignored).
    #[arg(long, conflicts_with = "key")]
    key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The key given on the command line (or in the environment), if any.
    pub fn given(&self) -> Result<Option<LinkKey>> {
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

    pub fn load(&self) -> Result<LinkKey> {
        self.given()?
            .context("no link key: give --key-file FILE, --key KEY or RECBOX_LINK_KEY")
    }
}

/// The simulated participants' video codecs, for the lab's commands: H.264 unless
/// named here.
#[cfg(feature = "lab")]
#[derive(clap::Args, Clone, Default)]
pub struct CodecArgs {
    /// Participants sending VP8 (libvpx) instead of H.264, e.g. 2,4 or 1-3.
    #[arg(long, value_name = "LIST", default_value = "")]
    vp8: recbox::sfu::sim::ParticipantList,
    /// Participants sending VP9, which the box does not decode (a placeholder tile,
    /// reported to the control platform), e.g. 3.
    #[arg(long, value_name = "LIST", default_value = "")]
    vp9: recbox::sfu::sim::ParticipantList,
}

#[cfg(feature = "lab")]
impl CodecArgs {
    pub fn mix(&self) -> Result<recbox::sfu::sim::CodecMix> {
        use recbox::synth::PatternCodec;
        Ok(recbox::sfu::sim::CodecMix::default()
            .with(&self.vp8, PatternCodec::Vp8)?
            .with(&self.vp9, PatternCodec::Vp9)?)
    }
}

/// WIDTHxHEIGHT, for the lab's commands (the box's take a `VideoSize`).
#[cfg(feature = "lab")]
pub fn parse_video_size(s: &str) -> Result<(u16, u16), String> {
    s.parse::<recbox::media::picture::VideoSize>()
        .map(|v| (v.width, v.height))
        .map_err(|e| e.to_string())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    recbox::duration::parse(s).map_err(|e| e.to_string())
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    recbox::size::parse(s).map_err(|e| e.to_string())
}

/// Every problem of a configuration file, one line each under its path.
pub fn config_error(path: &Path, e: ConfigError) -> anyhow::Error {
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

pub fn load_config(path: &Path) -> Result<Config> {
    let loaded = Config::load(path).map_err(|e| config_error(path, e))?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    Ok(loaded.config)
}

/// The box's configuration: the given file, else the default one if it exists,
/// else the built-in defaults.
pub fn box_config(path: Option<PathBuf>) -> Result<Config> {
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
pub fn notifier() -> Notifier {
    let env = match NotifyEnv::from_env() {
        Ok(env) => env,
        Err(e) => {
            warn!("not notifying systemd: {e}");
            return Notifier::none();
        }
    };
    Notifier::new(&env).unwrap_or_else(|e| {
        warn!("not notifying systemd: {e}");
        Notifier::none()
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are in place once this returns, so
/// a signal during start-up (recovery can take a while) also stops cleanly.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
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
