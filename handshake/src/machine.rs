//! The handshake as a pure step function (SPEC §2.3, §2.4): `step(&phase, input, &context)` returns
//! the next phase, the events to append and the effects to carry out once those events are
//! committed. No socket, no clock, no tokio: `now`, the nonce and the candidate relationship id come
//! in through the [`Context`].

use ed25519_dalek::{Signature, VerifyingKey};

use neuron_events::b64;
use neuron_events::event::*;
use neuron_events::Timestamp;
use neuron_projections::relationships::Standing;
use neuron_projections::{ProvidersView, RelationshipsView};

use crate::consent::{self, Claims};
use crate::failure::{CloseCode, Failure};
use crate::wire::{self, ClientMessage, ServerMessage};

/// Where a session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for `handshake.auth`.
    AwaitingAuth,
    /// A challenge was sent; waiting for its answer.
    Challenged(Box<Challenge>),
    /// Done: nothing more happens to this session.
    Ended,
}

/// What the Neuron remembers between the challenge and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The nonce sent.
    pub nonce: [u8; 32],
    /// The verified claims.
    pub claims: Claims,
    /// The key the patient must prove (decompressed once, when the consent was verified).
    pub patient_public_key: VerifyingKey,
    /// The patient's endpoint.
    pub patient_endpoint: String,
    /// The active relationship the challenge was issued for, when there was one: it must still be
    /// active when the challenge is answered.
    pub relationship: Option<String>,
    /// Whether the patient's agent asked for a consent receipt.
    pub receipt: bool,
}

impl Phase {
    fn stage(&self) -> Stage {
        match self {
            Self::AwaitingAuth => Stage::Auth,
            Self::Challenged(_) => Stage::Challenge,
            Self::Ended => Stage::Complete,
        }
    }
}

/// Something that happened to the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A text frame arrived.
    Text(String),
    /// A binary frame arrived.
    Binary,
    /// A frame larger than `max_payload_bytes` arrived.
    Oversized,
    /// The auth timer ran out.
    AuthTimerFired,
    /// The challenge timer ran out.
    ChallengeTimerFired,
    /// The client went away, with this close code (1006 when it sent none).
    Disconnected {
        /// The close code.
        code: u16,
    },
    /// The server is shutting down.
    ShuttingDown,
    /// The client did not take what was sent within the write timeout.
    WriteTimedOut,
    /// The client broke the WebSocket protocol (RFC 6455): the server closes with the code the
    /// RFC names (1002, or 1007 for text that is not UTF-8), saying which rule was broken.
    ProtocolViolation {
        /// 1002 or 1007.
        close: CloseCode,
        /// What was wrong.
        reason: String,
    },
    /// The events of the previous transition could not be committed.
    CommitFailed,
}

/// What the connection must do, after the transition's events are committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this frame.
    Send(ServerMessage),
    /// Send this `handshake.complete` with a consent receipt of the transition's
    /// `connection.handshake_completed` record, which the shell makes once that record is
    /// committed (SPEC §3.5).
    SendWithReceipt(ServerMessage),
    /// Close the socket with this code.
    Close(CloseCode),
    /// Start the challenge timer.
    StartChallengeTimer,
}

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The next phase.
    pub next: Phase,
    /// Events to append, in order, before any effect.
    pub events: Vec<EventData>,
    /// Effects to carry out once the events are committed.
    pub effects: Vec<Effect>,
}

/// What a step may consult. Everything the core would otherwise fetch from the world.
pub struct Context<'a> {
    /// The current time.
    pub now: Timestamp,
    /// A fresh nonce, used if a challenge is issued.
    pub nonce: [u8; 32],
    /// A fresh relationship id, used if a relationship is established.
    pub new_relationship_id: String,
    /// This organization's NPI.
    pub organization_npi: &'a str,
    /// `server.public_url`.
    pub public_url: &'a str,
    /// Registered providers.
    pub providers: &'a ProvidersView,
    /// Relationships.
    pub relationships: &'a RelationshipsView,
}

