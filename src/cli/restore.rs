//! `neuron restore`: a data directory rebuilt from a verified export.

use std::path::PathBuf;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The JSONL export (`neuron export`, or the operator API's GET /v1/audit/export).
    export: PathBuf,
    /// The data directory to create; it must not exist or be empty. With --to, where the key
    /// file goes (only needed with --key).
    #[arg(long, required_unless_present = "to")]
    data_dir: Option<PathBuf>,
    /// Restore into a new log in PostgreSQL instead (`postgres://…?log=NAME`, the log `main` when
    /// not named), written in one transaction; a log that holds records is refused.
    #[arg(long)]
    to: Option<String>,
    /// The Neuron's key file, restored with the log: every record must lie under a checkpoint it
    /// signed.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Without --key: the key every record's checkpoint must be signed by (base64url, or a file
    /// holding it); the restored server then makes a new key at its first start.
    #[arg(long, allow_hyphen_values = true)]
    trusted_key: Option<String>,
    /// Restore records after the last trusted checkpoint too, recorded as unverified in the
    /// log.restored record (no later checkpoint vouches for them; verify keeps naming them).
    #[arg(long)]
    allow_unsigned_tail: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let location = args
        .to
        .as_deref()
        .map(neuron_events::store::PostgresLocation::parse)
        .transpose()?;
    let target = match (&location, &args.data_dir) {
        (Some(location), data_dir) => neuron::restore::Target::Postgres {
            location,
            data_dir: data_dir.as_deref(),
        },
        (None, Some(data_dir)) => neuron::restore::Target::DataDir(data_dir),
        (None, None) => {
            anyhow::bail!("name where to restore: --data-dir DIR, or --to postgres://…")
        }
    };
    let request = neuron::restore::Request {
        export: &args.export,
        target,
        key: args.key.as_deref(),
        trusted_key: args
            .trusted_key
            .as_deref()
            .map(neuron::investigate::trusted_key)
            .transpose()?,
        allow_unsigned_tail: args.allow_unsigned_tail,
        clock: &neuron_events::SystemClock,
    };
    let restored = neuron::restore::restore(&request)?;
    for removed in &restored.removed_staging {
        println!(
            "removed {}, left by a restore that was stopped midway",
            removed.display()
        );
    }
    let report = &restored.report;
    println!(
        "restored {} records into {}, then log.restored at seq {} (head {})",
        restored.restored.records,
        target.describe(),
        report.last_seq,
        report.head
    );
    println!(
        "every record lies under a checkpoint signed by {}",
        restored.restored.trusted_key
    );
    if let Some(range) = &restored.restored.unverified {
        println!(
            "except {range}: no checkpoint of that key covers them; restored because --allow-unsigned-tail was given, and recorded as unverified"
        );
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
