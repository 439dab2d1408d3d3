//! Records in plain language: the words `neuron timeline` prints for each event, and the escaping
//! that keeps any logged string from acting on a terminal. Pure: an event in, a sentence out.

use crate::event::{EventData, RefuseReason, RejectReason};
use crate::Timestamp;

/// Text from a log made safe for a terminal: control characters (C0, DEL, C1: escape sequences,
/// newlines, carriage returns) are written as `\u{..}` escapes, so that no logged string, however
/// it got into a log, can move the cursor, clear the screen or forge a line of output.
pub fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// A duration in seconds, to a tenth.
fn seconds(millis: u64) -> String {
    format!("{:.1} s", millis as f64 / 1000.0)
}

/// A record's event in plain language.
pub fn describe(event: &EventData) -> String {
    match event {
        EventData::ServerStarted(data) => match &data.decision {
            None => format!(
                "Neuron {} started for organization {} (key {})",
                data.version, data.organization_npi, data.public_key
            ),
            Some(decision) => format!(
                "Neuron {} started for organization {} (key {}), starting over as the operator decided: {}",
                data.version, data.organization_npi, data.public_key, decision
            ),
        },
        EventData::ServerStopping(data) => format!("Neuron stopping ({})", data.reason),
        EventData::ProviderRegistered(data) => format!(
            "provider {} \"{}\" registered (by {})",
            data.npi, data.name, data.by
        ),
        EventData::ProviderRemoved(data) => format!(
            "provider {} \"{}\" removed (by {})",
            data.npi, data.name, data.by
        ),
        EventData::ConnectionAccepted(data) => format!(
            "connection from {} accepted ({} live)",
            data.peer, data.live_sessions
        ),
        EventData::ConnectionQueued(data) => format!(
            "connection from {} queued at position {}",
            data.peer, data.position
        ),
        EventData::ConnectionPromoted(data) => format!(
            "waited {} in the queue, then got a slot",
            seconds(data.waited_ms)
        ),
        EventData::ConnectionQueueTimeout(data) => format!(
            "gave up after {} in the queue: HTTP 503",
            seconds(data.waited_ms)
        ),
        EventData::ConnectionRejected(data) => match data.reason {
            RejectReason::QueueFull => format!(
                "connection from {} refused: queue full (HTTP 503)",
                data.peer
            ),
            RejectReason::Shutdown => format!(
                "connection from {} refused: shutting down (HTTP 503)",
                data.peer
            ),
        },
        EventData::HandshakeStarted(data) => format!(
            "auth from patient agent {} (as claimed), endpoint {}",
            data.patient_agent_id, data.patient_endpoint
        ),
        EventData::ConsentVerified(data) => format!(
            "consent verified: {} for provider {}, actions [{}], token valid until {}",
            data.patient_agent_id,
            data.provider_npi,
            data.consented_actions.join(", "),
            Timestamp::saturating_from_millis(data.exp.saturating_mul(1000))
        ),
        EventData::ChallengeIssued(data) => match &data.relationship {
            None => "challenge sent (no relationship yet)".into(),
            Some(id) => format!("challenge sent (existing relationship {id})"),
        },
        EventData::ChallengeVerified(_) => "challenge answered: key possession proven".into(),
        EventData::RelationshipEstablished(data) => format!(
            "relationship {} established between {} and provider {} (key {})",
            data.relationship_id, data.patient_agent_id, data.provider_npi, data.patient_public_key
        ),
        EventData::HandshakeCompleted(data) => format!(
            "handshake complete ({} relationship {}); given {}",
            data.status, data.relationship_id, data.provider_endpoint
        ),
        EventData::HandshakeFailed(data) => format!(
            "refused at {}: {} {}",
            data.stage.as_str(),
            data.code.as_str(),
            data.reason
        ),
        EventData::ConnectionTimeout(data) => format!(
            "timed out at {}: {}",
            data.stage.as_str(),
            data.code.as_str()
        ),
        EventData::ConnectionClosed(data) => format!(
            "closed by the {} {} at {}{}",
            data.by,
            data.code.map_or_else(
                || "before its HTTP 101".to_string(),
                |code| format!("with {code}")
            ),
            data.stage.as_str(),
            data.reason
                .as_deref()
                .map_or_else(String::new, |reason| format!(": {}", safe(reason)))
        ),
        EventData::ConnectionRefused(data) => format!(
            "{} connection(s) turned away between {} and {}: {} (HTTP 503), from {}",
            data.count,
            data.first_at,
            data.last_at,
            match data.reason {
                RefuseReason::QueueFull => "queue full",
                RefuseReason::ConnectionLimit => "connection limit reached",
            },
            if data.peers.is_empty() {
                "-".to_string()
            } else {
                data.peers
                    .iter()
                    .map(|peer| format!("{} ({})", peer.peer, peer.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        EventData::RelationshipTerminated(data) => format!(
            "relationship {} terminated by {}: {}",
            data.relationship_id, data.by, data.reason
        ),
        EventData::LogCheckpoint(data) => format!("checkpoint signed up to seq {}", data.upto),
        EventData::LogRestored(data) => format!(
            "log restored from an export of {} records (blake3 {}), checkpoints signed by {}{}",
            data.records,
            data.from,
            data.trusted_key,
            match &data.unverified {
                Some(range) => format!("; {range} covered by none of them, restored unverified"),
                None => String::new(),
            }
        ),
        EventData::LogCosigned(data) => format!(
            "witness {} cosigned the tree of {} records (root {})",
            data.witness, data.size, data.root
        ),
        EventData::LogWitnessConflict(data) => format!(
            "CONFLICT: witness {} holds a tree of {} records this log (offering {}) does not extend: {}",
            data.witness, data.witness_size, data.our_size, data.detail
        ),
        EventData::LogRollbackAcknowledged(data) => format!(
            "rollback acknowledged by {}: the {} witnesses had seen are lost",
            data.by, data.lost
        ),
        EventData::ServerClockBehind(data) => format!(
            "the clock reads {}, {} ms behind the log's latest record ({}): records carry the real clock from here",
            data.now, data.behind_ms, data.last_at
        ),
    }
}
