//! The event kinds of SPEC §3.3 and their data. Kinds are `category.action` past-tense facts; each
//! kind's data is a plain struct so that the record encoding writes its fields in declaration order.
//! This module knows nothing of storage, chains or sockets. The `log.*` kinds are in `log_kinds`.

use serde::{Deserialize, Serialize};

mod log_kinds;
mod sentinel;

pub use log_kinds::*;

/// Declares an enum whose variants are written as fixed words (in the log, on the wire, in
/// metrics labels): each word is given once, beside its variant, and serde, [`as_str`] and
/// `Display` all take it from there.
///
/// [`as_str`]: ErrorCode::as_str
macro_rules! worded {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The word the log, the wire and the metrics write for this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $word, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

worded! {
    /// Who caused a provider change.
    pub enum ChangeSource {
        /// The configuration file, reconciled at start-up.
        Config = "config",
        /// The operator API.
        Api = "api",
    }
}

worded! {
    /// Why an upgrade request was turned away without ever getting a slot.
    pub enum RejectReason {
        /// The waiting queue already held `max_queued` requests.
        QueueFull = "queue_full",
        /// The server was shutting down.
        Shutdown = "shutdown",
    }
}

worded! {
    /// Why connections were turned away before any session existed (summarised, not one by one).
    pub enum RefuseReason {
        /// The waiting queue already held `max_queued` connections.
        QueueFull = "queue_full",
        /// The listener already held `server.max_connections` connections.
        ConnectionLimit = "connection_limit",
    }
}

worded! {
    /// The stage a handshake had reached when it ended.
    pub enum Stage {
        /// Waiting in the upgrade queue, or promoted from it and not yet upgraded (before the 101).
        /// Records written before the word was settled say `queue`.
        #[serde(alias = "queue")]
        Queue = "queued",
        /// Waiting for, or validating, `handshake.auth`.
        Auth = "auth",
        /// Verifying the consent token and the provider.
        Consent = "consent",
        /// Waiting for, or verifying, the challenge response.
        Challenge = "challenge",
        /// After `handshake.complete` was sent.
        Complete = "complete",
    }
}

worded! {
    /// The documented handshake error codes (SPEC §2.2).
    pub enum ErrorCode {
        /// No `handshake.auth` in time.
        AuthTimeout = "AUTH_TIMEOUT",
        /// No challenge response in time.
        ChallengeTimeout = "CHALLENGE_TIMEOUT",
        /// A frame that is not a valid message for the stage.
        InvalidMessage = "INVALID_MESSAGE",
        /// The consent or the proof of key possession did not hold.
        ConsentFailed = "CONSENT_FAILED",
        /// The token names no provider of this organization.
        ProviderNotFound = "PROVIDER_NOT_FOUND",
        /// The event log could not be written.
        ServerError = "SERVER_ERROR",
    }
}

worded! {
    /// Whether a completed handshake created a relationship or reused one.
    pub enum RelationshipStatus {
        /// A relationship was established by this handshake.
        New = "new",
        /// An active relationship with the same key already existed.
        Existing = "existing",
    }
}

worded! {
    /// Which side ended a connection.
    pub enum ClosedBy {
        /// The patient's agent disconnected.
        Client = "client",
        /// The Neuron closed the socket (for example at shutdown).
        Server = "server",
    }
}

/// `server.started`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStarted {
    /// The Neuron's version.
    pub version: String,
    /// The Neuron's Ed25519 public key, base64url: the key its checkpoints are signed with.
    pub public_key: String,
    /// The organization this Neuron brokers for.
    pub organization_npi: String,
    /// blake3 hex of the effective configuration, so a change of configuration is visible.
    pub config_digest: String,
    /// The log's C2SP origin: the name its checkpoints are signed under (SPEC §3.5). Absent in
    /// records written before the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// What the operator decided to start over when part of the data directory was lost
    /// (`neuron serve --new-log` or `--new-key`), in words; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// `server.stopping`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStopping {
    /// Why (`SIGTERM`, `SIGINT`, `stop requested`, …).
    pub reason: String,
}

/// `admin.provider_registered` and `admin.provider_removed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderChanged {
    /// The provider's NPI.
    pub npi: String,
    /// The provider's display name.
    pub name: String,
    /// Where the change came from.
    pub by: ChangeSource,
}

