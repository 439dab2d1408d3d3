//! Fixed keys, a fixed clock and a small fixed log, shared by the tests of every crate in the
//! workspace (feature `test-support`), plus the one insta settings helper that sends every snapshot
//! to the workspace's `snapshots/` folder.

use std::sync::Arc;

use crate::event::*;
use crate::journal::{Journal, JournalOptions};
use crate::store::MemoryLog;
use crate::time::{SteppingClock, Timestamp};
use crate::{Error, NeuronKey};

/// The seed of the Neuron's key in every test.
pub const NEURON_SEED: [u8; 32] = [0x4e; 32];

/// 2026-11-26T10:00:00.000Z, the first instant of every fixed log.
pub const START_MILLIS: i64 = 1_795_687_200_000;

/// The Neuron's key in every test.
pub fn neuron_key() -> NeuronKey {
    NeuronKey::from_seed(NEURON_SEED)
}

/// A clock that starts at [`START_MILLIS`] and moves 250 ms per reading.
pub fn fixed_clock() -> SteppingClock {
    SteppingClock::new(Timestamp::saturating_from_millis(START_MILLIS), 250)
}

/// insta settings that write every snapshot to the workspace's `snapshots/` folder, named
/// `area__scenario` without a module prefix.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings
}

/// The relationship established in the fixed story.
pub const RELATIONSHIP_ID: &str = "5b0c2a1e-8f3d-4c6b-9a7e-2d4f6b8c0e1a";
/// A patient agent of the fixed story.
pub const PATIENT: &str = "patient-agent-ada";
/// The provider of the fixed story.
pub const PROVIDER: &str = "1234567893";
/// A second provider, removed during the story.
pub const OTHER_PROVIDER: &str = "1245319599";

fn session(id: &str, data: EventData) -> Event {
    Event::in_session(id, data)
}

/// A small story that touches every event kind: a new relationship, a queued session promoted and
/// refused at consent, an auth timeout, an `existing` handshake, a queue timeout, a rejection, a
/// client disconnect, a termination, provider changes, and a shutdown with a live session.
pub fn story() -> Vec<Event> {
    let actions = vec![
        "read:observations".to_string(),
        "write:messages".to_string(),
    ];
    let key = "Zm9yLXRlc3RzLW9ubHktcGF0aWVudC1wdWJsaWMta2V5".to_string();
    let endpoint = "wss://ada.example/agent".to_string();
    let provider_endpoint = format!("http://localhost:3000/ws/provider/{PROVIDER}");
    vec![
        Event::global(EventData::ServerStarted(ServerStarted {
            version: "0.1.0".into(),
            public_key: neuron_key().public_b64(),
            organization_npi: OTHER_PROVIDER.into(),
            config_digest: "c0ffee".into(),
        })),
        Event::global(EventData::ProviderRegistered(ProviderChanged {
            npi: PROVIDER.into(),
            name: "Demo Provider".into(),
            by: ChangeSource::Config,
        })),
        Event::global(EventData::ProviderRegistered(ProviderChanged {
            npi: OTHER_PROVIDER.into(),
            name: "Second Provider".into(),
            by: ChangeSource::Config,
        })),
        session(
            "s1",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:50001".into(),
                live_sessions: 1,
            }),
        ),
        session(
            "s2",
            EventData::ConnectionQueued(ConnectionQueued {
                peer: "127.0.0.1:50002".into(),
                position: 1,
            }),
        ),
        session(
            "s3",
            EventData::ConnectionQueued(ConnectionQueued {
                peer: "127.0.0.1:50003".into(),
                position: 2,
            }),
        ),
        session(
            "s1",
            EventData::HandshakeStarted(HandshakeStarted {
                patient_agent_id: PATIENT.into(),
                patient_endpoint: endpoint.clone(),
            }),
        ),
        session(
            "s1",
            EventData::ConsentVerified(ConsentVerified {
                patient_agent_id: PATIENT.into(),
                provider_npi: PROVIDER.into(),
                consented_actions: actions.clone(),
                iat: 1_795_687_000,
                exp: 1_795_691_200,
            }),
        ),
        session(
            "s1",
            EventData::ChallengeIssued(ChallengeIssued {
                nonce: "ab".repeat(32),
                relationship: "new".into(),
            }),
        ),
        session("s1", EventData::ChallengeVerified(ChallengeVerified {})),
        session(
            "s1",
            EventData::RelationshipEstablished(RelationshipEstablished {
                relationship_id: RELATIONSHIP_ID.into(),
                patient_agent_id: PATIENT.into(),
                provider_npi: PROVIDER.into(),
                patient_public_key: key.clone(),
                patient_endpoint: endpoint.clone(),
                consented_actions: actions.clone(),
            }),
        ),
        session(
            "s1",
            EventData::HandshakeCompleted(HandshakeCompleted {
                relationship_id: RELATIONSHIP_ID.into(),
                status: RelationshipStatus::New,
                provider_npi: PROVIDER.into(),
                provider_endpoint: provider_endpoint.clone(),
            }),
        ),
        session(
            "s2",
            EventData::ConnectionPromoted(ConnectionPromoted { waited_ms: 1200 }),
        ),
        session(
            "s2",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:50002".into(),
                live_sessions: 1,
            }),
        ),
        session(
            "s2",
            EventData::HandshakeStarted(HandshakeStarted {
                patient_agent_id: "patient-agent-bob".into(),
                patient_endpoint: "wss://bob.example/agent".into(),
            }),
        ),
        session(
            "s2",
            EventData::HandshakeFailed(HandshakeFailed {
                stage: Stage::Consent,
                code: ErrorCode::ConsentFailed,
                reason: "consent token signature does not verify".into(),
                provider_npi: "unknown".into(),
            }),
        ),
        session(
            "s3",
            EventData::ConnectionQueueTimeout(ConnectionQueueTimeout { waited_ms: 30_000 }),
        ),
        session(
            "s4",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:50004".into(),
                live_sessions: 1,
            }),
        ),
        session(
            "s4",
            EventData::ConnectionTimeout(ConnectionTimeout {
                stage: Stage::Auth,
                code: ErrorCode::AuthTimeout,
            }),
        ),
        session(
            "s5",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:50005".into(),
                live_sessions: 1,
            }),
        ),
        session(
            "s5",
            EventData::HandshakeStarted(HandshakeStarted {
                patient_agent_id: PATIENT.into(),
                patient_endpoint: endpoint.clone(),
            }),
        ),
        session(
            "s5",
            EventData::ConsentVerified(ConsentVerified {
                patient_agent_id: PATIENT.into(),
                provider_npi: PROVIDER.into(),
                consented_actions: actions,
                iat: 1_795_687_000,
                exp: 1_795_691_200,
            }),
        ),
        session(
            "s5",
            EventData::ChallengeIssued(ChallengeIssued {
                nonce: "cd".repeat(32),
                relationship: RELATIONSHIP_ID.into(),
            }),
        ),
        session("s5", EventData::ChallengeVerified(ChallengeVerified {})),
        session(
            "s5",
            EventData::HandshakeCompleted(HandshakeCompleted {
                relationship_id: RELATIONSHIP_ID.into(),
                status: RelationshipStatus::Existing,
                provider_npi: PROVIDER.into(),
                provider_endpoint,
            }),
        ),
        session(
            "s6",
            EventData::ConnectionRejected(ConnectionRejected {
                peer: "127.0.0.1:50006".into(),
                reason: RejectReason::QueueFull,
                waited_ms: 0,
            }),
        ),
        session(
            "s7",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:50007".into(),
                live_sessions: 1,
            }),
        ),
        session(
            "s8",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:50008".into(),
                live_sessions: 2,
            }),
        ),
        session(
            "s7",
            EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Client,
                code: Some(1005),
                stage: Stage::Auth,
            }),
        ),
        Event::global(EventData::RelationshipTerminated(RelationshipTerminated {
            relationship_id: RELATIONSHIP_ID.into(),
            provider_npi: PROVIDER.into(),
            reason: "patient moved away".into(),
            by: "api".into(),
        })),
        Event::global(EventData::ProviderRemoved(ProviderChanged {
            npi: OTHER_PROVIDER.into(),
            name: "Second Provider".into(),
            by: ChangeSource::Api,
        })),
        session(
            "s8",
            EventData::HandshakeStarted(HandshakeStarted {
                patient_agent_id: "patient-agent-cy".into(),
                patient_endpoint: "wss://cy.example/agent".into(),
            }),
        ),
        Event::global(EventData::ServerStopping(ServerStopping {
            reason: "SIGTERM".into(),
        })),
        session(
            "s8",
            EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Server,
                code: Some(1001),
                stage: Stage::Auth,
            }),
        ),
        // Connections turned away while the queue was full, summarised as a stop flushes them.
        Event::global(EventData::ConnectionRefused(ConnectionRefused {
            reason: RefuseReason::QueueFull,
            count: 3,
            first_at: Timestamp::saturating_from_millis(START_MILLIS + 4_000),
            last_at: Timestamp::saturating_from_millis(START_MILLIS + 4_750),
            peers: vec![
                PeerCount {
                    peer: "127.0.0.1".into(),
                    count: 2,
                },
                PeerCount {
                    peer: "10.0.0.9".into(),
                    count: 1,
                },
            ],
        })),
    ]
}

