//! Sessions: every handshake session the log mentions, its stage and outcome, and the tallies an
//! investigator asks for (completed, failed by code). The live sessions are those not yet ended.

use std::collections::{BTreeMap, BTreeSet};

use neuron_events::event::{ErrorCode, EventData, RefuseReason, RejectReason, RelationshipStatus};
use neuron_events::{Record, Timestamp};
use serde::Serialize;

/// Where a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// Waiting for a slot.
    Queued,
    /// Has a slot; waiting for or checking the auth message and consent.
    Authenticating,
    /// A challenge was sent; waiting for the answer.
    Challenged,
    /// Ended with `handshake.complete`.
    Completed,
    /// Ended with an error (including timeouts and queue refusals).
    Failed,
    /// Ended by a disconnect, a shutdown, or a restart that cut it off.
    Closed,
}

impl SessionStage {
    /// The stage as the replay and the operator API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Authenticating => "authenticating",
            Self::Challenged => "challenged",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Closed => "closed",
        }
    }

    /// Whether the session has ended.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Closed)
    }
}

/// One session as the log tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// Where it stands.
    pub stage: SessionStage,
    /// The peer's socket address.
    pub peer: Option<String>,
    /// The patient agent: as claimed by the auth message, then as verified by the consent.
    pub patient_agent_id: Option<String>,
    /// The patient's endpoint as claimed.
    pub patient_endpoint: Option<String>,
    /// The provider, once the consent verified.
    pub provider_npi: Option<String>,
    /// The first record of the session.
    pub started: Timestamp,
    /// The terminal record's time.
    pub ended: Option<Timestamp>,
    /// Position on arrival in the queue, if it was queued.
    pub queued_position: Option<u32>,
    /// Time spent in the queue.
    pub waited_ms: Option<u64>,
    /// The error code of a failed session.
    pub failure_code: Option<ErrorCode>,
    /// Why it failed, in words.
    pub failure_reason: Option<String>,
    /// The close code of a closed session.
    pub close_code: Option<u16>,
    /// The relationship it completed with.
    pub relationship_id: Option<String>,
    /// `new` or `existing`, for a completed session.
    pub relationship_status: Option<RelationshipStatus>,
    /// The session had not ended when the server started again (the server stopped uncleanly).
    pub interrupted: bool,
    /// When it got a slot (`connection.accepted`): what the handshake duration metric counts from.
    /// Not part of the view as investigators print it.
    #[serde(skip)]
    pub accepted: Option<Timestamp>,
}

impl Session {
    fn new(id: &str, at: Timestamp) -> Self {
        Self {
            id: id.to_string(),
            stage: SessionStage::Authenticating,
            peer: None,
            patient_agent_id: None,
            patient_endpoint: None,
            provider_npi: None,
            started: at,
            ended: None,
            queued_position: None,
            waited_ms: None,
            failure_code: None,
            failure_reason: None,
            close_code: None,
            relationship_id: None,
            relationship_status: None,
            interrupted: false,
            accepted: None,
        }
    }
}

/// Counts of how handshakes ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HandshakeTally {
    /// Completed with a new relationship.
    pub completed_new: u64,
    /// Completed with an existing relationship.
    pub completed_existing: u64,
    /// Failed (timeouts included), by error code.
    pub failed: BTreeMap<ErrorCode, u64>,
    /// Closed by the client or the server before completing.
    pub closed: u64,
    /// Gave up in the queue.
    pub queue_timeouts: u64,
    /// Refused without a slot, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Connections turned away before any session existed, by reason (from the summaries).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<RefuseReason, u64>,
    /// Cut off by an unclean stop.
    pub interrupted: u64,
}

/// Every session, with the live ones indexed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionsView {
    sessions: BTreeMap<String, Session>,
    #[serde(skip)]
    live: BTreeSet<String>,
    tally: HandshakeTally,
    /// Forget a session once it has ended (its outcome stays in the tally): the live server's
    /// mode, so that its memory does not grow with every handshake ever made.
    #[serde(skip)]
    forget_ended: bool,
}

