//! `neuron init`: a commented neuron.toml with every key at its default.

use std::path::PathBuf;

use anyhow::Context;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Where to write it.
    #[arg(long, default_value = "neuron.toml")]
    path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.path.exists() && !args.force {
        anyhow::bail!(
            "{} exists; pass --force to overwrite it",
            args.path.display()
        );
    }
    std::fs::write(&args.path, neuron::config::TEMPLATE)
        .with_context(|| format!("writing {}", args.path.display()))?;
    println!("wrote {}", args.path.display());
    Ok(Outcome::Done)
}