/// The fixed story appended one event at a time through a real journal (checkpoint every 10
/// records, fixed key and clock) and then an explicit checkpoint: the records' bytes, in order.
///
/// # Errors
/// Any journal error.
pub fn fixed_log() -> Result<Vec<Vec<u8>>, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|source| Error::Io {
            action: "start a runtime for",
            path: "fixed log".into(),
            source,
        })?;
    let log = MemoryLog::new();
    let options = JournalOptions {
        checkpoint_every: 10,
        ..JournalOptions::default()
    };
    runtime.block_on(async {
        let journal = Journal::start(
            Box::new(log.clone()),
            Arc::new(neuron_key()),
            Arc::new(fixed_clock()),
            options,
            Box::new(|_: &[crate::Record], _: &crate::BatchReport| {}),
        )?;
        for event in story() {
            journal.append(event).await?;
        }
        journal.checkpoint().await?;
        journal.close().await?;
        Ok::<_, Error>(())
    })?;
    Ok(log.all_bytes())
}

/// Every record of the sled log in `log_dir`, one per line, after checking that the log verifies
/// with every checkpoint signed by the test key. Panics (failing the test) otherwise.
pub fn verified_records(log_dir: &std::path::Path) -> String {
    use crate::store::Log;
    let log = match crate::SledLog::open(log_dir) {
        Ok(log) => log,
        Err(error) => panic!("cannot open {}: {error}", log_dir.display()),
    };
    let options = crate::VerifyOptions {
        trusted_key: Some(neuron_key().verifying_key()),
        expected_head: None,
        allow_unsigned_tail: false,
    };
    match crate::verify_log(&log, &options) {
        Ok(report) if report.is_intact() => {}
        outcome => panic!("{} does not verify: {outcome:?}", log_dir.display()),
    }
    let mut text = String::new();
    if let Err(error) = log.scan(1, u64::MAX, &mut |_, bytes| {
        text.push_str(&String::from_utf8_lossy(bytes));
        text.push('\n');
    }) {
        panic!("cannot read {}: {error}", log_dir.display());
    }
    text
}
