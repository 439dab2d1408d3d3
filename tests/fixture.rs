//! The investigator fixture: a log written by a real server run (injected clock, ids and keys) with
//! a new relationship, its reuse, refusals, a queued and promoted session, an auth timeout, and a
//! shutdown with a live session. It is committed as `tests/fixtures/server_run.jsonl`; this test
//! regenerates it and fails if the committed file differs. To change it on purpose, run with
//! `NEURON_WRITE_FIXTURE=1` and review the diff.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{until, until_queued, NOW, PROVIDER};
use neuron::config::Config;
use neuron::ids::SeededIds;
use neuron::server::{Options, Server};
use neuron::tools::client::{self, Patient};
use neuron_events::testing::{fixed_clock, neuron_key, verified_records};
use tokio_tungstenite::tungstenite::Message;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/server_run.jsonl"
);

fn from(client: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from((
        [127, 12, 0, client],
        42_000 + u16::from(client),
    )))
}

#[tokio::test]
async fn the_committed_fixture_is_what_a_server_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.port = 0;
    config.admin.port = 0;
    config.storage.data_dir = dir.path().to_path_buf();
    config.websocket.max_concurrent_handshakes = 1;
    config.websocket.auth_timeout_ms = 300;
    let options = Options {
        clock: Arc::new(fixed_clock()),
        ids: Arc::new(SeededIds::new(11)),
        key: Some(neuron_key()),
        acknowledge_rollback: false,
        start_over: neuron::server::StartOver::Nothing,
    };
    let server = Server::start(config, options).await.unwrap();
    let url = format!("ws://{}/ws/handshake", server.local_addr());
    let ada = Patient::from_seed("patient-agent-ada", [0x21; 32]);
    let bob = Patient::from_seed("patient-agent-bob", [0x22; 32]);

    assert!(client::handshake(&url, from(1), &ada, PROVIDER, NOW)
        .await
        .unwrap()
        .completed());
    assert!(client::handshake(&url, from(2), &ada, PROVIDER, NOW)
        .await
        .unwrap()
        .completed());
    let refused = client::handshake(&url, from(3), &bob, "1003000126", NOW)
        .await
        .unwrap();
    assert_eq!(refused.types(), ["handshake.error"]);
    let mut forged: serde_json::Value =
        serde_json::from_str(&bob.auth_frame(&bob.claims(PROVIDER, NOW - 60, NOW + 3600))).unwrap();
    forged["patient_agent_id"] = "patient-agent-ada".into();
    let mut connection = client::connect(&url, from(4)).await.unwrap();
    let impostor = client::converse(
        &mut connection,
        vec![Message::text(forged.to_string())],
        None,
    )
    .await;
    assert_eq!(impostor.close_code, Some(4003));

    // Bob holds the only slot without speaking; Ada waits in the queue, is promoted when Bob's auth
    // times out, and completes.
    let mut silent = client::connect(&url, from(5)).await.unwrap();
    let queued_url = url.clone();
    let waiting = tokio::spawn(async move {
        client::handshake(
            &queued_url,
            from(6),
            &Patient::from_seed("patient-agent-ada", [0x21; 32]),
            PROVIDER,
            NOW,
        )
        .await
    });
    until_queued(&server, 1).await;
    let timed_out = client::converse(&mut silent, Vec::new(), None).await;
    assert_eq!(timed_out.close_code, Some(4001));
    assert!(waiting.await.unwrap().unwrap().completed());

    // A live session at shutdown.
    let mut last = client::connect(&url, from(7)).await.unwrap();
    until(&server, |server| server.active_sessions().len() == 1).await;
    let reader = tokio::spawn(async move { client::converse(&mut last, Vec::new(), None).await });
    server.stop("SIGTERM").await.unwrap();
    assert_eq!(reader.await.unwrap().close_code, Some(1001));

    let written = verified_records(&dir.path().join("log"));
    if std::env::var_os("NEURON_WRITE_FIXTURE").is_some() {
        std::fs::write(FIXTURE, &written).unwrap();
    }
    let committed = std::fs::read_to_string(FIXTURE).unwrap_or_default();
    assert!(committed == written, "tests/fixtures/server_run.jsonl differs from what the server writes; rerun with NEURON_WRITE_FIXTURE=1 and review the diff");
}