/// `connection.accepted`: a session got a slot and starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionAccepted {
    /// The peer's socket address.
    pub peer: String,
    /// Live sessions after accepting this one.
    pub live_sessions: u32,
}

/// `connection.queued`: no slot was free; the upgrade waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionQueued {
    /// The peer's socket address.
    pub peer: String,
    /// 1-based position in the queue on arrival.
    pub position: u32,
}

/// `connection.promoted`: a queued upgrade got a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionPromoted {
    /// How long it waited.
    pub waited_ms: u64,
}

/// `connection.queue_timeout`: a queued upgrade waited too long and got HTTP 503.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionQueueTimeout {
    /// How long it waited.
    pub waited_ms: u64,
}

/// `connection.rejected`: an upgrade got HTTP 503 without a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRejected {
    /// The peer's socket address.
    pub peer: String,
    /// Why.
    pub reason: RejectReason,
    /// How long it had waited, 0 when refused on arrival.
    pub waited_ms: u64,
}

/// `connection.handshake_started`: a well-formed `handshake.auth` arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeStarted {
    /// The patient agent id as the message claims it (not yet verified).
    pub patient_agent_id: String,
    /// The address the patient's agent can be reached at.
    pub patient_endpoint: String,
}

/// `consent.verified`: the consent token's signature and claims hold and the provider is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentVerified {
    /// The consenting patient's agent.
    pub patient_agent_id: String,
    /// The provider consented to.
    pub provider_npi: String,
    /// The actions consented to, exactly as the token gives them.
    pub consented_actions: Vec<String>,
    /// The token's issue time, seconds since the epoch.
    pub iat: i64,
    /// The token's expiry, seconds since the epoch.
    pub exp: i64,
}

/// `connection.challenge_issued`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeIssued {
    /// The nonce, 64 lowercase hex characters.
    pub nonce: String,
    /// The existing relationship the key was matched against; `None` when none existed yet
    /// (written `"new"`).
    #[serde(
        serialize_with = "sentinel::write_new",
        deserialize_with = "sentinel::read_new"
    )]
    pub relationship: Option<String>,
}

/// `connection.challenge_verified`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeVerified {}

/// `consent.relationship_established`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipEstablished {
    /// The new relationship's id (UUID v4).
    pub relationship_id: String,
    /// The patient's agent.
    pub patient_agent_id: String,
    /// The provider.
    pub provider_npi: String,
    /// The key the patient proved possession of, base64url.
    pub patient_public_key: String,
    /// Where the patient's agent can be reached.
    pub patient_endpoint: String,
    /// The consented actions, exactly as given.
    pub consented_actions: Vec<String>,
}

/// `connection.handshake_completed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeCompleted {
    /// The relationship the patient leaves with.
    pub relationship_id: String,
    /// Whether it was created now.
    pub status: RelationshipStatus,
    /// The provider.
    pub provider_npi: String,
    /// The provider's direct address given to the patient.
    pub provider_endpoint: String,
}

/// `connection.handshake_failed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeFailed {
    /// Where it failed.
    pub stage: Stage,
    /// The error code sent to the client.
    pub code: ErrorCode,
    /// What was wrong, in words, never containing a secret.
    pub reason: String,
    /// The provider the refused token named; `None` when the token did not verify far enough to
    /// name one (written `"unknown"`).
    #[serde(
        serialize_with = "sentinel::write_unknown",
        deserialize_with = "sentinel::read_unknown"
    )]
    pub provider_npi: Option<String>,
}

/// `connection.timeout`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTimeout {
    /// The stage that timed out.
    pub stage: Stage,
    /// `AUTH_TIMEOUT` or `CHALLENGE_TIMEOUT`.
    pub code: ErrorCode,
}

/// `connection.closed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionClosed {
    /// Which side closed.
    pub by: ClosedBy,
    /// The WebSocket close code; none when the connection ended before its 101 (queued, or
    /// promoted and not yet upgraded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The stage the session was in.
    pub stage: Stage,
    /// Why the server closed it, when it closed it for a reason the code alone does not say (a
    /// WebSocket protocol violation: which one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `connection.refused`: a summary of the connections turned away for one reason within about a
