//! `neuron restore`: a data directory rebuilt from a verified export.

use std::path::PathBuf;

use super::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The JSONL export (`neuron export`, or the operator API's GET /v1/audit/export).
    export: PathBuf,
    /// The data directory to create; it must not exist or be empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// The Neuron's key file to restore with it (it must have signed the export's checkpoints);
    /// without it the server makes a new key at its first start.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The export's checkpoints must be signed by this key (base64url, or a file holding it).
    #[arg(long, allow_hyphen_values = true)]
    trusted_key: Option<String>,
    /// With --trusted-key: accept records after the last trusted checkpoint.
    #[arg(long, requires = "trusted_key")]
    allow_unsigned_tail: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let options = neuron_events::VerifyOptions {
        trusted_key: args
            .trusted_key
            .as_deref()
            .map(neuron::investigate::trusted_key)
            .transpose()?,
        expected_head: None,
        allow_unsigned_tail: args.allow_unsigned_tail,
    };
    let restored =
        neuron::restore::restore(&args.export, &args.data_dir, &options, args.key.as_deref())?;
    let report = &restored.report;
    println!(
        "restored {} records into {} (head {} at seq {})",
        report.records,
        args.data_dir.display(),
        report.head,
        report.last_seq
    );
    if let Some(tail) = &report.unsigned_tail {
        println!("{tail} signed by no trusted checkpoint (accepted: --allow-unsigned-tail)");
    }
    if restored.key_restored {
        println!("the Neuron's key was restored with it");
    } else {
        println!(
            "no key restored: `neuron serve` will create a new one and record it in server.started"
        );
    }
    Ok(Outcome::Done)
}
