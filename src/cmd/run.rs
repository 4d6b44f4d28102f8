//! `recbox run`: the box, recorder and mixer in one process over the local socket.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{box_config, notifier, shutdown_signal};
use recbox::appliance::front::Front;
use recbox::appliance::{Appliance, Plan};
use recbox::link::handshake::LinkKey;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file [default: /etc/recbox/recbox.toml, or the built-in
    /// defaults when that file does not exist].
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<()> {
    let config = box_config(args.config)?;
    // Both ends are in this process: without a configured key, any will do.
    let key = match config.link_key()? {
        Some(key) => key,
        None => LinkKey::new(rand::random::<[u8; 32]>().to_vec()).expect("a non-empty key"),
    };
    let plan = Plan::both(&config, key);
    let shutdown = shutdown_signal()?;
    let web = match config.web.listen {
        Some(addr) => Some(recbox::web::Web::bind(addr, recbox::web::Settings::of(&config)).await?),
        None => None,
    };
    let (appliance, handle) = Appliance::new(plan, notifier());
    let (front, panel) = Front::open(&config).spawn_watched(&handle);
    let web = web.map(|web| web.spawn(handle.commands(), handle.subscribe(), panel));
    drop(handle);
    let result = appliance.run(shutdown).await.context("recbox");
    // The front ends with the appliance's events, after the last chime.
    let _ = front.await;
    if let Some(web) = web {
        web.abort();
    }
    result
}
