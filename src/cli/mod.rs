//! The `neuron` command line (SPEC §6): one module per subcommand, each with its own arguments and
//! one function that runs it. Every failure flows up here as an error, and [`run`] is the one
//! place that prints it and picks the exit code.

mod admin_token;
mod check_receipt;
mod common;
mod demo_client;
mod export;
mod init;
mod loadgen;
mod replay;
mod restore;
mod self_check;
mod serve;
mod timeline;
mod verify;
mod vkey;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use common::Outcome;

/// The Neuron: an audit-first trust broker for healthcare agents.
#[derive(Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Neuron: the handshake WebSocket listener on the durable event log.
    Serve(serve::Args),
    /// Print a fresh bearer token for the operator API and the hash to list in
    /// `[admin] token_hashes`. The server keeps only the hash; keep the token secret.
    AdminToken,
    /// Run one real handshake against a server with a freshly generated patient key, printing
    /// every message.
    DemoClient(demo_client::Args),
    /// Apply load: real WebSocket patients, each with its own key; prints handshakes/s and latency.
    Loadgen(loadgen::Args),
    /// Verify a log offline: a data directory, a sled log or a JSONL export. Exit 0 intact, 1 not
    /// intact, 2 unreadable.
    Verify(verify::Args),
    /// The state as of a point in the log: providers, relationships, live sessions, the queue, and
    /// how handshakes ended.
    Replay(replay::Args),
    /// Every record touching one session, patient, relationship or provider, in order, in words.
    Timeline(timeline::Args),
    /// Write a log's records: as JSONL, byte for byte (verifiable on its own), or as FHIR.
    Export(export::Args),
    /// Rebuild a data directory from an export (the backup): the export is verified, written as a
    /// store, verified again, and moved into place. Exit 0 restored, 1 the export does not verify,
    /// 2 anything else.
    Restore(restore::Args),
    /// Check a consent receipt offline against the log's verifier key (and trusted witnesses).
    /// Exit 0 valid, 1 invalid (saying why), 2 unreadable.
    CheckReceipt(check_receipt::Args),
    /// Print the log's verifier key: what receipts and checkpoints are checked against.
    Vkey(vkey::Args),
    /// Write a commented neuron.toml with every key at its default.
    Init(init::Args),
    /// Write a short handshake story through the durable event log, then verify and replay it.
    SelfCheck(self_check::Args),
}

/// Runs the command line, prints any error (escaped: it may quote a log) and gives the exit code:
/// 0 done, 1 done and something found wrong (a log not intact, an export that does not verify), 2
/// could not be done.
pub(crate) fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::AdminToken => admin_token::run(),
        Command::DemoClient(args) => demo_client::run(args),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Timeline(args) => timeline::run(args),
        Command::Export(args) => export::run(args),
        Command::Restore(args) => restore::run(args),
        Command::CheckReceipt(args) => check_receipt::run(args),
        Command::Vkey(args) => vkey::run(args),
        Command::Init(args) => init::run(args),
        Command::SelfCheck(args) => self_check::run(args),
    };
    match outcome {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Found) => ExitCode::from(1),
        Err(error) => {
            eprintln!(
                "neuron: {}",
                neuron::investigate::safe(&format!("{error:#}"))
            );
            ExitCode::from(exit_code(&error))
        }
    }
}

/// The exit code of a command that failed: 1 for an export that does not verify (`restore`), 2
/// for everything else.
fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<neuron::restore::RestoreError>() {
        Some(error) if error.is_about_the_export() => 1,
        _ => 2,
    }
}
