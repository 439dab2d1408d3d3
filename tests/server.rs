//! The server end to end: a real server on an ephemeral loopback port, real WebSocket clients from
//! fixed loopback source addresses, the injected clock, ids and keys. Each path asserts what the
//! client received and locks the exact record sequence (whole records, hashes included).

mod common;

use std::net::SocketAddr;

use common::{ada, config, lock_log, records, until_queued, url, NOW, PROVIDER};
use neuron::config::Config;
use neuron::server::Server;
use neuron::tools::client::{self, ClientError, Patient};
use neuron_events::testing::fixed_clock;
use tokio_tungstenite::tungstenite::Message;

async fn start(config: Config) -> Server {
    start_with_clock(config, fixed_clock()).await
}

async fn start_with_clock(config: Config, clock: neuron_events::SteppingClock) -> Server {
    common::start(config, clock, 7).await
}

/// A fixed loopback source address per test and client, so recorded peers never vary.
fn source(test: u8, client: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from((
        [127, 10, test, client],
        40_000 + u16::from(client),
    )))
}

#[tokio::test]
async fn a_new_patient_completes_and_gets_a_new_relationship() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let transcript = client::handshake(&url(&server), source(1, 1), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(
        transcript.types(),
        ["handshake.challenge", "handshake.complete"]
    );
    assert_eq!(transcript.close_code, Some(1000));
    let complete = &transcript.received[1];
    assert_eq!(complete["status"], "new");
    assert_eq!(
        complete["provider_endpoint"],
        "http://localhost:3000/ws/provider/1234567893"
    );
    assert_eq!(transcript.received[0]["organization_npi"], "1245319599");
    assert!(server.active_sessions().is_empty());
    server.stop("test over").await.unwrap();
    lock_log("server__new_relationship", dir.path());
}

