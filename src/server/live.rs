//! The server's shared live state: the journal every record goes through, the views folded from
//! what it committed, the metrics, the lock that operator changes and handshake steps share, and
//! the seams (clock, ids). Sessions and the operator API both work on it; neither knows the other.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use neuron_events::store::LogReader;
use neuron_events::{Clock, Journal, Timestamp};
use neuron_projections::sessions::SessionStage;
use neuron_projections::Views;

use crate::config::Config;
use crate::ids::IdSource;
use crate::server::metrics::Metrics;
use crate::server::pairs::PairLocks;
use crate::server::witness_board::WitnessBoard;

/// A live session as the views show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActiveSession {
    /// The session id.
    pub id: String,
    /// The patient agent, once known.
    pub patient_agent_id: Option<String>,
    /// The provider, once known.
    pub provider_npi: Option<String>,
    /// Its stage.
    pub stage: SessionStage,
    /// When it started.
    pub started: Timestamp,
}

/// The signals of a stop, in the order they are given (SPEC §2.6).
#[derive(Clone, Debug)]
pub struct Stopping {
    /// Set first: queued connections are answered 503, `/ready` answers 503.
    pub draining: watch::Receiver<bool>,
    /// Set next: live sessions close with 1001, connections still reading their request end.
    pub stopping: watch::Receiver<bool>,
    /// Set when the grace period is over: whatever still waits on a client gives up at once.
    pub cut: watch::Receiver<bool>,
}

/// Resolves once `signal` is set (at once if it is, or once its sender is gone): a stop's
/// signal, awaited anywhere. Written on `changed` rather than `wait_for`, whose future is larger
/// by half: ten thousand queued connections each await one.
pub async fn until_set(signal: &mut watch::Receiver<bool>) {
    while !*signal.borrow_and_update() {
        if signal.changed().await.is_err() {
            return;
        }
    }
}

impl Stopping {
    /// Whether the stop has begun.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}

/// What sessions and the operator API share.
pub struct Live {
    /// The configuration served.
    pub config: Config,
    /// The one writer.
    pub journal: Journal,
    /// Reads what the journal wrote (records, tree hashes), bounded by its durable head: exports,
    /// proofs and receipts.
    pub reader: Arc<dyn LogReader>,
    /// What the witnesses have done: `/ready`, the metrics and the checkpoint routes read it.
    pub witnesses: Arc<Mutex<WitnessBoard>>,
    /// Folded from every committed record, before its caller is acknowledged.
    pub views: Arc<RwLock<Views>>,
    /// Counted from every committed record and batch.
    pub metrics: Arc<Mutex<Metrics>>,
    /// Held for writing by an operator change across its check and commit; for reading by a
    /// session across a frame's step and commit, so that no handshake completes on what a change
    /// is removing (SPEC §2.3 step 7).
    pub changes: tokio::sync::RwLock<()>,
    /// Held by a session across the step that answers its challenge and that step's commit, per
    /// (patient, provider): concurrent first handshakes of one pair decide one after the other
    /// (SPEC §2.3 step 4).
    pub(crate) pairs: PairLocks,
    /// Session ids, relationship ids and nonces.
    pub ids: Arc<dyn IdSource>,
    /// The clock stamped on records.
    pub clock: Arc<dyn Clock>,
    /// The stop's signals.
    pub stopping: Stopping,
}

impl Live {
    /// A `Live` over `journal` and `reader` with the default configuration, seeded ids and
    /// `clock`, whose stop is never given (its sender is leaked, one per call): for the unit
    /// tests and fuzz targets that need the shared state without a server.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn offline(
        journal: Journal,
        reader: Arc<dyn LogReader>,
        views: Views,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (never_given, never) = watch::channel(false);
        std::mem::forget(never_given);
        Self {
            config: Config::default(),
            journal,
            reader,
            witnesses: Arc::default(),
            views: Arc::new(RwLock::new(views)),
            metrics: Arc::default(),
            changes: tokio::sync::RwLock::new(()),
            pairs: Default::default(),
            ids: Arc::new(crate::ids::SeededIds::new(1)),
            clock,
            stopping: Stopping {
                draining: never.clone(),
                stopping: never.clone(),
                cut: never,
            },
        }
    }

    /// The views, for reading.
    pub fn views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        // Views are only ever changed record by record inside the lock; a panic elsewhere cannot
        // leave them half-applied, so a poisoned lock still guards consistent views.
        self.views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the witnesses have done.
    pub fn witness_board(&self) -> std::sync::MutexGuard<'_, WitnessBoard> {
        self.witnesses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics.
    pub fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live sessions: queued or in a handshake.
    pub fn active_sessions(&self) -> Vec<ActiveSession> {
        self.views()
            .sessions
            .live()
            .map(|session| ActiveSession {
                id: session.id.clone(),
                patient_agent_id: session.patient_agent_id.clone(),
                provider_npi: session.provider_npi.clone(),
                stage: session.stage,
                started: session.started,
            })
            .collect()
    }
}
