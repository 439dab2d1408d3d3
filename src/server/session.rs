//! One handshake session over its WebSocket: frames, timers and the stop signal become inputs of
//! the pure [`handshake::step`]; its events are committed, and only then its effects carried out.
//!
//! Whatever the client does, the session ends with exactly one terminal record, and its slot is
//! released as soon as that record is committed: before any effect, never after a socket drains.
//! Timers fire whatever the socket's state; every write has the connection's write timeout.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::warn;

use neuron_events::event::EventData;
use neuron_events::{Committed, Event};

use crate::config::Config;

use super::live::{Live, StopPhase};
use neuron_handshake::machine::{self as handshake, Context, Effect, Input, Phase};
use neuron_handshake::wire::ServerMessage;
use neuron_handshake::CloseCode as Close;

/// A session's socket: the connection hyper upgraded (with its write timeout), speaking WebSocket.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// What every session is served with, read from the configuration once, when the gateway is
/// built.
pub(crate) struct Terms {
    /// `websocket.auth_timeout_ms`: from the 101 to `handshake.auth`.
    auth_timeout: Duration,
    /// `websocket.challenge_timeout_ms`: from the challenge to its answer.
    challenge_timeout: Duration,
    /// `websocket.max_payload_bytes`: a larger frame is refused with 1009.
    max_payload_bytes: usize,
    /// `organization.npi`, which a challenge names.
    organization_npi: String,
    /// `server.public_url`, the base of the provider endpoints a completion gives.
    public_url: String,
}

impl Terms {
    /// The terms `config` sets.
    pub(crate) fn of(config: &Config) -> Self {
        Self {
            auth_timeout: Duration::from_millis(config.websocket.auth_timeout_ms),
            challenge_timeout: Duration::from_millis(config.websocket.challenge_timeout_ms),
            max_payload_bytes: config.websocket.max_payload_bytes,
            organization_npi: config.organization.npi.clone(),
            public_url: config.server.public_url.clone(),
        }
    }
}

