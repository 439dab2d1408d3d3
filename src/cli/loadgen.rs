//! `neuron loadgen`: real WebSocket patients against a server; handshakes/s and latency.

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The server's handshake URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws/handshake")]
    url: String,
    /// Handshakes in all.
    #[arg(long, default_value_t = 10_000)]
    n: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    c: u64,
    /// new: a new patient per handshake; existing: repeat handshakes of established patients;
    /// idle: hold upgrade requests open without sending anything.
    #[arg(long, value_enum, default_value_t = neuron::tools::loadgen::Mode::New)]
    mode: neuron::tools::loadgen::Mode,
    /// The provider the consents name.
    #[arg(long, default_value = neuron::config::DEMO_PROVIDER_NPI)]
    provider: String,
    /// Every handshake asks for a consent receipt.
    #[arg(long)]
    receipt: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let load = neuron::tools::loadgen::Load {
        url: args.url,
        total: args.n,
        concurrency: args.c,
        mode: args.mode,
        provider: args.provider,
        receipt: args.receipt,
    };
    let summary = super::common::runtime()?.block_on(neuron::tools::loadgen::run(load));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} completed, {} failed in {:.2} s: {:.0} handshakes/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        summary.completed,
        summary.failed,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        ms(summary.percentile(0.5)),
        ms(summary.percentile(0.9)),
        ms(summary.percentile(0.99)),
        ms(summary.percentile(1.0)),
    );
    Ok(if summary.failed == 0 {
        Outcome::Done
    } else {
        Outcome::Found
    })
}
