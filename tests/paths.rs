//! Every refusal path of SPEC §2.2 against a real server: for each, what the client received (the
//! error code and the close code) and the exact record sequence, locked as a snapshot.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{ada, records, NOW, PROVIDER};
use ed25519_dalek::Signer;
use neuron::config::Config;
use neuron::ids::SeededIds;
use neuron::server::{Options, Server};
use neuron::tools::client::{self, Patient, Transcript};
use neuron_events::b64;
use neuron_events::testing::{fixed_clock, neuron_key};
use tokio_tungstenite::tungstenite::Message;

/// What the client does after connecting.
enum Script {
    /// Send these frames, answer no challenge, read until closed.
    Send(Vec<Message>),
    /// Send this auth frame, then answer the challenge with this frame built from the nonce.
    AuthThen(String, fn(&Patient, &serde_json::Value) -> Message),
    /// Send this auth frame, read the challenge, then disconnect.
    AuthThenLeave(String),
    /// Connect and leave at once.
    Leave,
}

async fn run(test: u8, tweak: fn(&mut Config), script: Script) -> (Transcript, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.port = 0;
    config.admin.port = 0;
    config.storage.data_dir = dir.path().to_path_buf();
    tweak(&mut config);
    let options = Options {
        clock: Arc::new(fixed_clock()),
        ids: Arc::new(SeededIds::new(7)),
        key: Some(neuron_key()),
        acknowledge_rollback: false,
        start_over: neuron::server::StartOver::Nothing,
    };
    let server = Server::start(config, options).await.unwrap();
    let url = format!("ws://{}/ws/handshake", server.local_addr());
    let from = Some(SocketAddr::from(([127, 11, test, 1], 41_000)));
    let mut connection = client::connect(&url, from).await.unwrap();
    let transcript = match script {
        Script::Send(frames) => client::converse(&mut connection, frames, None).await,
        Script::AuthThen(auth, answer) => {
            use futures_util::{SinkExt, StreamExt};
            connection.send(Message::text(auth)).await.unwrap();
            let challenge: serde_json::Value = match connection.next().await {
                Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
                other => panic!("expected a challenge, got {other:?}"),
            };
            let mut rest =
                client::converse(&mut connection, vec![answer(&ada(), &challenge)], None).await;
            rest.received.insert(0, challenge);
            rest
        }
        Script::AuthThenLeave(auth) => {
            use futures_util::{SinkExt, StreamExt};
            connection.send(Message::text(auth)).await.unwrap();
            let challenge = connection.next().await;
            assert!(matches!(challenge, Some(Ok(Message::Text(_)))));
            connection.close(None).await.unwrap();
            Transcript::default()
        }
        Script::Leave => {
            connection.close(None).await.unwrap();
            Transcript::default()
        }
    };
    // The server has committed the session's end once it is no longer live.
    for _ in 0..2000 {
        if server.active_sessions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        server.active_sessions().is_empty(),
        "{:?}",
        server.active_sessions()
    );
    server.stop("test over").await.unwrap();
    (transcript, records(dir.path()))
}

fn refused(transcript: &Transcript) -> (String, u16) {
    assert_eq!(
        transcript.types().last().map(String::as_str),
        Some("handshake.error"),
        "{transcript:?}"
    );
    let last = transcript.received.last().unwrap();
    (
        last["code"].as_str().unwrap().to_string(),
        transcript.close_code.unwrap(),
    )
}

fn lock(name: &str, records: &str) {
    neuron_events::lock_records!(name, records);
}

fn auth_with(mutate: impl FnOnce(&mut serde_json::Value)) -> Message {
    let patient = ada();
    let mut frame: serde_json::Value =
        serde_json::from_str(&patient.auth_frame(&patient.claims(PROVIDER, NOW - 60, NOW + 3600)))
            .unwrap();
    mutate(&mut frame);
    Message::text(frame.to_string())
}

fn signed(payload: &str, patient_agent_id: &str) -> Message {
    let patient = Patient::from_seed(patient_agent_id, [0x21; 32]);
    let mut frame: serde_json::Value = serde_json::from_str(&patient.auth_frame(payload)).unwrap();
    frame["patient_agent_id"] = "patient-agent-ada".into();
    Message::text(frame.to_string())
}

fn no_change(_: &mut Config) {}

macro_rules! refusal {
    ($name:ident, $test:expr, $tweak:expr, $script:expr, $code:expr, $close:expr) => {
        #[tokio::test]
        async fn $name() {
            let (transcript, records) = run($test, $tweak, $script).await;
            assert_eq!(refused(&transcript), ($code.to_string(), $close));
            lock(concat!("paths__", stringify!($name)), &records);
        }
    };
}

