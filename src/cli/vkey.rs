//! `neuron vkey`: the log's verifier key, what patients' agents and auditors check receipts and
//! checkpoints against (SPEC §3.5): the Neuron's public key under the log's origin.

use std::path::PathBuf;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The data directory holding neuron.key.
    #[arg(default_value = "./data")]
    data_dir: PathBuf,
    /// The log's origin (default: audit.origin of the configuration, or its derived default).
    #[arg(long)]
    origin: Option<String>,
    /// Configuration file the origin is read from (default: ./neuron.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let origin = match args.origin {
        Some(origin) => origin,
        None => {
            let (config, _) = neuron::config::Config::load(
                args.config.as_deref(),
                std::env::vars(),
                &neuron::config::Flags::default(),
            )?;
            config.origin()
        }
    };
    let path = args.data_dir.join(neuron_events::checkpoint::KEY_FILE);
    let key = neuron_events::NeuronKey::load(&path)?;
    let vkey = key.verifier_key(&origin)?;
    super::verify::print_all(&format!("{}\n", vkey.to_text()))?;
    Ok(Outcome::Done)
}