/// second, before any session existed (a flood costs a record a second, not one per attempt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRefused {
    /// Why they were turned away.
    pub reason: RefuseReason,
    /// How many.
    pub count: u64,
    /// The first one's time.
    pub first_at: crate::Timestamp,
    /// The last one's time.
    pub last_at: crate::Timestamp,
    /// Up to 16 peers (IP addresses) with how many each; the others are in `count` alone.
    pub peers: Vec<PeerCount>,
}

/// One peer of a [`ConnectionRefused`] summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCount {
    /// The peer's IP address.
    pub peer: String,
    /// How many of its connections were turned away.
    pub count: u64,
}

/// `termination.relationship_terminated`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipTerminated {
    /// The relationship ended.
    pub relationship_id: String,
    /// Its provider.
    pub provider_npi: String,
    /// Why, as the operator gave it.
    pub reason: String,
    /// Who asked.
    pub by: TerminatedBy,
}

/// Who ended a relationship: `termination.relationship_terminated`'s `by`, written as one string
/// (`api`, `api:{token}`, or whatever another writer of the log put there), read back to the
/// same string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TerminatedBy {
    /// The operator API; with the configured bearer token that authorised the call (the first 16
    /// hex digits of its hash) when tokens are configured.
    Api {
        /// Names the token, never the token itself.
        token: Option<String>,
    },
    /// A `by` this version does not write (a log from another tool or version), kept as written.
    Other(String),
}

impl TerminatedBy {
    const API: &'static str = "api";
}

impl std::fmt::Display for TerminatedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Api { token: None } => f.write_str(Self::API),
            Self::Api { token: Some(token) } => write!(f, "{}:{token}", Self::API),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl From<&str> for TerminatedBy {
    fn from(text: &str) -> Self {
        match text.strip_prefix(Self::API) {
            Some("") => Self::Api { token: None },
            Some(token) => match token.strip_prefix(':') {
                Some(token) => Self::Api {
                    token: Some(token.to_string()),
                },
                None => Self::Other(text.to_string()),
            },
            None => Self::Other(text.to_string()),
        }
    }
}

impl Serialize for TerminatedBy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TerminatedBy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::from(text.as_ref()))
    }
}

/// `server.clock_behind`: the wall clock read earlier than the log's latest record. Records are
/// stamped with the real clock from here on; investigators' time windows say how they treat the
/// jump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerClockBehind {
    /// The log's latest time before this record.
    pub last_at: crate::Timestamp,
    /// The wall clock when the server noticed.
    pub now: crate::Timestamp,
    /// How far behind.
    pub behind_ms: u64,
}

impl ServerClockBehind {
    /// The step back from the log's latest time `last_at` to the clock's `now`, when there is one.
    pub fn between(last_at: crate::Timestamp, now: crate::Timestamp) -> Option<Self> {
        let behind_ms = u64::try_from(last_at.millis() - now.millis()).ok()?;
        (behind_ms > 0).then_some(Self {
            last_at,
            now,
            behind_ms,
        })
    }
}

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $kind:literal => $variant:ident($data:ty), )*) => {
        /// One fact the log records: its kind and its data.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum EventData {
            $( $(#[$doc])* $variant($data), )*
        }

        impl EventData {
            /// Every kind, in the order of SPEC §3.3.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The dotted kind, `category.action`.
            pub fn kind(&self) -> &'static str {
                match self { $( Self::$variant(_) => $kind, )* }
            }

            /// Writes the data object (without the kind) as JSON, fields in declaration order.
            pub(crate) fn write_data(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
                match self { $( Self::$variant(data) => serde_json::to_writer(out, data), )* }
            }

            /// The data as a JSON value, for views and reports.
            pub fn data_json(&self) -> serde_json::Value {
                let mut out = Vec::new();
                match self.write_data(&mut out).and_then(|()| serde_json::from_slice(&out)) {
                    Ok(value) => value,
                    Err(_) => serde_json::Value::Null,
                }
            }

            /// Reads the data of a record of `kind`.
            pub(crate) fn decode(kind: &str, data: &str) -> Result<Self, DecodeError> {
                match kind {
                    $( $kind => serde_json::from_str(data).map(Self::$variant).map_err(|error| DecodeError::BadData(error.to_string())), )*
                    _ => Err(DecodeError::UnknownKind),
                }
            }
        }
    };
}

