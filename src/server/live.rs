//! The server's shared live state: the journal every record goes through, the views folded from
//! what it committed, the metrics, the lock that operator changes and handshake steps share, and
//! the seams (clock, ids). Sessions and the operator API both work on it; neither knows the other.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use neuron_events::store::LogReader;
use neuron_events::{Clock, Journal, Timestamp};
use neuron_projections::sessions::SessionStage;
use neuron_projections::Views;

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

/// How far a stop has gone (SPEC §2.6): one value that only moves forward, so that a later phase
/// implies every earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StopPhase {
    /// No stop asked for.
    Serving,
    /// Queued connections are answered 503, the public listener accepts no connection, `/ready`
    /// answers 503.
    Draining,
    /// Live sessions close with 1001; connections still reading their request end.
    Stopping,
    /// The public listener's connections are over, or the grace period is (or a write failed):
    /// whatever still waits on a WebSocket client gives up; the closing records are written.
    Cut,
    /// The log is closed (or can no longer be written): the operator listener, which has answered
    /// until now, finishes the requests it is answering and closes, last.
    Closed,
}

/// Gives a stop's phases: the one sender of [`Stop`].
pub(crate) struct StopSignal(watch::Sender<StopPhase>);

impl StopSignal {
    /// A stop not yet asked for, and the receiver every listener and session clones.
    pub(crate) fn new() -> (Self, Stop) {
        let (sender, receiver) = watch::channel(StopPhase::Serving);
        (Self(sender), Stop(receiver))
    }

    /// Moves the stop on to `phase`; a phase already passed changes nothing.
    pub(crate) fn advance(&self, phase: StopPhase) {
        self.0.send_if_modified(|now| {
            let later = phase > *now;
            if later {
                *now = phase;
            }
            later
        });
    }
}

/// Where the stop stands, as a listener or a session sees it.
#[derive(Clone, Debug)]
pub(crate) struct Stop(watch::Receiver<StopPhase>);

impl Stop {
    /// Whether the stop has reached `phase`.
    pub(crate) fn has_reached(&self, phase: StopPhase) -> bool {
        *self.0.borrow() >= phase
    }

    /// Resolves once the stop reaches `phase` (at once if it has, or once the signal is gone).
    /// Written on `changed` rather than `wait_for`, whose future is larger by half: ten thousand
    /// queued connections each await one.
    pub(crate) async fn reached(&mut self, phase: StopPhase) {
        while *self.0.borrow_and_update() < phase {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// What sessions and the operator API share: handles on the server's state, not its settings
/// (each component is given the configured values it needs when it is built).
pub(crate) struct Live {
    /// The one writer.
    pub(crate) journal: Journal,
    /// Reads what the journal wrote (records, tree hashes), bounded by its durable head: exports,
    /// proofs and receipts.
    pub(crate) reader: Arc<dyn LogReader>,
    /// What the witnesses have done: `/ready`, the metrics and the checkpoint routes read it.
    pub(crate) witnesses: Arc<Mutex<WitnessBoard>>,
    /// Folded from every committed record, before its caller is acknowledged.
    pub(crate) views: Arc<RwLock<Views>>,
    /// Counted from every committed record and batch.
    pub(crate) metrics: Arc<Mutex<Metrics>>,
    /// Held for writing by an operator change across its check and commit; for reading by a
    /// session across a frame's step and commit, so that no handshake completes on what a change
    /// is removing (SPEC §2.3 step 7).
    pub(crate) changes: tokio::sync::RwLock<()>,
    /// Held by a session across the step that answers its challenge and that step's commit, per
    /// (patient, provider): concurrent first handshakes of one pair decide one after the other
    /// (SPEC §2.3 step 4).
    pub(crate) pairs: PairLocks,
    /// Session ids, relationship ids and nonces.
    pub(crate) ids: Arc<dyn IdSource>,
    /// The clock stamped on records.
    pub(crate) clock: Arc<dyn Clock>,
    /// How far the server's stop has gone.
    pub(crate) stop: Stop,
}

impl Live {
    /// A `Live` over `journal` and `reader` with seeded ids and
    /// `clock`, whose stop is never given (its sender is leaked, one per call): for the unit
    /// tests and fuzz targets that need the shared state without a server.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn offline(
        journal: Journal,
        reader: Arc<dyn LogReader>,
        views: Views,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (never_given, never) = StopSignal::new();
        std::mem::forget(never_given);
        Self {
            journal,
            reader,
            witnesses: Arc::default(),
            views: Arc::new(RwLock::new(views)),
            metrics: Arc::default(),
            changes: tokio::sync::RwLock::new(()),
            pairs: Default::default(),
            ids: Arc::new(crate::ids::SeededIds::new(1)),
            clock,
            stop: never,
        }
    }

    /// The views, for reading.
    pub(crate) fn views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        // Views are only ever changed record by record inside the lock; a panic elsewhere cannot
        // leave them half-applied, so a poisoned lock still guards consistent views.
        self.views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the witnesses have done.
    pub(crate) fn witness_board(&self) -> std::sync::MutexGuard<'_, WitnessBoard> {
        self.witnesses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live sessions: queued or in a handshake.
    pub(crate) fn active_sessions(&self) -> Vec<ActiveSession> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_only_moves_forward_and_a_later_phase_implies_the_earlier_ones() {
        let (signal, stop) = StopSignal::new();
        assert!(stop.has_reached(StopPhase::Serving));
        assert!(!stop.has_reached(StopPhase::Draining));
        signal.advance(StopPhase::Cut);
        signal.advance(StopPhase::Draining);
        assert!(
            stop.has_reached(StopPhase::Stopping),
            "cut implies stopping"
        );
        assert!(
            stop.has_reached(StopPhase::Cut),
            "a step back changes nothing"
        );
        assert!(!stop.has_reached(StopPhase::Closed));
        let mut waiting = stop.clone();
        waiting.reached(StopPhase::Draining).await;
        let mut waiting_for_closed = stop.clone();
        let closed =
            tokio::spawn(async move { waiting_for_closed.reached(StopPhase::Closed).await });
        signal.advance(StopPhase::Closed);
        closed.await.unwrap();
        // A stop whose signal is gone no longer holds anyone.
        let (signal, mut orphan) = StopSignal::new();
        drop(signal);
        orphan.reached(StopPhase::Closed).await;
    }
}