/// How long a closing session waits for the client's side of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The WebSocket settings of a session: small buffers (a handshake is a few short frames), and a
/// bounded write buffer. Frames up to twice `max_payload_bytes` are read whole, so that one over
/// the limit is refused with 1009 after it has been consumed (a clean close); larger ones end the
/// connection at the protocol level.
pub(crate) fn socket_config(max_payload_bytes: usize) -> WebSocketConfig {
    let hard_limit = max_payload_bytes.saturating_mul(2).saturating_add(1024);
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

/// The protocol violation a read error is, if it is one: what RFC 6455 has the server close
/// with. A connection that ended without a closing handshake is the client's going away (1006),
/// not a violation.
fn violation(error: &tungstenite::Error) -> Option<Input> {
    use tungstenite::error::ProtocolError;
    match error {
        tungstenite::Error::Utf8(_) => Some(Input::ProtocolViolation {
            close: Close::InvalidPayload,
            reason: "a text frame that is not UTF-8".into(),
        }),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        tungstenite::Error::Protocol(violation) => Some(Input::ProtocolViolation {
            close: Close::ProtocolError,
            reason: format!("WebSocket protocol violation: {violation}"),
        }),
        _ => None,
    }
}

/// Runs a session from its 101 to its end, on `terms`. `slot` is released when the terminal
/// record commits.
pub(crate) async fn run(
    session: String,
    mut socket: Socket,
    slot: OwnedSemaphorePermit,
    live: Arc<Live>,
    terms: Arc<Terms>,
) {
    let mut slot = Some(slot);
    let mut phase = Phase::AwaitingAuth;
    let mut deadline = tokio::time::Instant::now() + terms.auth_timeout;
    let mut stopping = live.stop.clone();
    let mut cut = live.stop.clone();
    let mut closing = false;
    while phase != Phase::Ended {
        let input = tokio::select! {
            () = stopping.reached(StopPhase::Stopping) => Input::ShuttingDown,
            () = tokio::time::sleep_until(deadline) => match phase {
                Phase::Challenged(_) => Input::ChallengeTimerFired,
                _ => Input::AuthTimerFired,
            },
            frame = socket.next() => match input_of(frame, terms.max_payload_bytes) {
                Some(input) => input,
                None => continue,
            },
        };
        let (transition, completed) = decide(&live, &terms, &session, &phase, input).await;
        phase = transition.next;
        if phase == Phase::Ended {
            // The terminal record is committed: the slot is free before anything is sent.
            drop(slot.take());
        }
        let Carried {
            frames,
            closes,
            challenge_timer,
        } = carry_out(&live, transition.effects, completed.as_ref()).await;
        closing |= closes;
        if challenge_timer {
            deadline = tokio::time::Instant::now() + terms.challenge_timeout;
        }
        if frames.is_empty() {
            continue;
        }
        let mut frames = futures_util::stream::iter(frames.into_iter().map(Ok));
        let sent = tokio::select! {
            sent = socket.send_all(&mut frames) => sent,
            () = cut.reached(StopPhase::Cut) => Err(tungstenite::Error::ConnectionClosed),
        };
        if let (Err(error), false) = (sent, phase == Phase::Ended) {
            // The session has not ended and cannot be written to: its end is recorded, and
            // nothing more is sent.
            let input = if live.stop.has_reached(StopPhase::Cut) {
                Input::ShuttingDown
            } else if matches!(&error, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
            {
                Input::WriteTimedOut
            } else {
                Input::Disconnected {
                    code: Close::Abnormal.code(),
                }
            };
            let (ended, _) = decide(&live, &terms, &session, &phase, input).await;
            drop(slot.take());
            phase = ended.next;
            closing = false;
        }
    }
    drop(slot);
    if closing {
        // Read what the client still sends (its close reply) so that the socket ends with FIN,
        // not with a reset that could destroy the close frame before the client reads it.
        let drain = async { while let Some(Ok(_)) = socket.next().await {} };
        tokio::select! {
            _ = tokio::time::timeout(CLOSE_GRACE, drain) => {}
            () = cut.reached(StopPhase::Cut) => {}
        }
    }
}

/// What a frame read (or the end of the stream, or a read error) means to the handshake; `None`
/// for a frame that changes nothing (pings are answered by the protocol layer; pongs and raw
/// frames are let go).
fn input_of(
    frame: Option<Result<Message, tungstenite::Error>>,
    max_payload_bytes: usize,
) -> Option<Input> {
    let abnormal = Input::Disconnected {
        code: Close::Abnormal.code(),
    };
    Some(match frame {
        None => abnormal,
        Some(Err(tungstenite::Error::Capacity(_))) => Input::Oversized,
        Some(Err(tungstenite::Error::Io(error)))
            if error.kind() == std::io::ErrorKind::TimedOut =>
        {
            Input::WriteTimedOut
        }
        Some(Err(error)) => violation(&error).unwrap_or(abnormal),
        Some(Ok(Message::Text(text))) if text.len() > max_payload_bytes => Input::Oversized,
        Some(Ok(Message::Binary(bytes))) if bytes.len() > max_payload_bytes => Input::Oversized,
        Some(Ok(Message::Text(text))) => Input::Text(text.as_str().to_string()),
        Some(Ok(Message::Binary(_))) => Input::Binary,
        Some(Ok(Message::Close(frame))) => Input::Disconnected {
            code: frame.map_or(Close::NoStatus.code(), |frame| u16::from(frame.code)),
        },
        Some(Ok(_)) => return None,
    })
}

/// What a transition's effects come to at the socket.
struct Carried {
    /// The frames to write, together: an error frame and its close in one write, not two packets
    /// the second of which would wait on the first one's acknowledgement.
    frames: Vec<Message>,
    /// Whether a close frame is among them.
    closes: bool,
    /// Whether the challenge timer starts now.
    challenge_timer: bool,
}

/// Turns a transition's effects into frames; a `handshake.complete` that asked for a receipt gets
/// it from `completed`, what the journal said of the record the transition committed.
async fn carry_out(live: &Live, effects: Vec<Effect>, completed: Option<&Committed>) -> Carried {
    let mut carried = Carried {
        frames: Vec::new(),
        closes: false,
        challenge_timer: false,
    };
    for effect in effects {
        match effect {
            Effect::Send(message) => carried.frames.push(Message::text(message.to_text())),
            Effect::SendWithReceipt(mut message) => {
                if let (ServerMessage::Complete { receipt, .. }, Some(record)) =
                    (&mut message, completed)
                {
                    *receipt = make_receipt(live, record).await;
                }
                carried.frames.push(Message::text(message.to_text()));
            }
            Effect::Close(code) => {
                carried.frames.push(Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code.code()),
                    reason: "".into(),
                })));
                carried.closes = true;
            }
            Effect::StartChallengeTimer => carried.challenge_timer = true,
        }
    }
    carried
}

