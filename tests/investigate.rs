//! `neuron replay` and `neuron timeline` over the committed server-run fixture, each output and
//! format locked as a snapshot.

use std::process::Command;

use neuron_events::testing::snapshot_settings;

const FIXTURE: &str = "tests/fixtures/server_run.jsonl";

fn neuron(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_neuron"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn lock(name: &str, output: &str) {
    snapshot_settings().bind(|| insta::assert_snapshot!(name, output));
}

fn lock_json(name: &str, output: &str) {
    let value: serde_json::Value = serde_json::from_str(output).unwrap();
    snapshot_settings().bind(|| insta::assert_json_snapshot!(name, value));
}

#[test]
fn replay_shows_the_state_at_the_end_and_at_a_point() {
    let end = neuron(&["replay", FIXTURE]);
    assert!(
        end.contains("relationships: 1 active, 0 terminated"),
        "{end}"
    );
    assert!(end.contains("completed 3 (1 new, 2 existing)"), "{end}");
    lock("investigate__replay_table", &end);
    lock_json(
        "investigate__replay_json",
        &neuron(&["replay", FIXTURE, "--format", "json"]),
    );
    // At seq 25 Bob holds the slot and Ada waits first in line.
    let queued = neuron(&["replay", FIXTURE, "--until-seq", "25"]);
    assert!(
        queued.contains("queue: 1 waiting") && queued.contains("live sessions: 2"),
        "{queued}"
    );
    lock("investigate__replay_table_until_seq_25", &queued);
    let by_time = neuron(&[
        "replay",
        FIXTURE,
        "--until-time",
        "2026-11-26T10:00:07.500Z",
    ]);
    assert_eq!(
        by_time.replace("(2026-11-26T10:00:07.500Z)", ""),
        queued.replace("(2026-11-26T10:00:07.500Z)", "")
    );
}

#[test]
fn timelines_follow_a_patient_a_session_a_relationship_and_a_provider() {
    let patient = neuron(&["timeline", FIXTURE, "--patient", "patient-agent-ada"]);
    assert!(patient.contains("waited 0.8 s in the queue"), "{patient}");
    assert!(
        patient.contains("refused at consent: CONSENT_FAILED"),
        "{patient}"
    );
    lock("investigate__timeline_patient", &patient);
    lock_json(
        "investigate__timeline_patient_json",
        &neuron(&[
            "timeline",
            FIXTURE,
            "--patient",
            "patient-agent-ada",
            "--format",
            "json",
        ]),
    );
    lock(
        "investigate__timeline_session",
        &neuron(&["timeline", FIXTURE, "--session", "session-5"]),
    );
    let relationship = neuron(&[
        "timeline",
        FIXTURE,
        "--relationship",
        "825ac313-ce7f-4e8d-94cd-359c12c94ab0",
    ]);
    lock("investigate__timeline_relationship", &relationship);
    lock(
        "investigate__timeline_provider",
        &neuron(&["timeline", FIXTURE, "--provider", "1003000126"]),
    );
    let jsonl = neuron(&[
        "timeline",
        FIXTURE,
        "--session",
        "session-5",
        "--format",
        "jsonl",
    ]);
    let steps: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (
            steps[1]["kind"].as_str(),
            steps[1]["since_previous_ms"].as_i64()
        ),
        (Some("connection.timeout"), Some(750))
    );
}

#[test]
fn verify_reports_the_fixture_intact_in_both_formats() {
    let table = neuron(&[
        "verify",
        FIXTURE,
        "--trusted-key",
        "jkhuj7eUmduip4nGsWOdQJSVIzx54Or1Li6h_J27tz8",
    ]);
    lock("investigate__verify_table", &table);
    lock_json(
        "investigate__verify_json",
        &neuron(&["verify", FIXTURE, "--format", "json"]),
    );
    let exported = neuron(&["export", FIXTURE]);
    let committed =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
            .unwrap();
    assert_eq!(
        exported, committed,
        "an export of an export is byte for byte the same"
    );
}

#[test]
fn the_fhir_export_is_a_bundle_of_audit_events_with_every_r4_required_element() {
    let output = neuron(&["export", FIXTURE, "--format", "fhir"]);
    let bundle: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    let entries = bundle["entry"].as_array().unwrap();
    // 35 records less server.started, admin.provider_registered, server.stopping and log.checkpoint.
    assert_eq!(entries.len(), 31);
    for entry in entries {
        let resource = &entry["resource"];
        assert_eq!(resource["resourceType"], "AuditEvent");
        for required in ["type", "recorded", "agent", "source"] {
            assert!(
                !resource[required].is_null(),
                "{required} missing in {resource}"
            );
        }
        assert!(
            resource["type"]["system"].is_string() && resource["type"]["code"].is_string(),
            "{resource}"
        );
        let agents = resource["agent"].as_array().unwrap();
        assert!(
            !agents.is_empty() && agents.iter().all(|agent| agent["requestor"].is_boolean()),
            "{resource}"
        );
        assert!(!resource["source"]["observer"].is_null(), "{resource}");
    }
    let refused: Vec<&serde_json::Value> = entries
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|resource| resource["outcome"] == "8")
        .collect();
    assert_eq!(
        refused.len(),
        2,
        "the unknown provider and the impostor are serious failures"
    );
    assert!(refused
        .iter()
        .all(|resource| resource["subtype"][0]["code"] == "AuthZ-Consent"));
    lock_json("investigate__export_fhir", &output);
}