refusal!(
    bad_base64,
    1,
    no_change,
    Script::Send(vec![auth_with(|f| f["patient_public_key"] = "***".into())]),
    "INVALID_MESSAGE",
    4002
);
refusal!(
    key_not_32_bytes,
    2,
    no_change,
    Script::Send(vec![auth_with(
        |f| f["patient_public_key"] = b64::encode([1u8; 31]).into()
    )]),
    "INVALID_MESSAGE",
    4002
);
refusal!(
    signed_payload_not_claims,
    3,
    no_change,
    Script::Send(vec![signed("[\"not\",\"claims\"]", "x")]),
    "INVALID_MESSAGE",
    4003
);
refusal!(
    expired_token,
    4,
    no_change,
    Script::Send(vec![signed(
        &ada().claims(PROVIDER, NOW - 7200, NOW - 1),
        "x"
    )]),
    "CONSENT_FAILED",
    4003
);
refusal!(
    iat_in_the_future,
    5,
    no_change,
    Script::Send(vec![signed(
        &ada().claims(PROVIDER, NOW + 600, NOW + 7200),
        "x"
    )]),
    "CONSENT_FAILED",
    4003
);
refusal!(
    patient_id_mismatch,
    6,
    no_change,
    Script::Send(vec![signed(
        &Patient::from_seed("someone-else", [0x21; 32]).claims(PROVIDER, NOW - 60, NOW + 3600),
        "x"
    )]),
    "CONSENT_FAILED",
    4003
);
refusal!(
    unknown_provider,
    7,
    no_change,
    Script::Send(vec![signed(
        &ada().claims("1003000126", NOW - 60, NOW + 3600),
        "x"
    )]),
    "PROVIDER_NOT_FOUND",
    4003
);
refusal!(
    provider_npi_check_digit,
    8,
    no_change,
    Script::Send(vec![signed(
        &ada().claims("1234567894", NOW - 60, NOW + 3600),
        "x"
    )]),
    "PROVIDER_NOT_FOUND",
    4003
);
refusal!(
    bad_nonce_signature,
    9,
    no_change,
    Script::AuthThen(
        ada().auth_frame(&ada().claims(PROVIDER, NOW - 60, NOW + 3600)),
        |patient, _| {
            Message::text(serde_json::json!({"type": "handshake.challenge_response", "signed_nonce": b64::encode(patient.key.sign(b"not the nonce").to_bytes())}).to_string())
        }
    ),
    "CONSENT_FAILED",
    4003
);
refusal!(
    auth_again_at_the_challenge_stage,
    10,
    no_change,
    Script::AuthThen(
        ada().auth_frame(&ada().claims(PROVIDER, NOW - 60, NOW + 3600)),
        |patient, _| Message::text(patient.auth_frame(&patient.claims(
            PROVIDER,
            NOW - 60,
            NOW + 3600
        )))
    ),
    "INVALID_MESSAGE",
    4002
);
refusal!(
    challenge_timeout,
    11,
    |config| config.websocket.challenge_timeout_ms = 100,
    Script::AuthThen(
        ada().auth_frame(&ada().claims(PROVIDER, NOW - 60, NOW + 3600)),
        |_, _| Message::Ping(Vec::new().into())
    ),
    "CHALLENGE_TIMEOUT",
    4001
);

#[tokio::test]
async fn disconnect_before_auth() {
    let (_, records) = run(12, no_change, Script::Leave).await;
    assert!(
        records
            .contains(r#""kind":"connection.closed","session":"session-1","data":{"by":"client""#),
        "{records}"
    );
    lock("paths__disconnect_before_auth", &records);
}

#[tokio::test]
async fn disconnect_after_the_challenge() {
    let (_, records) = run(
        13,
        no_change,
        Script::AuthThenLeave(ada().auth_frame(&ada().claims(PROVIDER, NOW - 60, NOW + 3600))),
    )
    .await;
    assert!(records.contains(r#""stage":"challenge""#), "{records}");
    lock("paths__disconnect_after_the_challenge", &records);
}

refusal!(
    control_character_refused,
    20,
    no_change,
    Script::Send(vec![auth_with(
        |f| f["patient_agent_id"] = "patient-agent-ada\u{1b}[2J".into()
    )]),
    "INVALID_MESSAGE",
    4002
);
