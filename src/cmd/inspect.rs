//! `recbox inspect DIR`: what a recording directory holds.

use std::path::PathBuf;

use anyhow::{Context, Result};

use recbox::recorder::inspect;

#[derive(clap::Args)]
pub struct Args {
    dir: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let report = inspect::inspect(&args.dir)
        .with_context(|| format!("inspecting {}", args.dir.display()))?;
    println!("{report}");
    Ok(())
}