/// Steps the handshake and commits the transition's events; a failed commit becomes the
/// transition of [`Input::CommitFailed`] (SERVER_ERROR, nothing recorded). Also returns the
/// `connection.handshake_completed` record the transition committed, if any.
async fn decide(
    live: &Live,
    terms: &Terms,
    session: &str,
    phase: &Phase,
    input: Input,
) -> (handshake::Transition, Option<Committed>) {
    // A frame's step reads the relationships and providers: no operator change may land between
    // that reading and the commit of what it decided.
    let steady = if matches!(input, Input::Text(_)) {
        Some(live.changes.read().await)
    } else {
        None
    };
    // An answer to a challenge may establish the pair's relationship: no other session of the
    // pair decides until this one's records are committed (and in the views it reads). Taken
    // after the change lock, as every holder of both takes them.
    let deciding = match (phase, &input) {
        (Phase::Challenged(challenge), Input::Text(_)) => Some(
            live.pairs
                .lock(
                    &challenge.claims.patient_agent_id,
                    &challenge.claims.provider_npi,
                )
                .await,
        ),
        _ => None,
    };
    let mut transition = step(live, terms, phase, input);
    let completion = transition
        .events
        .iter()
        .position(|event| matches!(event, EventData::HandshakeCompleted(_)));
    let completed = match commit(live, session, std::mem::take(&mut transition.events)).await {
        Ok(mut committed) => completion
            .filter(|&index| index < committed.len())
            .map(|index| committed.swap_remove(index)),
        Err(_) => {
            transition = step(live, terms, phase, Input::CommitFailed);
            None
        }
    };
    drop(deciding);
    drop(steady);
    (transition, completed)
}

/// The consent receipt of the completion `record` (SPEC §3.5): its inclusion proof under the
/// checkpoint its batch ended with, made in memory from what the batch knows of the tree
/// ([`neuron_events::receipt::BatchEvidence`]); failing that, under the latest checkpoint from
/// stored hashes on a blocking thread. A receipt that cannot be made is left out, and said in the
/// server's log: the handshake is complete and recorded whatever happens to its evidence.
async fn make_receipt(live: &Live, record: &Committed) -> Option<String> {
    let seq = record.seq;
    match record
        .evidence
        .as_ref()
        .and_then(|evidence| evidence.receipt(seq))
    {
        Some(Ok(receipt)) => return Some(receipt.to_text()),
        Some(Err(error)) => {
            warn!(%error, seq, "the batch could not prove the record: the receipt is made from the store");
        }
        None => {}
    }
    let checkpoint = live.journal.status().checkpoint?;
    if checkpoint.size < seq {
        // Signing is held (a witness conflict): no checkpoint covers the record.
        warn!(
            seq,
            "no signed checkpoint covers the record: the handshake gets no receipt"
        );
        return None;
    }
    let reader = live.reader.clone();
    let made = tokio::task::spawn_blocking(move || {
        neuron_events::receipt::make(reader.as_ref(), seq, &checkpoint)
    })
    .await;
    match made {
        Ok(Ok(receipt)) => Some(receipt.to_text()),
        Ok(Err(error)) => {
            warn!(%error, seq, "could not make the receipt of a completed handshake");
            None
        }
        Err(error) => {
            warn!(%error, seq, "the receipt task failed");
            None
        }
    }
}

fn step(live: &Live, terms: &Terms, phase: &Phase, input: Input) -> handshake::Transition {
    let needs_fresh_values = matches!(input, Input::Text(_));
    let (nonce, new_relationship_id) = if needs_fresh_values {
        (live.ids.nonce(), live.ids.relationship_id())
    } else {
        ([0; 32], String::new())
    };
    let views = live.views();
    let context = Context {
        now: live.clock.now(),
        nonce,
        new_relationship_id,
        organization_npi: &terms.organization_npi,
        public_url: &terms.public_url,
        providers: &views.providers,
        relationships: &views.relationships,
    };
    handshake::step(phase, input, &context)
}

/// Commits a session's events as one batch.
///
/// # Errors
/// The journal's error (logged here).
pub(crate) async fn commit(
    live: &Live,
    session: &str,
    events: Vec<EventData>,
) -> Result<Vec<neuron_events::Committed>, neuron_events::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let events = events
        .into_iter()
        .map(|data| Event::in_session(session, data))
        .collect();
    match live.journal.append_all(events).await {
        Ok(committed) => Ok(committed),
        Err(error) => {
            warn!(%error, "could not commit the session's events");
            Err(error)
        }
    }
}