#[test]
fn a_sled_log_gives_the_same_timelines_and_replay_as_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("log");
    {
        let mut log = neuron_events::SledLog::open(&store).unwrap();
        let fixture =
            std::fs::File::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
                .unwrap();
        neuron_events::export::import(std::io::BufReader::new(fixture), &mut log).unwrap();
    }
    neuron_events::testing::until_unlocked(&store);
    let store = store.to_str().unwrap();
    let subjects: &[&[&str]] = &[
        &["--patient", "patient-agent-ada"],
        &["--patient", "patient-agent-bob"],
        &["--patient", "nobody"],
        &["--session", "session-5"],
        &["--relationship", "825ac313-ce7f-4e8d-94cd-359c12c94ab0"],
        &["--provider", "1003000126"],
        &["--provider", "1234567893"],
    ];
    for subject in subjects {
        let from = |source: &str| {
            let mut args = vec!["timeline", source];
            args.extend_from_slice(subject);
            args.extend_from_slice(&["--format", "jsonl"]);
            neuron(&args)
        };
        let exported = from(FIXTURE);
        assert_eq!(from(store), exported, "timeline {subject:?}");
    }
    assert!(!neuron(&[
        "timeline",
        store,
        "--patient",
        "patient-agent-ada",
        "--format",
        "jsonl"
    ])
    .is_empty());
    assert_eq!(
        neuron(&["replay", store, "--format", "json"]),
        neuron(&["replay", FIXTURE, "--format", "json"])
    );
}

/// A log written before the wire refused control characters: a patient id holding a
/// clear-screen sequence and a newline that would forge a line, a provider name with a carriage
/// return.
fn log_with_control_characters(path: &std::path::Path) {
    use neuron_events::event::*;
    use neuron_events::{Event, Journal, JournalOptions, MemoryLog};
    let log = MemoryLog::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let journal = Journal::start(
            Box::new(log.clone()),
            std::sync::Arc::new(neuron_events::testing::neuron_key()),
            std::sync::Arc::new(neuron_events::testing::fixed_clock()),
            JournalOptions::default(),
            Box::new(|_: &[neuron_events::Record], _: &neuron_events::BatchReport| {}),
        )
        .unwrap();
        journal
            .append(Event::global(EventData::ProviderRegistered(
                ProviderChanged {
                    npi: "1234567893".into(),
                    name: "Dr. Who\rDr. Evil".into(),
                    by: ChangeSource::Config,
                },
            )))
            .await
            .unwrap();
        for data in [
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:5000".into(),
                live_sessions: 1,
            }),
            EventData::HandshakeStarted(HandshakeStarted {
                patient_agent_id: "ada\u{1b}[2J\n    99  2026-11-26T10:00:00.000Z  forged".into(),
                patient_endpoint: "wss://ada\u{9b}31m.example".into(),
            }),
        ] {
            journal.append(Event::in_session("s1", data)).await.unwrap();
        }
        journal.close().await.unwrap();
    });
    let mut bytes = Vec::new();
    for record in log.all_bytes() {
        bytes.extend_from_slice(&record);
        bytes.push(b'\n');
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn control_characters_in_a_log_reach_no_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.jsonl");
    log_with_control_characters(&path);
    let path = path.to_str().unwrap();
    for output in [
        neuron(&["timeline", path, "--session", "s1"]),
        neuron(&["replay", path]),
    ] {
        assert!(
            !output.chars().any(|c| c.is_control() && c != '\n'),
            "{output:?}"
        );
        assert!(
            !output
                .lines()
                .any(|line| line.trim_start().starts_with("99 ")),
            "a logged newline forged a line: {output}"
        );
        assert!(
            output.contains("\\u{1b}") || output.contains("\\u{d}"),
            "{output}"
        );
    }
    let timeline = neuron(&["timeline", path, "--session", "s1"]);
    assert!(
        timeline.contains("auth from patient agent ada\\u{1b}[2J\\u{a}    99"),
        "{timeline}"
    );
    assert!(
        timeline.contains("wss://ada\\u{9b}31m.example"),
        "{timeline}"
    );
}
