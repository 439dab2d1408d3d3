//! `neuron self-check`: a short handshake story written through the durable log on this machine,
//! then verified and replayed.

use std::path::PathBuf;

use anyhow::Context;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Where to keep the log; a temporary directory, removed afterwards, when not given.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let temporary;
    let dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::tempdir().context("creating a temporary directory")?;
            temporary.path().to_path_buf()
        }
    };
    println!("neuron self-check: event log in {}", dir.display());
    let outcome = super::common::runtime()?
        .block_on(neuron::tools::selfcheck::run(&dir))
        .context("self-check")?;
    println!(
        "appended {} events from 8 concurrent sessions in {} durable batches ({:.1} ms, fdatasync'd)",
        outcome.appended,
        outcome.batches,
        outcome.append_time.as_secs_f64() * 1000.0
    );
    let report = &outcome.report;
    println!(
        "verified {} records: head {} at seq {}",
        report.records, report.head, report.last_seq
    );
    if let Some(checkpoint) = &report.last_checkpoint {
        println!(
            "last checkpoint: seq {} covering up to seq {}, signed by {}",
            checkpoint.seq, checkpoint.upto, checkpoint.signer
        );
    }
    let (active, terminated) = outcome.views.relationships.counts();
    println!(
        "views: {} sessions ({} live), {} relationships active, {} terminated; neuron key {}",
        outcome.views.sessions.all().count(),
        outcome.views.sessions.live_count(),
        active,
        terminated,
        outcome.public_key
    );
    match &report.problem {
        None => {
            println!("log intact");
            Ok(Outcome::Done)
        }
        Some(problem) => {
            println!(
                "log NOT intact at seq {}: {}",
                problem.seq,
                problem.fault.describe()
            );
            Ok(Outcome::Found)
        }
    }
}
