//! `recbox key new`: a fresh media-link key.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use recbox::link::keyfile;

#[derive(Subcommand)]
pub enum Args {
    /// Write a fresh random link key (64 hex digits) to FILE, readable only by its owner.
    New {
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args {
        Args::New { file, force } => {
            keyfile::write_new(&file, rand::random(), force)?;
            println!("wrote a new link key to {}", file.display());
        }
    }
    Ok(())
}
