//! Fixed keys, a fixed clock and a small fixed log, shared by the tests of every crate in the
//! workspace (feature `test-support`), plus the one insta settings helper that sends every snapshot
//! to the workspace's `snapshots/` folder.

use std::sync::Arc;

use crate::event::*;
use crate::journal::{Journal, JournalOptions};
use crate::store::MemoryLog;
use crate::time::{SteppingClock, Timestamp};
use crate::{Digest, Error, NeuronKey, Record};

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

/// The fixed clock a day later: for a restart of a log the fixed clock wrote, whose records it is
/// then not behind (a clock behind the log is recorded as `server.clock_behind`).
pub fn restarted_clock() -> SteppingClock {
    SteppingClock::new(
        Timestamp::saturating_from_millis(START_MILLIS + 86_400_000),
        250,
    )
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

/// Waits until no handle in this process holds the sled store at `log_dir` any longer. sled lets
/// go of its file lock a moment after its last handle is dropped (its I/O threads finish first): a
/// test that writes a store and then investigates it, in this process or a child, waits for that
/// as an investigator refuses a locked store at once. Panics after ten seconds.
pub fn until_unlocked(log_dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Ok(file) = std::fs::File::open(log_dir.join("db")) else {
            return;
        };
        if file.try_lock_shared().is_ok() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is still locked after ten seconds",
            log_dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
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

/// The first line of a review form's story section.
const STORY_HEADING: &str = "# What happened, in the words of `neuron timeline`:";
/// The first line of a review form's records section.
pub const RECORDS_HEADING: &str =
    "# The records as stored, each without its \"prev\" (the chain is checked; the head sums it up):";
/// What begins a review form's last line.
const HEAD_PREFIX: &str = "head: ";

/// A path's records (one stored record per line) in the form its snapshot locks them, the form a
/// reviewer reads in a pull request (`docs/reviewing.md`): first the story, one line per record in
/// the words of `neuron timeline`; then each record exactly as stored but for its `prev`; then the
/// head, the hash of the last record's bytes. The chain is checked here (each `prev` the hash of
/// the bytes before it), so the records and the head fix every stored byte, and a change to one
/// record shows as that record's lines and the head, not as every later line.
///
/// # Panics
/// When a line is not a record, does not end with its `prev`, or the chain is broken: the test
/// then fails, naming the seq.
pub fn review_form(records: &str) -> String {
    let mut story = format!("{STORY_HEADING}\n");
    let mut stored = format!("{RECORDS_HEADING}\n");
    let mut head = Digest::GENESIS;
    for line in records.lines() {
        let record = match Record::decode(line.as_bytes()) {
            Ok(record) => record,
            Err(error) => panic!("not a record ({error}): {line}"),
        };
        assert_eq!(
            record.prev, head,
            "the chain is broken at seq {}: its prev is not the hash of the record before",
            record.seq
        );
        let at = record.at.to_string();
        story.push_str(&format!(
            "{:>4}  {}  {:<10}  {}\n",
            record.seq,
            at.get(11..23).unwrap_or(&at),
            crate::narrate::safe(record.session.as_deref().unwrap_or("-")),
            crate::narrate::safe(&crate::narrate::describe(&record.event)),
        ));
        stored.push_str(without_prev(line));
        stored.push('\n');
        head = record.hash;
    }
    format!("{story}\n{stored}\n{HEAD_PREFIX}{}\n", head.to_hex())
}

/// A stored record's bytes without their last field, `"prev"`.
fn without_prev(line: &str) -> &str {
    const PREV: &str = ",\"prev\":\"";
    let Some(start) = line.rfind(PREV) else {
        panic!("a record without prev: {line}");
    };
    let hash = &line[start + PREV.len()..];
    assert!(
        hash.len() == 64 + 2 && hash.ends_with("\"}"),
        "a record whose last field is not its prev: {line}"
    );
    &line[..start]
}

/// The stored records a review form stands for: each record line with its `prev` put back, the
/// hash of the line before. With [`review_head`], what a test needs to check that a snapshot
/// stands for exactly the bytes a log holds.
pub fn rechain(review: &str) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut prev = Digest::GENESIS;
    let mut lines = review.lines().skip_while(|line| *line != RECORDS_HEADING);
    lines.next();
    for line in lines.take_while(|line| !line.is_empty()) {
        let bytes = format!("{line},\"prev\":\"{}\"}}", prev.to_hex()).into_bytes();
        prev = Digest::of(&bytes);
        records.push(bytes);
    }
    records
}

/// The head a review form names.
pub fn review_head(review: &str) -> Option<String> {
    review
        .lines()
        .find_map(|line| line.strip_prefix(HEAD_PREFIX))
        .map(str::to_string)
}

/// Locks a path's records (one stored record per line) in [`review_form`] as snapshot `name`. A
/// macro, so that the snapshot names the test that locked it as its source.
#[macro_export]
macro_rules! lock_records {
    ($name:expr, $records:expr) => {{
        let review = $crate::testing::review_form($records);
        $crate::testing::snapshot_settings().bind(|| ::insta::assert_snapshot!($name, review));
    }};
}

/// Set by `.ci/run`: every test that needs something from outside the workspace (a Debian
/// package, a PyPI tool, a database) must find it, and fails rather than skip when it does not.
pub const REQUIRE_EXTERNAL: &str = "NEURON_REQUIRE_EXTERNAL";

/// Whether an outside requirement is there. When it is not, a test either fails (under
/// [`REQUIRE_EXTERNAL`], as CI runs) or says loudly, on the terminal itself (not in the output the
/// test harness captures), which test did not run and how to install what it needs, and skips.
pub fn external(available: bool, test: &str, what: &str, install: &str) -> bool {
    use std::io::Write as _;
    if available {
        return true;
    }
    let message = format!(
        "NOT RUN: {test} needs {what}, which this machine lacks; install it with: {install}"
    );
    assert!(
        std::env::var_os(REQUIRE_EXTERNAL).is_none(),
        "{message} ({REQUIRE_EXTERNAL} is set: this run must have it)"
    );
    let _ = writeln!(std::io::stderr(), "{message}");
    false
}