impl SessionsView {
    /// A view that keeps only the live sessions (and the tally of all), for a running server.
    pub fn live_only() -> Self {
        Self {
            forget_ended: true,
            ..Self::default()
        }
    }

    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::ServerStarted(_) => {
                self.interrupt_live(record.at);
                return;
            }
            EventData::ConnectionRefused(refused) => {
                *self.tally.refused.entry(refused.reason).or_default() += refused.count;
                return;
            }
            _ => {}
        }
        let Some(id) = record.session.as_deref() else {
            return;
        };
        let at = record.at;
        let session = self
            .sessions
            .entry(id.to_string())
            .or_insert_with(|| Session::new(id, at));
        if session.stage.is_ended() {
            // A session ends once (SPEC 3.3); anything after its end does not reopen it.
            return;
        }
        match &record.event {
            EventData::ConnectionQueued(queued) => {
                session.stage = SessionStage::Queued;
                session.peer = Some(queued.peer.clone());
                session.queued_position = Some(queued.position);
            }
            EventData::ConnectionPromoted(promoted) => {
                session.stage = SessionStage::Authenticating;
                session.waited_ms = Some(promoted.waited_ms);
            }
            EventData::ConnectionAccepted(accepted) => {
                session.stage = SessionStage::Authenticating;
                session.peer = Some(accepted.peer.clone());
                session.accepted = Some(at);
            }
            EventData::HandshakeStarted(started) => {
                session.patient_agent_id = Some(started.patient_agent_id.clone());
                session.patient_endpoint = Some(started.patient_endpoint.clone());
            }
            EventData::ConsentVerified(consent) => {
                session.patient_agent_id = Some(consent.patient_agent_id.clone());
                session.provider_npi = Some(consent.provider_npi.clone());
            }
            EventData::ChallengeIssued(_) => session.stage = SessionStage::Challenged,
            EventData::HandshakeCompleted(completed) => {
                session.stage = SessionStage::Completed;
                session.relationship_id = Some(completed.relationship_id.clone());
                session.relationship_status = Some(completed.status);
                session.provider_npi = Some(completed.provider_npi.clone());
                match completed.status {
                    RelationshipStatus::New => self.tally.completed_new += 1,
                    RelationshipStatus::Existing => self.tally.completed_existing += 1,
                }
            }
            EventData::HandshakeFailed(failed) => {
                session.stage = SessionStage::Failed;
                session.failure_code = Some(failed.code);
                session.failure_reason = Some(failed.reason.clone());
                if let Some(provider) = &failed.provider_npi {
                    session.provider_npi = Some(provider.clone());
                }
                *self.tally.failed.entry(failed.code).or_default() += 1;
            }
            EventData::ConnectionTimeout(timeout) => {
                session.stage = SessionStage::Failed;
                session.failure_code = Some(timeout.code);
                session.failure_reason = Some(format!(
                    "no answer in time at the {} stage",
                    timeout.stage.as_str()
                ));
                *self.tally.failed.entry(timeout.code).or_default() += 1;
            }
            EventData::ConnectionClosed(closed) => {
                session.stage = SessionStage::Closed;
                session.close_code = closed.code;
                self.tally.closed += 1;
            }
            EventData::ConnectionQueueTimeout(timeout) => {
                session.stage = SessionStage::Failed;
                session.waited_ms = Some(timeout.waited_ms);
                session.failure_reason = Some("waited too long in the queue".into());
                self.tally.queue_timeouts += 1;
            }
            EventData::ConnectionRejected(rejected) => {
                session.stage = SessionStage::Failed;
                session.peer = Some(rejected.peer.clone());
                session.waited_ms = Some(rejected.waited_ms);
                session.failure_reason = Some(format!("rejected: {}", rejected.reason));
                *self.tally.rejected.entry(rejected.reason).or_default() += 1;
            }
            _ => {}
        }
        if session.stage.is_ended() {
            session.ended = Some(at);
            self.live.remove(id);
            if self.forget_ended {
                self.sessions.remove(id);
            }
        } else {
            self.live.insert(id.to_string());
        }
    }

    fn interrupt_live(&mut self, at: Timestamp) {
        for id in std::mem::take(&mut self.live) {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.stage = SessionStage::Closed;
                session.ended = Some(at);
                session.interrupted = true;
                self.tally.interrupted += 1;
            }
            if self.forget_ended {
                self.sessions.remove(&id);
            }
        }
    }

    /// A session by id.
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// Every session, ordered by id.
    pub fn all(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The sessions that have not ended, ordered by id.
    pub fn live(&self) -> impl Iterator<Item = &Session> {
        self.live.iter().filter_map(|id| self.sessions.get(id))
    }

    /// How many sessions are live.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// How handshakes ended.
    pub fn tally(&self) -> &HandshakeTally {
        &self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::SessionStage;

    #[test]
    fn a_stage_is_written_the_same_by_serde_and_by_as_str() {
        let all = [
            SessionStage::Queued,
            SessionStage::Authenticating,
            SessionStage::Challenged,
            SessionStage::Completed,
            SessionStage::Failed,
            SessionStage::Closed,
        ];
        for stage in all {
            assert_eq!(
                serde_json::to_string(&stage).ok(),
                Some(format!("\"{}\"", stage.as_str()))
            );
        }
    }
}
