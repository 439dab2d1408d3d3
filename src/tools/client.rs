//! A patient agent's side of the v1 handshake, for `neuron demo-client`, `neuron loadgen` and the
//! integration tests: it builds and signs a consent token, runs one handshake over a real
//! WebSocket, and reports every message and the close code.

use std::net::SocketAddr;

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use neuron_events::b64;

/// A patient's agent: its id, key and endpoint.
pub struct Patient {
    /// The agent id.
    pub agent_id: String,
    /// Its Ed25519 key.
    pub key: SigningKey,
    /// Where it can be reached.
    pub endpoint: String,
}

impl Patient {
    /// A patient with this key seed.
    pub fn from_seed(agent_id: &str, seed: [u8; 32]) -> Self {
        Self {
            agent_id: agent_id.to_string(),
            key: SigningKey::from_bytes(&seed),
            endpoint: format!("wss://{agent_id}.example/agent"),
        }
    }

    /// The claims JSON of a consent for `provider_npi`, valid from `iat` to `exp` (seconds).
    pub fn claims(&self, provider_npi: &str, iat: i64, exp: i64) -> String {
        serde_json::json!({
            "patient_agent_id": self.agent_id,
            "provider_npi": provider_npi,
            "consented_actions": ["read:observations", "write:messages"],
            "iat": iat,
            "exp": exp,
        })
        .to_string()
    }

    /// A signed `handshake.auth` frame carrying `payload` as the token.
    pub fn auth_frame(&self, payload: &str) -> String {
        self.auth_json(payload).to_string()
    }

    /// The same, asking for a consent receipt (`"receipt": true`, SPEC §2.1).
    pub fn auth_frame_with_receipt(&self, payload: &str) -> String {
        let mut auth = self.auth_json(payload);
        auth["receipt"] = true.into();
        auth.to_string()
    }

    fn auth_json(&self, payload: &str) -> serde_json::Value {
        let signature = self.key.sign(payload.as_bytes());
        serde_json::json!({
            "type": "handshake.auth",
            "consent_token_payload": b64::encode(payload),
            "consent_token_signature": b64::encode(signature.to_bytes()),
            "patient_agent_id": self.agent_id,
            "patient_public_key": b64::encode(self.key.verifying_key().as_bytes()),
            "patient_endpoint": self.endpoint,
        })
    }

    /// The `handshake.challenge_response` to a challenge frame, or `None` if the frame is not a
    /// challenge with a 64-hex nonce.
    pub fn answer(&self, challenge: &serde_json::Value) -> Option<String> {
        let nonce = challenge.get("nonce")?.as_str()?;
        let mut bytes = [0u8; 32];
        hex_decode(nonce, &mut bytes)?;
        let signature = self.key.sign(&bytes);
        Some(serde_json::json!({"type": "handshake.challenge_response", "signed_nonce": b64::encode(signature.to_bytes())}).to_string())
    }
}

fn hex_decode(text: &str, out: &mut [u8; 32]) -> Option<()> {
    let digest = neuron_events::Digest::from_hex(text).ok()?;
    *out = digest.0;
    Some(())
}

/// Why a client run failed before the handshake could play out.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or the connection failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The server refused the upgrade with this HTTP status.
    #[error("upgrade refused with HTTP {status}")]
    Refused {
        /// The status.
        status: u16,
        /// Its Retry-After header, if any.
        retry_after: Option<String>,
    },
}

/// A WebSocket connection to the Neuron.
pub type Connection = WebSocketStream<TcpStream>;