fn ended(events: Vec<EventData>, effects: Vec<Effect>) -> Transition {
    Transition {
        next: Phase::Ended,
        events,
        effects,
    }
}

fn error_effects(code: ErrorCode, message: &str, close: CloseCode) -> Vec<Effect> {
    vec![
        Effect::Send(ServerMessage::Error {
            code,
            message: message.to_string(),
        }),
        Effect::Close(close),
    ]
}

/// The handshake ends refused: `events`, then the failure's record; its error frame, then its
/// close.
fn failed(failure: Failure, mut events: Vec<EventData>) -> Transition {
    let effects = error_effects(failure.code, &failure.reason, failure.close);
    events.push(EventData::HandshakeFailed(HandshakeFailed {
        stage: failure.stage,
        code: failure.code,
        reason: failure.reason,
        provider_npi: failure.provider_npi,
    }));
    ended(events, effects)
}

/// The provider's direct address.
pub fn provider_endpoint(public_url: &str, provider_npi: &str) -> String {
    format!(
        "{}/ws/provider/{provider_npi}",
        public_url.trim_end_matches('/')
    )
}

/// One step of the handshake.
pub fn step(phase: &Phase, input: Input, context: &Context<'_>) -> Transition {
    let stage = phase.stage();
    match (phase, input) {
        (Phase::Ended, _) => ended(Vec::new(), Vec::new()),
        (_, Input::CommitFailed) => ended(
            Vec::new(),
            error_effects(
                ErrorCode::ServerError,
                "the event log could not be written",
                CloseCode::ServerError,
            ),
        ),
        (_, Input::Disconnected { code }) => ended(
            vec![EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Client,
                code: Some(code),
                stage,
                reason: None,
            })],
            Vec::new(),
        ),
        (_, Input::ShuttingDown) => ended(
            vec![EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Server,
                code: Some(CloseCode::GoingAway.code()),
                stage,
                reason: None,
            })],
            vec![Effect::Close(CloseCode::GoingAway)],
        ),
        (_, Input::ProtocolViolation { close, reason }) => ended(
            vec![EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Server,
                code: Some(close.code()),
                stage,
                reason: Some(reason),
            })],
            vec![Effect::Close(close)],
        ),
        // A client that does not read is cut off: no close frame can reach it (1006).
        (_, Input::WriteTimedOut) => ended(
            vec![EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Server,
                code: Some(CloseCode::Abnormal.code()),
                stage,
                reason: None,
            })],
            Vec::new(),
        ),
        (Phase::AwaitingAuth, Input::AuthTimerFired) => ended(
            vec![EventData::ConnectionTimeout(ConnectionTimeout {
                stage,
                code: ErrorCode::AuthTimeout,
            })],
            error_effects(
                ErrorCode::AuthTimeout,
                "no handshake.auth in time",
                CloseCode::for_error(ErrorCode::AuthTimeout, stage),
            ),
        ),
        (Phase::Challenged(_), Input::ChallengeTimerFired) => ended(
            vec![EventData::ConnectionTimeout(ConnectionTimeout {
                stage,
                code: ErrorCode::ChallengeTimeout,
            })],
            error_effects(
                ErrorCode::ChallengeTimeout,
                "no handshake.challenge_response in time",
                CloseCode::for_error(ErrorCode::ChallengeTimeout, stage),
            ),
        ),
        // A timer of a stage already left is stale: nothing happens.
        (phase, Input::AuthTimerFired | Input::ChallengeTimerFired) => Transition {
            next: phase.clone(),
            events: Vec::new(),
            effects: Vec::new(),
        },
        (phase, Input::Binary) => failed(
            Failure::new(
                stage,
                ErrorCode::InvalidMessage,
                "binary frames are not accepted",
            )
            .naming(provider_of(phase)),
            Vec::new(),
        ),
        (phase, Input::Oversized) => failed(
            Failure::new(
                stage,
                ErrorCode::InvalidMessage,
                "frame larger than max_payload_bytes",
            )
            .naming(provider_of(phase))
            .closing(CloseCode::TooBig),
            Vec::new(),
        ),
        (Phase::AwaitingAuth, Input::Text(text)) => match wire::parse(&text) {
            Err(wire::Invalid(reason)) => failed(
                Failure::new(stage, ErrorCode::InvalidMessage, reason),
                Vec::new(),
            ),
            Ok(ClientMessage::Auth(auth)) => on_auth(auth, context),
            Ok(other) => failed(
                Failure::new(
                    stage,
                    ErrorCode::InvalidMessage,
                    format!("expected handshake.auth, got {}", other.type_name()),
                ),
                Vec::new(),
            ),
        },
        (Phase::Challenged(challenge), Input::Text(text)) => {
            let provider = Some(challenge.claims.provider_npi.as_str());
            match wire::parse(&text) {
                Err(wire::Invalid(reason)) => failed(
                    Failure::new(stage, ErrorCode::InvalidMessage, reason).naming(provider),
                    Vec::new(),
                ),
                Ok(ClientMessage::ChallengeResponse { signed_nonce }) => {
                    on_response(challenge, &signed_nonce, context)
                }
                Ok(other) => failed(
                    Failure::new(
                        stage,
                        ErrorCode::InvalidMessage,
                        format!(
                            "expected handshake.challenge_response, got {}",
                            other.type_name()
                        ),
                    )
                    .naming(provider),
                    Vec::new(),
                ),
            }
        }
    }
}

