//! `neuron serve`: the server on its configuration until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Configuration file (default: ./neuron.toml when present, else built-in demo defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides storage.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides server.port (0 picks a free port and writes {data_dir}/serve.addr).
    #[arg(long)]
    port: Option<u16>,
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve a log that a witness saw rolled back or forked, accepting the loss: it is recorded
    /// in the log (log.rollback_acknowledged) for good.
    #[arg(long)]
    acknowledge_rollback: bool,
    /// Start an empty log although the data directory holds the Neuron's key (the log that key
    /// signed was lost and will not be restored); recorded in server.started.
    #[arg(long, conflicts_with = "new_key")]
    new_log: bool,
    /// Make a new key for a log whose key was lost; recorded in server.started. What the old key
    /// signed stays checkable against it only.
    #[arg(long)]
    new_key: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::common::purge_freed_memory_at_once();
    let runtime = super::common::runtime()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let flags = neuron::config::Flags {
        data_dir: args.data_dir,
        port: args.port,
    };
    let (config, source) =
        neuron::config::Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    match &source {
        neuron::config::Source::BuiltInDefaults => tracing::info!(
            organization = %config.organization.npi,
            providers = ?config.providers.iter().map(|p| p.npi.as_str()).collect::<Vec<_>>(),
            data_dir = %config.storage.data_dir.display(),
            "no configuration file: running on the built-in DEMO defaults (demo organization {} \"{}\", demo provider {}); write one with `neuron init`",
            config.organization.npi,
            config.organization.name,
            neuron::config::DEMO_PROVIDER_NPI,
        ),
        neuron::config::Source::File(path) => {
            tracing::info!(file = %path.display(), organization = %config.organization.npi, "configuration loaded")
        }
    }
    let shutdown = {
        let _inside = runtime.enter();
        shutdown_signal().context("listening for SIGINT and SIGTERM")?
    };
    let options = neuron::server::Options {
        acknowledge_rollback: args.acknowledge_rollback,
        start_over: match (args.new_log, args.new_key) {
            (true, _) => neuron::server::StartOver::Log,
            (_, true) => neuron::server::StartOver::Key,
            _ => neuron::server::StartOver::Nothing,
        },
        ..neuron::server::Options::default()
    };
    let outcome = runtime.block_on(neuron::server::run(config, options, shutdown));
    // After a failed write the process exits at once: tasks still blocked on a client are not
    // waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    outcome?;
    Ok(Outcome::Done)
}

/// Listens for SIGINT and SIGTERM from now on and resolves with the reason. The handlers are
/// installed before the server starts, so that a signal sent as soon as it listens stops it
/// gracefully instead of killing it. Must be called inside the runtime.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = String>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT".to_string(),
            _ = terminate.recv() => "SIGTERM".to_string(),
        }
    })
}