#[tokio::test]
async fn an_existing_relationship_is_challenged_again_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let first = client::handshake(&url(&server), source(2, 1), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(first.completed());
    let second = client::handshake(&url(&server), source(2, 2), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(
        second.types(),
        ["handshake.challenge", "handshake.complete"],
        "the challenge is always required"
    );
    assert_eq!(second.received[1]["status"], "existing");
    assert_eq!(
        second.received[1]["relationship_id"],
        first.received[1]["relationship_id"]
    );
    server.stop("restart").await.unwrap();

    // Restarted five minutes later.
    let later = fixed_clock();
    later.advance(300_000);
    let server = start_with_clock(config(dir.path()), later).await;
    let third = client::handshake(&url(&server), source(2, 3), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(
        third.received[1]["status"], "existing",
        "the relationship is rebuilt from the log"
    );
    assert_eq!(
        third.received[1]["relationship_id"],
        first.received[1]["relationship_id"]
    );

    let thief = Patient::from_seed("patient-agent-ada", [0x66; 32]);
    let stolen = client::handshake(&url(&server), source(2, 4), &thief, PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(stolen.types(), ["handshake.error"]);
    assert_eq!(
        (stolen.received[0]["code"].as_str(), stolen.close_code),
        (Some("CONSENT_FAILED"), Some(4003))
    );
    server.stop("test over").await.unwrap();
    lock_log("server__existing_relationship_and_restart", dir.path());
}

#[tokio::test]
async fn a_tampered_token_is_an_early_consent_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let patient = ada();
    let mut frame: serde_json::Value =
        serde_json::from_str(&patient.auth_frame(&patient.claims(PROVIDER, NOW - 60, NOW + 3600)))
            .unwrap();
    frame["consent_token_payload"] =
        neuron_events::b64::encode(patient.claims("1245319599", NOW - 60, NOW + 3600)).into();
    let mut connection = client::connect(&url(&server), source(3, 1)).await.unwrap();
    let transcript = client::converse(
        &mut connection,
        vec![Message::text(frame.to_string())],
        None,
    )
    .await;
    assert_eq!(transcript.types(), ["handshake.error"]);
    assert_eq!(
        (
            transcript.received[0]["code"].as_str(),
            transcript.close_code
        ),
        (Some("CONSENT_FAILED"), Some(4003))
    );
    let text = transcript.received[0]["message"].as_str().unwrap();
    assert!(
        text.contains("signature")
            && !text.contains(&neuron_events::b64::encode(
                patient.key.verifying_key().as_bytes()
            ))
    );
    server.stop("test over").await.unwrap();
    let log = records(dir.path());
    assert!(log.contains(r#""kind":"connection.handshake_failed","session":"session-1","data":{"stage":"consent","code":"CONSENT_FAILED""#));
    assert!(log.contains(r#""provider_npi":"unknown""#));
    lock_log("server__early_consent_failure", dir.path());
}

#[tokio::test]
async fn malformed_frames_get_invalid_message_and_4002() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let cases = [
        Message::text("{not json"),
        Message::binary(vec![1u8, 2, 3]),
        Message::text(r#"{"type":"handshake.auth","patient_agent_id":"x"}"#),
        Message::text(r#"{"type":"handshake.challenge_response","signed_nonce":"AA"}"#),
    ];
    for (index, frame) in cases.into_iter().enumerate() {
        let mut connection = client::connect(&url(&server), source(4, index as u8 + 1))
            .await
            .unwrap();
        let transcript = client::converse(&mut connection, vec![frame], None).await;
        assert_eq!(transcript.types(), ["handshake.error"], "case {index}");
        assert_eq!(
            (
                transcript.received[0]["code"].as_str(),
                transcript.close_code
            ),
            (Some("INVALID_MESSAGE"), Some(4002)),
            "case {index}"
        );
    }
    server.stop("test over").await.unwrap();
    lock_log("server__invalid_messages", dir.path());
}

#[tokio::test]
async fn an_oversized_frame_is_refused_with_1009() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_payload_bytes = 1024;
    let server = start(config).await;
    let mut connection = client::connect(&url(&server), source(5, 1)).await.unwrap();
    let transcript =
        client::converse(&mut connection, vec![Message::text("x".repeat(2000))], None).await;
    assert_eq!(transcript.types(), ["handshake.error"]);
    assert_eq!(
        (
            transcript.received[0]["code"].as_str(),
            transcript.close_code
        ),
        (Some("INVALID_MESSAGE"), Some(1009))
    );
    // Far beyond the limit the frame is not even read whole; the refusal is still recorded.
    let mut flood = client::connect(&url(&server), source(5, 2)).await.unwrap();
    let _ = client::converse(&mut flood, vec![Message::text("x".repeat(1 << 20))], None).await;
    server.stop("test over").await.unwrap();
    lock_log("server__oversized_frame", dir.path());
}

#[tokio::test]
async fn a_silent_client_times_out_with_4001() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.auth_timeout_ms = 100;
    let server = start(config).await;
    let mut connection = client::connect(&url(&server), source(6, 1)).await.unwrap();
    let transcript = client::converse(&mut connection, Vec::new(), None).await;
    assert_eq!(transcript.types(), ["handshake.error"]);
    assert_eq!(
        (
            transcript.received[0]["code"].as_str(),
            transcript.close_code
        ),
        (Some("AUTH_TIMEOUT"), Some(4001))
    );
    server.stop("test over").await.unwrap();
    lock_log("server__auth_timeout", dir.path());
}

#[tokio::test]
async fn other_paths_get_404() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let wrong = format!("ws://{}/ws/elsewhere", server.local_addr());
    match client::connect(&wrong, None).await {
        Err(ClientError::Refused { status, .. }) => assert_eq!(status, 404),
        other => panic!("{other:?}"),
    }
    server.stop("test over").await.unwrap();
}

#[tokio::test]
async fn beyond_the_ceiling_upgrades_wait_in_order_then_are_promoted_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    config.websocket.max_queued = 1;
    let server = start(config).await;
    let url = url(&server);
    // The first client holds the only slot.
    let mut holder = client::connect(&url, source(7, 1)).await.unwrap();
    // The second waits without its 101.
    let waiting_url = url.clone();
    let waiting = tokio::spawn(async move {
        client::handshake(&waiting_url, source(7, 2), &ada(), PROVIDER, NOW).await
    });
    until_queued(&server, 1).await;
    // The third finds the queue full: 503 at once.
    match client::connect(&url, source(7, 3)).await {
        Err(ClientError::Refused {
            status,
            retry_after,
        }) => assert_eq!((status, retry_after.as_deref()), (503, Some("30"))),
        other => panic!("{other:?}"),
    }
    // The holder leaves; the waiting one is promoted and completes.
    holder.close(None).await.unwrap();
    let promoted = waiting.await.unwrap().unwrap();
    assert!(promoted.completed(), "{promoted:?}");
    server.stop("test over").await.unwrap();
    lock_log("server__queue_promoted_and_full", dir.path());
}

#[tokio::test]
async fn a_queued_upgrade_that_waits_too_long_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    config.websocket.queue_timeout_ms = 100;
    let server = start(config).await;
    let url = url(&server);
    let _holder = client::connect(&url, source(8, 1)).await.unwrap();
    until_queued(&server, 0).await;
    match client::connect(&url, source(8, 2)).await {
        Err(ClientError::Refused {
            status,
            retry_after,
        }) => assert_eq!((status, retry_after.as_deref()), (503, Some("1"))),
        other => panic!("{other:?}"),
    }
    server.stop("test over").await.unwrap();
    let log = records(dir.path());
    assert!(
        log.contains(r#""kind":"connection.queue_timeout","session":"session-2""#),
        "{log}"
    );
}

#[tokio::test]
async fn shutdown_closes_live_sessions_with_1001_and_answers_queued_ones_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    let server = start(config).await;
    let url = url(&server);
    let mut live = client::connect(&url, source(9, 1)).await.unwrap();
    let queued_url = url.clone();
    let queued =
        tokio::spawn(async move { client::connect(&queued_url, source(9, 2)).await.map(|_| ()) });
    until_queued(&server, 1).await;
    let live_reader =
        tokio::spawn(async move { client::converse(&mut live, Vec::new(), None).await });
    server.stop("SIGTERM").await.unwrap();
    assert_eq!(live_reader.await.unwrap().close_code, Some(1001));
    assert!(matches!(
        queued.await.unwrap(),
        Err(ClientError::Refused { status: 503, .. })
    ));
    lock_log("server__shutdown_live_and_queued", dir.path());
}

#[tokio::test]
async fn a_start_that_cannot_listen_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(config(dir.path()), fixed_clock(), 7).await;
    server.stop("test over").await.unwrap();
    let before = records(dir.path());

    // The handshake port taken, then the operator port: each start is refused naming the
    // address, and the log is as the last stop left it (no `server.started` without a server).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for listener in ["handshake", "operator"] {
        let mut config = config(dir.path());
        match listener {
            "handshake" => config.server.port = port,
            _ => config.admin.port = port,
        }
        let options = neuron::server::Options {
            clock: std::sync::Arc::new(fixed_clock()),
            ids: std::sync::Arc::new(neuron::ids::SeededIds::new(8)),
            key: Some(neuron_events::testing::neuron_key()),
            acknowledge_rollback: false,
            start_over: neuron::server::StartOver::Nothing,
        };
        let refused = match Server::start(config, options).await {
            Err(error) => error,
            Ok(_) => panic!("started with the {listener} port in use"),
        };
        let message = format!("{refused}: {:?}", std::error::Error::source(&refused));
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(message.contains("Address already in use"), "{message}");
        assert_eq!(records(dir.path()), before, "the {listener} port in use");
    }
}