/// Why a record's event could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    UnknownKind,
    BadData(String),
}

event_kinds! {
    /// The server started.
    "server.started" => ServerStarted(ServerStarted),
    /// The server began a graceful stop.
    "server.stopping" => ServerStopping(ServerStopping),
    /// A provider was added.
    "admin.provider_registered" => ProviderRegistered(ProviderChanged),
    /// A provider was removed.
    "admin.provider_removed" => ProviderRemoved(ProviderChanged),
    /// A session got a slot.
    "connection.accepted" => ConnectionAccepted(ConnectionAccepted),
    /// An upgrade is waiting for a slot.
    "connection.queued" => ConnectionQueued(ConnectionQueued),
    /// A waiting upgrade got a slot.
    "connection.promoted" => ConnectionPromoted(ConnectionPromoted),
    /// A waiting upgrade gave up with 503.
    "connection.queue_timeout" => ConnectionQueueTimeout(ConnectionQueueTimeout),
    /// An upgrade was refused with 503.
    "connection.rejected" => ConnectionRejected(ConnectionRejected),
    /// A well-formed auth message arrived.
    "connection.handshake_started" => HandshakeStarted(HandshakeStarted),
    /// The consent token verified.
    "consent.verified" => ConsentVerified(ConsentVerified),
    /// A challenge was sent.
    "connection.challenge_issued" => ChallengeIssued(ChallengeIssued),
    /// The challenge was answered correctly.
    "connection.challenge_verified" => ChallengeVerified(ChallengeVerified),
    /// A care relationship was recorded.
    "consent.relationship_established" => RelationshipEstablished(RelationshipEstablished),
    /// The patient received the provider's address.
    "connection.handshake_completed" => HandshakeCompleted(HandshakeCompleted),
    /// The handshake was refused.
    "connection.handshake_failed" => HandshakeFailed(HandshakeFailed),
    /// The client was too slow.
    "connection.timeout" => ConnectionTimeout(ConnectionTimeout),
    /// The connection ended without completing.
    "connection.closed" => ConnectionClosed(ConnectionClosed),
    /// Connections were turned away before a session existed (a summary).
    "connection.refused" => ConnectionRefused(ConnectionRefused),
    /// A relationship was ended for good.
    "termination.relationship_terminated" => RelationshipTerminated(RelationshipTerminated),
    /// The Neuron signed the chain head.
    "log.checkpoint" => LogCheckpoint(LogCheckpoint),
    /// The log was rebuilt from an export.
    "log.restored" => LogRestored(LogRestored),
    /// A witness cosigned a checkpoint.
    "log.cosigned" => LogCosigned(LogCosigned),
    /// A witness holds a view of the log this log does not extend.
    "log.witness_conflict" => LogWitnessConflict(LogWitnessConflict),
    /// An operator accepted a rollback witnesses saw.
    "log.rollback_acknowledged" => LogRollbackAcknowledged(LogRollbackAcknowledged),
    /// The wall clock read earlier than the log's latest record.
    "server.clock_behind" => ServerClockBehind(ServerClockBehind),
}

impl EventData {
    /// Whether this event ends its session (SPEC §3.3: exactly one per session).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::HandshakeCompleted(_)
                | Self::HandshakeFailed(_)
                | Self::ConnectionTimeout(_)
                | Self::ConnectionClosed(_)
                | Self::ConnectionQueueTimeout(_)
                | Self::ConnectionRejected(_)
        )
    }
}

/// An event as a caller hands it to the log: the session it belongs to, if any, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The session id, for connection and consent events.
    pub session: Option<String>,
    /// What happened.
    pub data: EventData,
}

impl Event {
    /// An event belonging to `session`.
    pub fn in_session(session: impl Into<String>, data: EventData) -> Self {
        Self {
            session: Some(session.into()),
            data,
        }
    }

