//! Concurrent first handshakes of one patient with one provider (SPEC §2.3 step 4): real clients
//! that hold their challenges and answer them at the same moment. Whatever the timing, at most one
//! relationship is in force per (patient, provider): the first to commit is `new`, the others
//! `existing` with the same key, `CONSENT_FAILED` with another.

mod common;

use std::sync::Arc;

use common::{config, url, NOW, PROVIDER};
use futures_util::{SinkExt, StreamExt};
use neuron::server::Server;
use neuron::tools::client::{self, Connection, Patient};
use neuron_events::testing::fixed_clock;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

/// What one racing client was told at the end: the `handshake.complete` or `handshake.error`.
#[derive(Debug)]
struct Outcome {
    patient: usize,
    answer: serde_json::Value,
}

/// Reads the next text frame as JSON.
async fn next_json(connection: &mut Connection) -> serde_json::Value {
    loop {
        match connection.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("the server ended the session early: {other:?}"),
        }
    }
}

/// Every patient opens a session and takes its challenge; once all hold one, all answer at the
/// same moment. What each was told, in the order of `patients`.
async fn race(server: &Server, patients: Vec<Patient>) -> Vec<Outcome> {
    let url = url(server);
    let barrier = Arc::new(Barrier::new(patients.len()));
    let mut tasks = Vec::new();
    for (index, patient) in patients.into_iter().enumerate() {
        let url = url.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut connection = client::connect(&url, None).await.unwrap();
            let payload = patient.claims(PROVIDER, NOW - 60, NOW + 3600);
            connection
                .send(Message::text(patient.auth_frame(&payload)))
                .await
                .unwrap();
            let challenge = next_json(&mut connection).await;
            assert_eq!(challenge["type"], "handshake.challenge", "{challenge}");
            let answer = patient.answer(&challenge).unwrap();
            barrier.wait().await;
            connection.send(Message::text(answer)).await.unwrap();
            let answer = next_json(&mut connection).await;
            Outcome {
                patient: index,
                answer,
            }
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

async fn start(dir: &std::path::Path, slots: u32) -> Server {
    let mut config = config(dir);
    config.websocket.max_concurrent_handshakes = slots;
    common::start(config, fixed_clock(), 11).await
}

/// The `relationship_id` of every `consent.relationship_established` record in a stopped server's
/// log.
fn established(dir: &std::path::Path) -> Vec<String> {
    common::records(dir)
        .lines()
        .filter(|line| line.contains(r#""kind":"consent.relationship_established""#))
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["data"]["relationship_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Asserts one `new`, every other outcome `existing` with the same id; returns that id.
fn one_new_the_rest_existing(outcomes: &[Outcome]) -> String {
    let new: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.answer["status"] == "new")
        .collect();
    assert_eq!(new.len(), 1, "exactly one is new: {outcomes:#?}");
    let id = new[0].answer["relationship_id"]
        .as_str()
        .unwrap()
        .to_string();
    for outcome in outcomes {
        assert_eq!(outcome.answer["type"], "handshake.complete", "{outcome:?}");
        assert_eq!(
            outcome.answer["relationship_id"],
            id.as_str(),
            "{outcome:?}"
        );
    }
    id
}

#[tokio::test]
async fn two_first_handshakes_with_one_key_make_one_relationship() {
    for trial in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), 10).await;
        let patients = (0..2)
            .map(|_| Patient::from_seed("patient-agent-ada", [0x21; 32]))
            .collect();
        let outcomes = race(&server, patients).await;
        let id = one_new_the_rest_existing(&outcomes);
        server.stop("test over").await.unwrap();
        assert_eq!(established(dir.path()), [id], "trial {trial}");
    }
}

#[tokio::test]
async fn fifty_first_handshakes_with_one_key_make_one_relationship() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 64).await;
    let patients = (0..50)
        .map(|_| Patient::from_seed("patient-agent-ada", [0x21; 32]))
        .collect();
    let outcomes = race(&server, patients).await;
    let id = one_new_the_rest_existing(&outcomes);
    server.stop("test over").await.unwrap();
    assert_eq!(established(dir.path()), [id]);
}

#[tokio::test]
async fn of_first_handshakes_with_different_keys_one_wins_and_the_others_are_refused() {
    for trial in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), 10).await;
        let patients = (0..2u8)
            .map(|index| Patient::from_seed("patient-agent-ada", [0x30 + index; 32]))
            .collect();
        let outcomes = race(&server, patients).await;
        let winners: Vec<&Outcome> = outcomes
            .iter()
            .filter(|outcome| outcome.answer["type"] == "handshake.complete")
            .collect();
        assert_eq!(winners.len(), 1, "trial {trial}: {outcomes:#?}");
        assert_eq!(winners[0].answer["status"], "new");
        let loser = outcomes
            .iter()
            .find(|outcome| outcome.patient != winners[0].patient)
            .unwrap();
        assert_eq!(loser.answer["type"], "handshake.error", "{loser:?}");
        assert_eq!(loser.answer["code"], "CONSENT_FAILED", "{loser:?}");
        assert_eq!(
            loser.answer["message"], "another key established this relationship",
            "{loser:?}"
        );
        let id = winners[0].answer["relationship_id"].as_str().unwrap();

        // The relationship in force is the winner's: its key gets `existing`, the other key is
        // still refused.
        let winner = Patient::from_seed(
            "patient-agent-ada",
            [0x30 + u8::try_from(winners[0].patient).unwrap(); 32],
        );
        let again = client::handshake(&url(&server), None, &winner, PROVIDER, NOW)
            .await
            .unwrap();
        assert_eq!(again.received[1]["status"], "existing");
        assert_eq!(again.received[1]["relationship_id"], id);
        server.stop("test over").await.unwrap();
        assert_eq!(established(dir.path()), [id.to_string()], "trial {trial}");
    }
}