fn provider_of(phase: &Phase) -> Option<&str> {
    match phase {
        Phase::Challenged(challenge) => Some(&challenge.claims.provider_npi),
        _ => None,
    }
}

fn on_auth(auth: wire::Auth, context: &Context<'_>) -> Transition {
    let started = EventData::HandshakeStarted(HandshakeStarted {
        patient_agent_id: auth.patient_agent_id.clone(),
        patient_endpoint: auth.patient_endpoint.clone(),
    });
    let (claims, key) = match consent::verify(&auth, context.now, context.providers) {
        Ok(verified) => (verified.claims, verified.key),
        Err(failure) => return failed(failure, vec![started]),
    };
    let existing = context
        .relationships
        .active_for(&claims.patient_agent_id, &claims.provider_npi);
    if let Some(existing) = &existing {
        if !existing.has_key(&auth.patient_public_key) {
            return failed(
                Failure::new(Stage::Consent, ErrorCode::ConsentFailed, KEY_DIFFERS)
                    .naming(Some(&claims.provider_npi)),
                vec![started],
            );
        }
    }
    let nonce_hex = hex_lower(&context.nonce);
    let events = vec![
        started,
        EventData::ConsentVerified(ConsentVerified {
            patient_agent_id: claims.patient_agent_id.clone(),
            provider_npi: claims.provider_npi.clone(),
            consented_actions: claims.consented_actions.clone(),
            iat: claims.iat,
            exp: claims.exp,
        }),
        EventData::ChallengeIssued(ChallengeIssued {
            nonce: nonce_hex.clone(),
            relationship: existing
                .as_ref()
                .map(|relationship| relationship.id.to_string()),
        }),
    ];
    let effects = vec![
        Effect::Send(ServerMessage::Challenge {
            nonce: nonce_hex,
            provider_npi: claims.provider_npi.clone(),
            organization_npi: context.organization_npi.to_string(),
        }),
        Effect::StartChallengeTimer,
    ];
    Transition {
        next: Phase::Challenged(Box::new(Challenge {
            nonce: context.nonce,
            claims,
            patient_public_key: key,
            patient_endpoint: auth.patient_endpoint,
            relationship: existing.map(|relationship| relationship.id.into_owned()),
            receipt: auth.receipt,
        })),
        events,
        effects,
    }
}