/// A key kept while its log was lost, started over with `--new-log` (races issue, item 4): the
/// decision is the first record's, in words, so that the empty log explains itself.
#[tokio::test]
async fn a_new_log_beside_a_kept_key_is_started_on_the_record() {
    let dir = tempfile::tempdir().unwrap();
    neuron_events::testing::neuron_key()
        .write_new(dir.path())
        .unwrap();
    let start = |start_over| neuron::server::Options {
        clock: std::sync::Arc::new(fixed_clock()),
        ids: std::sync::Arc::new(neuron::ids::SeededIds::new(41)),
        // The key on disk, as `serve` reads it.
        key: None,
        acknowledge_rollback: false,
        start_over,
    };
    let refused = Server::start(
        config(dir.path()),
        start(neuron::server::StartOver::Nothing),
    )
    .await;
    let Err(refused) = refused else {
        panic!("a key without its log was accepted");
    };
    assert!(refused.to_string().contains("--new-log"), "{refused:?}");
    let server = Server::start(config(dir.path()), start(neuron::server::StartOver::Log))
        .await
        .unwrap();
    server.stop("test over").await.unwrap();
    let log = records(dir.path());
    assert!(
        log.lines().next().unwrap().contains(
            r#""decision":"a new, empty log beside the existing key (neuron serve --new-log)"#
        ),
        "{log}"
    );
    lock_log("server__new_log_beside_a_kept_key", dir.path());
}
