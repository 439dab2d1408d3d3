//! `neuron self-check`: proves on this machine that the event log works end to end. It opens a
//! sled log (power-loss durable), appends a small handshake story from several concurrent sessions
//! through group commit, verifies the chain and its signed checkpoint, and folds the views.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neuron_events::event::*;
use neuron_events::{
    verify_log, BatchReport, Event, Journal, JournalOptions, NeuronKey, Record, Report, SledLog,
    SystemClock, VerifyOptions,
};
use neuron_projections::{replay, Until, Views};

/// What a self-check found.
#[derive(Debug)]
pub struct Outcome {
    /// Events appended.
    pub appended: usize,
    /// Durable batches they went out in.
    pub batches: usize,
    /// How long appending took.
    pub append_time: Duration,
    /// The verification report.
    pub report: Report,
    /// The views folded from the log.
    pub views: Views,
    /// The public key of the Neuron's checkpoint key.
    pub public_key: String,
}

/// The errors a self-check can meet.
#[derive(Debug, thiserror::Error)]
pub enum SelfCheckError {
    /// The log could not be opened, written or read.
    #[error(transparent)]
    Log(#[from] neuron_events::Error),
    /// A session task stopped unexpectedly.
    #[error("a session task failed")]
    Task(#[from] tokio::task::JoinError),
}

const SESSIONS: usize = 8;

/// Runs the self-check on the log in `data_dir` (created if absent; an existing log is continued).
///
/// # Errors
/// [`SelfCheckError`] when the log cannot be opened, written or read.
pub async fn run(data_dir: &Path) -> Result<Outcome, SelfCheckError> {
    let (key, _) = NeuronKey::load_or_create(data_dir)?;
    let public_key = key.public_b64();
    let log = SledLog::open(&data_dir.join("log"))?;
    let batches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = batches.clone();
    let observer = move |_: &[Record], _: &BatchReport| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let journal = Journal::start(
        Box::new(log),
        Arc::new(key),
        Arc::new(SystemClock),
        JournalOptions::default(),
        Box::new(observer),
    )?;

    let started = Instant::now();
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|index| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let mut appended = 0;
                for event in session_story(index) {
                    journal.append(event).await?;
                    appended += 1;
                }
                Ok::<_, neuron_events::Error>(appended)
            })
        })
        .collect();
    let mut appended = 0;
    for task in tasks {
        appended += task.await??;
    }
    journal.checkpoint().await?;
    let append_time = started.elapsed();
    journal.close().await?;

    let log = SledLog::open(&data_dir.join("log"))?;
    let report = verify_log(&log, &VerifyOptions::default())?;
    let mut records = Vec::new();
    use neuron_events::Log;
    for stored in log.read(1, u64::MAX) {
        let (_, bytes) = stored?;
        records.push(Record::decode(&bytes)?);
    }
    Ok(Outcome {
        appended: appended + 1,
        batches: batches.load(std::sync::atomic::Ordering::Relaxed),
        append_time,
        report,
        views: replay(records, Until::End),
        public_key,
    })
}

/// One session's events: a queued, then completed handshake for a self-check patient.
fn session_story(index: usize) -> Vec<Event> {
    let session = format!("self-check-{index}");
    let patient = format!("self-check-patient-{index}");
    let relationship = format!("00000000-0000-4000-8000-{index:012}");
    let provider = crate::config::DEMO_PROVIDER_NPI.to_string();
    let event = |data| Event::in_session(session.clone(), data);
    vec![
        event(EventData::ConnectionAccepted(ConnectionAccepted {
            peer: "127.0.0.1:0".into(),
            live_sessions: 1,
        })),
        event(EventData::HandshakeStarted(HandshakeStarted {
            patient_agent_id: patient.clone(),
            patient_endpoint: "self-check".into(),
        })),
        event(EventData::ConsentVerified(ConsentVerified {
            patient_agent_id: patient.clone(),
            provider_npi: provider.clone(),
            consented_actions: vec!["self-check".into()],
            iat: 0,
            exp: 0,
        })),
        event(EventData::ChallengeIssued(ChallengeIssued {
            nonce: "00".repeat(32),
            relationship: None,
        })),
        event(EventData::ChallengeVerified(ChallengeVerified {})),
        event(EventData::RelationshipEstablished(
            RelationshipEstablished {
                relationship_id: relationship.clone(),
                patient_agent_id: patient,
                provider_npi: provider.clone(),
                patient_public_key: "self-check".into(),
                patient_endpoint: "self-check".into(),
                consented_actions: vec!["self-check".into()],
            },
        )),
        event(EventData::HandshakeCompleted(HandshakeCompleted {
            relationship_id: relationship,
            status: RelationshipStatus::New,
            provider_npi: provider,
            provider_endpoint: "self-check".into(),
        })),
    ]
}