fn on_response(
    challenge: &Challenge,
    signed_nonce: &[u8; 64],
    context: &Context<'_>,
) -> Transition {
    let claims = &challenge.claims;
    let provider = Some(claims.provider_npi.as_str());
    let verified = challenge
        .patient_public_key
        .verify_strict(&challenge.nonce, &Signature::from_bytes(signed_nonce));
    if verified.is_err() {
        return failed(
            Failure::new(
                Stage::Challenge,
                ErrorCode::ConsentFailed,
                "signed_nonce does not verify under patient_public_key",
            )
            .naming(provider),
            Vec::new(),
        );
    }
    if claims.exp <= context.now.seconds() {
        return failed(
            Failure::new(
                Stage::Challenge,
                ErrorCode::ConsentFailed,
                "consent token expired before the challenge was answered",
            )
            .naming(provider),
            Vec::new(),
        );
    }
    let key = b64::encode(challenge.patient_public_key.as_bytes());
    let endpoint = provider_endpoint(context.public_url, &claims.provider_npi);
    let mut events = vec![EventData::ChallengeVerified(ChallengeVerified {})];
    // The session holds the operators' change lock across this step and its commit: a change
    // made during the handshake wins (SPEC 2.3 step 7).
    if !context.providers.is_registered(&claims.provider_npi) {
        return failed(
            Failure::new(
                Stage::Challenge,
                ErrorCode::ProviderNotFound,
                format!(
                    "provider {} was removed during the handshake",
                    claims.provider_npi
                ),
            )
            .naming(provider),
            events,
        );
    }
    if let Some(id) = &challenge.relationship {
        let still_active = context
            .relationships
            .get(id)
            .is_some_and(|relationship| relationship.status == Standing::Active);
        if !still_active {
            return failed(
                Failure::new(
                    Stage::Challenge,
                    ErrorCode::ConsentFailed,
                    format!("relationship {id} was terminated during the handshake"),
                )
                .naming(provider),
                events,
            );
        }
    }
    // Look again: a relationship may have been established or terminated meanwhile.
    let (relationship_id, status) = match context
        .relationships
        .active_for(&claims.patient_agent_id, &claims.provider_npi)
    {
        Some(existing) if existing.has_key(challenge.patient_public_key.as_bytes()) => {
            (existing.id.to_string(), RelationshipStatus::Existing)
        }
        // Established by another session while this one was challenged, with another key.
        Some(_) => {
            return failed(
                Failure::new(
                    Stage::Challenge,
                    ErrorCode::ConsentFailed,
                    ESTABLISHED_MEANWHILE,
                )
                .naming(provider),
                events,
            );
        }
        None => {
            events.push(EventData::RelationshipEstablished(
                RelationshipEstablished {
                    relationship_id: context.new_relationship_id.clone(),
                    patient_agent_id: claims.patient_agent_id.clone(),
                    provider_npi: claims.provider_npi.clone(),
                    patient_public_key: key,
                    patient_endpoint: challenge.patient_endpoint.clone(),
                    consented_actions: claims.consented_actions.clone(),
                },
            ));
            (context.new_relationship_id.clone(), RelationshipStatus::New)
        }
    };
    events.push(EventData::HandshakeCompleted(HandshakeCompleted {
        relationship_id: relationship_id.clone(),
        status,
        provider_npi: claims.provider_npi.clone(),
        provider_endpoint: endpoint.clone(),
    }));
    let complete = ServerMessage::Complete {
        relationship_id,
        provider_endpoint: endpoint,
        status,
        receipt: None,
    };
    ended(
        events,
        vec![
            if challenge.receipt {
                Effect::SendWithReceipt(complete)
            } else {
                Effect::Send(complete)
            },
            Effect::Close(CloseCode::Normal),
        ],
    )
}

/// Why a key that is not the relationship's is refused.
const KEY_DIFFERS: &str = "patient_public_key differs from the key of the established relationship";

/// Why a session whose pair got its relationship from another session, with another key, while it
/// was challenged is refused.
const ESTABLISHED_MEANWHILE: &str = "another key established this relationship";

fn hex_lower(bytes: &[u8; 32]) -> String {
    neuron_events::Digest(*bytes).to_hex()
}
