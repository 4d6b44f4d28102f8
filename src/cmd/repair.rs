//! `recbox repair DIR`: recovery of one recording by hand.

use std::path::PathBuf;

use anyhow::{Context, Result};

use recbox::recorder::recovery;

#[derive(clap::Args)]
pub struct Args {
    dir: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let report = recovery::recover(&args.dir)
        .with_context(|| format!("repairing {}", args.dir.display()))?;
    println!("{report}");
    Ok(())
}
