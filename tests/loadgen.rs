//! The load tool against a real server: it counts only handshakes that complete with close 1000,
//! in both modes, and the server ends up with the relationships the modes imply.

use std::sync::Arc;

use neuron::config::Config;
use neuron::server::{Options, Server};
use neuron::tools::loadgen::{self, Load, Mode};
use neuron_events::testing::neuron_key;
use neuron_events::SystemClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_counts_completed_handshakes_in_new_and_existing_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.port = 0;
    config.admin.port = 0;
    config.storage.data_dir = dir.path().to_path_buf();
    // The load tool signs tokens with the real time, so the server uses the real clock here.
    let options = Options {
        clock: Arc::new(SystemClock),
        ids: Arc::new(neuron::ids::RandomIds),
        key: Some(neuron_key()),
        acknowledge_rollback: false,
        start_over: neuron::server::StartOver::Nothing,
    };
    let server = Server::start(config, options).await.unwrap();
    let url = format!("ws://{}/ws/handshake", server.local_addr());
    let load = |mode, total| Load {
        url: url.clone(),
        total,
        concurrency: 4,
        mode,
        provider: "1234567893".into(),
        receipt: false,
    };

    let new = loadgen::run(load(Mode::New, 24)).await;
    assert_eq!((new.completed, new.failed), (24, 0));
    assert_eq!(new.latencies.len(), 24);
    // Each latency is one handshake's, measured within the run.
    assert!(new
        .latencies
        .iter()
        .all(|latency| !latency.is_zero() && *latency <= new.elapsed));
    assert_eq!(server.views().relationships.counts(), (24, 0));

    let existing = loadgen::run(load(Mode::Existing, 20)).await;
    assert_eq!((existing.completed, existing.failed), (20, 0));
    assert_eq!(
        server.views().relationships.counts(),
        (28, 0),
        "4 workers established once, then reused"
    );

    let wrong_provider = loadgen::run(Load {
        provider: "1003000126".into(),
        ..load(Mode::New, 5)
    })
    .await;
    assert_eq!(
        (wrong_provider.completed, wrong_provider.failed),
        (0, 5),
        "a refused handshake is not counted"
    );
    server.stop("test over").await.unwrap();
}
