//! `recbox web hash-password`.

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Args {
    /// Read a password from the first line of stdin and print its argon2 hash, for
    /// web.admin_password_hash.
    HashPassword,
}

pub fn run(args: Args) -> Result<()> {
    match args {
        Args::HashPassword => {
            println!(
                "{}",
                recbox::web::hash_password_from(std::io::stdin().lock())?
            );
        }
    }
    Ok(())
}
