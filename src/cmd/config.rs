//! `recbox config check FILE` and `recbox config defaults`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::config_error;
use recbox::config::Config;

#[derive(Subcommand)]
pub enum Args {
    /// Check FILE: print the configuration it gives, or every problem with its key.
    Check { file: PathBuf },
    /// Print the documented default configuration (board/recbox.toml).
    Defaults,
}

pub fn run(args: Args) -> Result<()> {
    match args {
        Args::Check { file } => {
            let loaded = Config::load(&file).map_err(|e| config_error(&file, e))?;
            // The key file is otherwise read only when the box starts.
            loaded
                .config
                .link_key()
                .map_err(|e| config_error(&file, e))?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", loaded.config.to_toml());
        }
        Args::Defaults => print!("{}", recbox::config::DOCUMENTED_DEFAULTS),
    }
    Ok(())
}
