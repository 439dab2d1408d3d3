//! The fixed story: a small log that touches every event kind, and what witnesses and the tree
//! say of it.

use std::sync::Arc;

use crate::event::*;
use crate::journal::{Journal, JournalOptions};
use crate::store::MemoryLog;
use crate::time::Timestamp;
use crate::Error;

use super::fixed::{
    fixed_clock, neuron_key, OTHER_PROVIDER, PATIENT, PROVIDER, RELATIONSHIP_ID, START_MILLIS,
};

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
            origin: Some(crate::journal::DEMO_ORIGIN.into()),
            decision: None,
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
                relationship: None,
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
                provider_npi: None,
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
                relationship: Some(RELATIONSHIP_ID.into()),
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
                reason: None,
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
                reason: None,
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
        // A log rebuilt from an export that trusted checkpoints covered whole.
        Event::global(EventData::LogRestored(LogRestored {
            from: "9f1c3e5a7b2d4f6081a3c5e7092b4d6f8a1c3e5079b2d4f6a8c1e3507b9d2f4a".into(),
            records: 31,
            trusted_key: neuron_key().public_b64(),
            unverified: None,
        })),
        // The clock found behind the log, then a witness that had seen a longer log, and the
        // operator's acknowledgement of the loss.
        Event::global(EventData::ServerClockBehind(ServerClockBehind {
            last_at: Timestamp::saturating_from_millis(START_MILLIS + 10_000),
            now: Timestamp::saturating_from_millis(START_MILLIS - 3_600_000),
            behind_ms: 3_610_000,
        })),
        Event::global(EventData::LogWitnessConflict(LogWitnessConflict {
            witness: WITNESS.into(),
            witness_size: 57,
            our_size: 44,
            detail: "it has cosigned a tree of 57 records; this log holds 44".into(),
        })),
        Event::global(EventData::LogRollbackAcknowledged(
            LogRollbackAcknowledged {
                lost: SeqRange {
                    first: 45,
                    last: 57,
                },
                by: "operator (neuron serve --acknowledge-rollback)".into(),
            },
        )),
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
        // A witness cosigns the checkpoint the story ends with; its cosignature is recorded and a
        // last checkpoint covers it.
        journal.checkpoint().await?;
        if let Some(checkpoint) = journal.status().checkpoint {
            journal.append(cosigned(&checkpoint)?).await?;
        }
        journal.checkpoint().await?;
        journal.close().await?;
        Ok::<_, Error>(())
    })?;
    Ok(log.all_bytes())
}

/// The fixed witness of the story and the tests: its name.
pub const WITNESS: &str = "witness.example/w1";

/// The fixed witness's key (a fixed seed).
pub fn witness_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x57; 32])
}

/// The fixed witness's verifier key (cosignature/v1).
pub fn witness_vkey() -> crate::note::VerifierKey {
    crate::note::VerifierKey {
        name: WITNESS.into(),
        signature_type: crate::note::COSIGNATURE_V1,
        key: witness_key().verifying_key(),
    }
}

/// The fixed witness's `log.cosigned` of `checkpoint`, at a fixed time.
fn cosigned(checkpoint: &crate::checkpoint::SignedCheckpoint) -> Result<Event, Error> {
    let note = crate::note::Note::parse(&checkpoint.note).map_err(|error| Error::Corrupt {
        reason: error.to_string(),
    })?;
    let line = crate::note::cosign(
        WITNESS,
        &witness_key(),
        u64::try_from(START_MILLIS / 1000).unwrap_or_default() + 12,
        &note.text,
    );
    Ok(Event::global(EventData::LogCosigned(LogCosigned {
        witness: WITNESS.into(),
        size: checkpoint.size,
        root: checkpoint.root.to_base64(),
        cosignature: line.to_line().trim_end_matches('\n').to_string(),
    })))
}

/// The Merkle root of the tree over `records`' bytes.
pub fn tree_root(records: &[Vec<u8>]) -> crate::tree::Hash {
    let mut frontier = crate::tree::Frontier::default();
    for record in records {
        frontier.append(crate::tree::leaf_hash(record));
    }
    frontier.root()
}

/// What the fixed story's checkpoints sign besides the chain: the demo origin and the root of the
/// tree over `records`.
pub fn tree_head(records: &[Vec<u8>]) -> crate::checkpoint::TreeHead<'static> {
    crate::checkpoint::TreeHead {
        origin: crate::journal::DEMO_ORIGIN,
        root: tree_root(records),
    }
}
