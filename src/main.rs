//! The `neuron` command: parses the command line, sets up output, and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The Neuron: an audit-first trust broker for healthcare agents.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a short handshake story through the durable event log, then verify and replay it.
    SelfCheck {
        /// Where to keep the log; a temporary directory, removed afterwards, when not given.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("neuron: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::SelfCheck { data_dir } => {
            let temporary;
            let dir = match data_dir {
                Some(dir) => dir,
                None => {
                    temporary = tempfile::tempdir().context("creating a temporary directory")?;
                    temporary.path().to_path_buf()
                }
            };
            println!("neuron self-check: event log in {}", dir.display());
            let outcome = runtime
                .block_on(neuron::selfcheck::run(&dir))
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
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    println!(
                        "log NOT intact at seq {}: {}",
                        problem.seq,
                        problem.fault.describe()
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