/// A log as a server before the fix could write it: two relationships established for one
/// (patient, provider), the second while the first was in force. Written through a real journal
/// with the fixed key and clock, exported as JSONL.
fn log_with_two_active_relationships(dir: &std::path::Path) -> std::path::PathBuf {
    use neuron_events::event::{EventData, RelationshipEstablished, RelationshipTerminated};
    use neuron_events::testing::neuron_key;
    use neuron_events::{Event, Journal, JournalOptions, MemoryLog};

    let established = |id: &str, patient: &str, key: u8| {
        Event::in_session(
            format!("session-{id}"),
            EventData::RelationshipEstablished(RelationshipEstablished {
                relationship_id: id.into(),
                patient_agent_id: patient.into(),
                provider_npi: PROVIDER.into(),
                patient_public_key: neuron_events::b64::encode([key; 32]),
                patient_endpoint: "wss://ada.example/agent".into(),
                consented_actions: vec![],
            }),
        )
    };
    let log = MemoryLog::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let journal = Journal::start(
            Box::new(log.clone()),
            Arc::new(neuron_key()),
            Arc::new(fixed_clock()),
            JournalOptions::default(),
            Box::new(|_: &[neuron_events::Record], _: &neuron_events::BatchReport| {}),
        )
        .unwrap();
        // seq 1, 2: one in force each for two patients; seq 3: ada's second, beside her first;
        // seq 4 ends bob's, seq 5 gives bob a new one (no anomaly: the first was over).
        journal
            .append(established("rel-a1", "ada", 1))
            .await
            .unwrap();
        journal
            .append(established("rel-b1", "bob", 2))
            .await
            .unwrap();
        journal
            .append(established("rel-a2", "ada", 3))
            .await
            .unwrap();
        journal
            .append(Event::global(EventData::RelationshipTerminated(
                RelationshipTerminated {
                    relationship_id: "rel-b1".into(),
                    provider_npi: PROVIDER.into(),
                    reason: "moved".into(),
                    by: "api".into(),
                },
            )))
            .await
            .unwrap();
        journal
            .append(established("rel-b2", "bob", 2))
            .await
            .unwrap();
        journal.checkpoint().await.unwrap();
        journal.close().await.unwrap();
    });
    let path = dir.join("log.jsonl");
    let mut bytes = Vec::new();
    for record in log.all_bytes() {
        bytes.extend_from_slice(&record);
        bytes.push(b'\n');
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn verify_and_replay_name_two_active_relationships_of_one_pair_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_with_two_active_relationships(dir.path());
    let path = path.to_str().unwrap();

    let verified = common::neuron(&["verify", path]);
    let out = common::said(&verified);
    assert_eq!(verified.status.code(), Some(1), "{out}");
    assert!(
        out.contains("anomaly:         seq 3: relationship rel-a2 established for patient ada with provider 1234567893 while rel-a1 (seq 1) was active"),
        "{out}"
    );
    assert_eq!(out.matches("anomaly:").count(), 1, "{out}");
    assert!(
        out.contains("result:          INTACT, with 1 anomaly"),
        "{out}"
    );

    let json = common::neuron(&["verify", path, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(
        report["report"]["anomalies"],
        serde_json::json!([{
            "anomaly": "two_active_relationships",
            "seq": 3,
            "relationship_id": "rel-a2",
            "patient_agent_id": "ada",
            "provider_npi": PROVIDER,
            "in_force": "rel-a1",
            "in_force_seq": 1,
        }])
    );

    let replayed = common::neuron(&["replay", path]);
    let out = common::said(&replayed);
    assert_eq!(replayed.status.code(), Some(0), "{out}");
    assert!(
        out.contains("anomalies: 1 relationship(s) established while another was active")
            && out.contains("seq 3: relationship rel-a2 established for patient ada with provider 1234567893 while rel-a1 (seq 1) was active"),
        "{out}"
    );
    let json = common::neuron(&["replay", path, "--format", "json"]);
    let views: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(views["anomalies"][0]["seq"], 3);
    assert_eq!(views["anomalies"].as_array().unwrap().len(), 1);

    // A log the fixed server wrote names none.
    let clean = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = start(clean.path(), 10).await;
        let patients = (0..2)
            .map(|_| Patient::from_seed("patient-agent-ada", [0x21; 32]))
            .collect();
        race(&server, patients).await;
        server.stop("test over").await.unwrap();
    });
    neuron_events::testing::until_unlocked(&clean.path().join("log"));
    let verified = common::neuron(&["verify", clean.path().to_str().unwrap()]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        common::said(&verified)
    );
    assert!(!common::said(&verified).contains("anomal"));
}