/// Opens the WebSocket, optionally from a chosen local address (tests use fixed loopback source
/// addresses so that recorded peers are the same on every run).
///
/// # Errors
/// [`ClientError`] when the connection or the upgrade fails.
pub async fn connect(url: &str, from: Option<SocketAddr>) -> Result<Connection, ClientError> {
    let request = url
        .into_client_request()
        .map_err(|error| ClientError::Connect(error.to_string()))?;
    let host = request.uri().host().unwrap_or("127.0.0.1").to_string();
    let port = request.uri().port_u16().unwrap_or(80);
    let target: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|error| ClientError::Connect(error.to_string()))?
        .next()
        .ok_or_else(|| ClientError::Connect(format!("{host} has no address")))?;
    let stream = match from {
        Some(local) => {
            let socket = if local.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|error| ClientError::Connect(error.to_string()))?;
            socket
                .set_reuseaddr(true)
                .map_err(|error| ClientError::Connect(error.to_string()))?;
            socket
                .bind(local)
                .map_err(|error| ClientError::Connect(format!("bind {local}: {error}")))?;
            socket.connect(target).await
        }
        None => TcpStream::connect(target).await,
    }
    .map_err(|error| ClientError::Connect(error.to_string()))?;
    // Handshake frames are small and each waits for an answer: send them at once.
    stream
        .set_nodelay(true)
        .map_err(|error| ClientError::Connect(error.to_string()))?;
    // Small buffers: tungstenite zeroes its whole read buffer (128 KiB by default) on every read.
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((connection, _)) => Ok(connection),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(ClientError::Refused {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string),
        }),
        Err(error) => Err(ClientError::Connect(error.to_string())),
    }
}

/// What the client saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Every text frame received, parsed.
    pub received: Vec<serde_json::Value>,
    /// The close code received, if any.
    pub close_code: Option<u16>,
}

impl Transcript {
    /// The `type` of every message received.
    pub fn types(&self) -> Vec<String> {
        self.received
            .iter()
            .map(|message| {
                message
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("?")
                    .to_string()
            })
            .collect()
    }

    /// The relationship id a `handshake.complete` received named: the server acknowledged it,
    /// whether or not the close that follows arrived.
    pub fn relationship_id(&self) -> Option<String> {
        self.received
            .iter()
            .find(|message| {
                message.get("type").and_then(|t| t.as_str()) == Some("handshake.complete")
            })
            .and_then(|message| message.get("relationship_id"))
            .and_then(|id| id.as_str())
            .map(str::to_string)
    }

    /// Whether the handshake completed and the socket closed normally.
    pub fn completed(&self) -> bool {
        self.types().last().map(String::as_str) == Some("handshake.complete")
            && self.close_code == Some(neuron_handshake::CloseCode::Normal.code())
    }
}

/// Sends `frames` (text) one by one, then reads until the server closes, answering a challenge
/// with `patient`'s key when one is given.
pub async fn converse(
    connection: &mut Connection,
    frames: Vec<Message>,
    patient: Option<&Patient>,
) -> Transcript {
    let mut transcript = Transcript::default();
    for frame in frames {
        if connection.send(frame).await.is_err() {
            break;
        }
    }
    while let Some(message) = connection.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let value: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                let challenge =
                    value.get("type").and_then(|t| t.as_str()) == Some("handshake.challenge");
                transcript.received.push(value.clone());
                if challenge {
                    if let Some(answer) = patient.and_then(|patient| patient.answer(&value)) {
                        if connection.send(Message::text(answer)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Ok(Message::Close(frame)) => {
                transcript.close_code = Some(
                    frame.map_or(neuron_handshake::CloseCode::NoStatus.code(), |frame| {
                        u16::from(frame.code)
                    }),
                );
                // Keep reading: that sends our close reply and ends once the server closes.
                while let Some(Ok(_)) = connection.next().await {}
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    transcript
}

/// One full handshake for `patient` with `provider_npi`, the consent valid around `now_seconds`.
///
/// # Errors
/// [`ClientError`] when the connection or the upgrade fails.
pub async fn handshake(
    url: &str,
    from: Option<SocketAddr>,
    patient: &Patient,
    provider_npi: &str,
    now_seconds: i64,
) -> Result<Transcript, ClientError> {
    let payload = patient.claims(provider_npi, now_seconds - 60, now_seconds + 3600);
    handshake_with(url, from, patient, patient.auth_frame(&payload)).await
}

/// One full handshake for `patient` opening with an `auth` frame already built and signed.
///
/// # Errors
/// [`ClientError`] when the connection or the upgrade fails.
pub async fn handshake_with(
    url: &str,
    from: Option<SocketAddr>,
    patient: &Patient,
    auth: String,
) -> Result<Transcript, ClientError> {
    let mut connection = connect(url, from).await?;
    Ok(converse(&mut connection, vec![Message::text(auth)], Some(patient)).await)
}

/// The close code a client uses to leave.
pub const NORMAL: CloseCode = CloseCode::Normal;
