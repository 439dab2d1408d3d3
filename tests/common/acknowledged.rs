//! What a test of a replicated log asks of it: a load that records every handshake the server
//! acknowledged (every `handshake.complete` it sent), and checks that the log at a URL holds them
//! all and verifies. Shared by the tests on a plain cluster (tests/postgres.rs) and under Patroni
//! (tests/patroni.rs).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::served::{serve_args, Served};
use super::{neuron, said};

/// `neuron serve --config {config}` on free ports, waiting (generously) until it listens.
pub(crate) fn serve_config(data: &Path, config: &Path, run: usize) -> Result<Served, String> {
    serve_args(
        data,
        run,
        None,
        &[],
        &["--config", config.to_str().unwrap()],
    )
}

/// Handshakes at `concurrency`, in rounds, until a round sees a failure or `stop` is set: every
/// relationship id the server acknowledged goes into `acknowledged`. Returns how many completed.
pub(crate) fn load_until_failure(
    url: String,
    concurrency: u64,
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut completed = 0;
        while !stop.load(Ordering::SeqCst) {
            let summary =
                runtime.block_on(neuron::tools::loadgen::run(neuron::tools::loadgen::Load {
                    url: url.clone(),
                    total: concurrency * 2,
                    concurrency,
                    mode: neuron::tools::loadgen::Mode::New,
                    provider: "1234567893".into(),
                    receipt: false,
                }));
            completed += summary.completed;
            acknowledged
                .lock()
                .unwrap()
                .extend(summary.acknowledged.iter().cloned());
            if summary.failed > 0 {
                break;
            }
        }
        completed
    })
}

/// Waits (generously) until `acknowledged` holds at least `count` ids.
pub(crate) fn until_acknowledged(acknowledged: &Mutex<BTreeSet<String>>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "no handshake was acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The relationship ids of every `connection.handshake_completed` record in the log at `url`.
pub(crate) fn completed_in_log(url: &str) -> BTreeSet<String> {
    let output = neuron(&["export", url]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (record["kind"] == "connection.handshake_completed").then(|| {
                record["data"]["relationship_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect()
}

/// `neuron verify URL`, which must find the log intact; its report.
pub(crate) fn verify_intact(url: &str) -> serde_json::Value {
    let output = neuron(&["verify", url, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every acknowledged handshake is in the log at `url`.
pub(crate) fn holds_every_acknowledged(url: &str, acknowledged: &BTreeSet<String>) {
    let logged = completed_in_log(url);
    let missing: Vec<_> = acknowledged.difference(&logged).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged handshakes are not in the log: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}