    /// An event of the server as a whole.
    pub fn global(data: EventData) -> Self {
        Self {
            session: None,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde, `as_str` and `Display` write one word per variant, and serde reads it back.
    fn words_agree<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + std::fmt::Debug + PartialEq + Serialize + serde::de::DeserializeOwned,
        T: std::fmt::Display,
    {
        for &variant in all {
            let word = as_str(variant);
            assert_eq!(
                serde_json::to_string(&variant).ok(),
                Some(format!("\"{word}\""))
            );
            assert_eq!(variant.to_string(), word);
            let read: T = serde_json::from_str(&format!("\"{word}\"")).unwrap();
            assert_eq!(read, variant);
        }
    }

    #[test]
    fn who_ended_a_relationship_reads_back_as_written() {
        for (text, by) in [
            ("api", TerminatedBy::Api { token: None }),
            (
                "api:0123456789abcdef",
                TerminatedBy::Api {
                    token: Some("0123456789abcdef".into()),
                },
            ),
            ("apiary", TerminatedBy::Other("apiary".into())),
            ("dr. jones", TerminatedBy::Other("dr. jones".into())),
            ("", TerminatedBy::Other(String::new())),
        ] {
            let json = serde_json::to_string(&text).unwrap();
            let read: TerminatedBy = serde_json::from_str(&json).unwrap();
            assert_eq!(read, by, "{text}");
            assert_eq!(serde_json::to_string(&read).unwrap(), json, "{text}");
        }
        let escaped: TerminatedBy = serde_json::from_str(r#""api:\u0041""#).unwrap();
        assert_eq!(
            escaped,
            TerminatedBy::Api {
                token: Some("A".into())
            }
        );
    }

    #[test]
    fn an_absent_relationship_is_written_new_and_read_back_absent() {
        let issued = ChallengeIssued {
            nonce: "07".repeat(32),
            relationship: None,
        };
        let json = serde_json::to_string(&issued).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"nonce":"{}","relationship":"new"}}"#, "07".repeat(32))
        );
        assert_eq!(
            serde_json::from_str::<ChallengeIssued>(&json).unwrap(),
            issued
        );

        let existing = ChallengeIssued {
            relationship: Some("0b8f6c2e-3d41-4f7a-9c15-2a6e8d9b7f10".into()),
            ..issued
        };
        let json = serde_json::to_string(&existing).unwrap();
        assert!(json.ends_with(r#""relationship":"0b8f6c2e-3d41-4f7a-9c15-2a6e8d9b7f10"}"#));
        assert_eq!(
            serde_json::from_str::<ChallengeIssued>(&json).unwrap(),
            existing
        );
    }

    #[test]
    fn an_absent_provider_is_written_unknown_and_read_back_absent() {
        let failed = HandshakeFailed {
            stage: Stage::Consent,
            code: ErrorCode::ConsentFailed,
            reason: "bad signature".into(),
            provider_npi: None,
        };
        let json = serde_json::to_string(&failed).unwrap();
        assert!(json.ends_with(r#""provider_npi":"unknown"}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<HandshakeFailed>(&json).unwrap(),
            failed
        );

        let named = HandshakeFailed {
            provider_npi: Some("1234567893".into()),
            ..failed
        };
        let json = serde_json::to_string(&named).unwrap();
        assert!(json.ends_with(r#""provider_npi":"1234567893"}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<HandshakeFailed>(&json).unwrap(),
            named
        );
    }

    #[test]
    fn a_word_that_is_not_a_string_is_refused() {
        let error = serde_json::from_str::<ChallengeIssued>(r#"{"nonce":"00","relationship":7}"#);
        assert!(error.is_err());
    }

    #[test]
    fn every_worded_enum_writes_and_reads_its_word() {
        words_agree(ChangeSource::ALL, ChangeSource::as_str);
        words_agree(RejectReason::ALL, RejectReason::as_str);
        words_agree(RefuseReason::ALL, RefuseReason::as_str);
        words_agree(Stage::ALL, Stage::as_str);
        words_agree(ErrorCode::ALL, ErrorCode::as_str);
        words_agree(RelationshipStatus::ALL, RelationshipStatus::as_str);
        words_agree(ClosedBy::ALL, ClosedBy::as_str);
        assert_eq!(ErrorCode::ALL.len(), 6);
        assert_eq!(ErrorCode::ConsentFailed.as_str(), "CONSENT_FAILED");
        assert_eq!(Stage::Queue.as_str(), "queued");
    }

    #[test]
    fn the_stage_written_before_queued_was_settled_still_reads() {
        let stage: Stage = serde_json::from_str("\"queue\"").unwrap();
        assert_eq!(stage, Stage::Queue);
    }
}
