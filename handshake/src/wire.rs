//! The v1 wire protocol (SPEC §2.1): client frames parsed and validated into domain values, and the
//! server's frames. Nothing here touches a socket; the server hands in text and sends out text.

use serde::Serialize;

use neuron_events::b64;
use neuron_events::event::ErrorCode;

/// Field limits of SPEC §2.2.
pub const MAX_PATIENT_AGENT_ID: usize = 256;
/// Longest `patient_endpoint`.
pub const MAX_PATIENT_ENDPOINT: usize = 2048;
/// Largest decoded consent token payload.
pub const MAX_TOKEN_PAYLOAD: usize = 8 * 1024;

/// A validated `handshake.auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// The consent token's payload bytes.
    pub token_payload: Vec<u8>,
    /// The token's Ed25519 signature.
    pub token_signature: [u8; 64],
    /// The patient agent, as claimed.
    pub patient_agent_id: String,
    /// The patient's Ed25519 public key.
    pub patient_public_key: [u8; 32],
    /// Where the patient's agent can be reached.
    pub patient_endpoint: String,
    /// Whether the agent asked for a consent receipt (`"receipt": true`, our extension, SPEC
    /// §2.1): the inclusion proof of its completed handshake, sent with `handshake.complete`.
    pub receipt: bool,
}

/// A validated client frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// `handshake.auth`
    Auth(Auth),
    /// `handshake.challenge_response`
    ChallengeResponse {
        /// The signature over the nonce's 32 bytes.
        signed_nonce: [u8; 64],
    },
}

impl ClientMessage {
    /// The wire type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Auth(_) => "handshake.auth",
            Self::ChallengeResponse { .. } => "handshake.challenge_response",
        }
    }
}

/// Why a frame is not a valid message. The text says what was wrong and never echoes a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(reason: impl Into<String>) -> Invalid {
    Invalid(reason.into())
}

fn string_field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<&'a str, Invalid> {
    match object.get(name) {
        None => Err(invalid(format!("missing field {name}"))),
        Some(serde_json::Value::String(text)) => Ok(text),
        Some(_) => Err(invalid(format!("field {name} must be a string"))),
    }
}

fn base64_field<const N: usize>(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    what: &str,
) -> Result<[u8; N], Invalid> {
    let bytes = b64::decode(string_field(object, name)?)
        .map_err(|_| invalid(format!("field {name} is not valid base64url")))?;
    let length = bytes.len();
    bytes.try_into().map_err(|_| {
        invalid(format!(
            "field {name} must be {what} of {N} bytes, not {length}"
        ))
    })
}

/// A text field of 1 to `limit` bytes with no control character (C0, DEL or C1): such text reaches
/// investigators' terminals, where an escape sequence or a newline could forge what they read.
fn text_field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
    limit: usize,
) -> Result<&'a str, Invalid> {
    let text = string_field(object, name)?;
    if text.is_empty() || text.len() > limit {
        return Err(invalid(format!("field {name} must be 1 to {limit} bytes")));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "field {name} contains a control character"
        )));
    }
    Ok(text)
}

/// Parses one text frame. Unknown extra fields are ignored.
///
/// # Errors
/// [`Invalid`] for anything that is not a well-formed v1 client message within the field limits.
pub fn parse(text: &str) -> Result<ClientMessage, Invalid> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| invalid("frame is not JSON"))?;
    let serde_json::Value::Object(object) = value else {
        return Err(invalid("frame is not a JSON object"));
    };
    match string_field(&object, "type")? {
        "handshake.auth" => {
            let patient_agent_id = text_field(&object, "patient_agent_id", MAX_PATIENT_AGENT_ID)?;
            let patient_endpoint = text_field(&object, "patient_endpoint", MAX_PATIENT_ENDPOINT)?;
            let token_payload = b64::decode(string_field(&object, "consent_token_payload")?)
                .map_err(|_| invalid("field consent_token_payload is not valid base64url"))?;
            if token_payload.len() > MAX_TOKEN_PAYLOAD {
                return Err(invalid(format!(
                    "field consent_token_payload decodes to more than {MAX_TOKEN_PAYLOAD} bytes"
                )));
            }
            Ok(ClientMessage::Auth(Auth {
                token_payload,
                token_signature: base64_field(
                    &object,
                    "consent_token_signature",
                    "an Ed25519 signature",
                )?,
                patient_agent_id: patient_agent_id.to_string(),
                patient_public_key: base64_field(
                    &object,
                    "patient_public_key",
                    "an Ed25519 public key",
                )?,
                patient_endpoint: patient_endpoint.to_string(),
                receipt: match object.get("receipt") {
                    None | Some(serde_json::Value::Bool(false)) => false,
                    Some(serde_json::Value::Bool(true)) => true,
                    Some(_) => return Err(invalid("field receipt must be true or false")),
                },
            }))
        }
        "handshake.challenge_response" => Ok(ClientMessage::ChallengeResponse {
            signed_nonce: base64_field(&object, "signed_nonce", "an Ed25519 signature")?,
        }),
        _ => Err(invalid("unknown message type")),
    }
}

/// A frame the Neuron sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// `handshake.challenge`
    #[serde(rename = "handshake.challenge")]
    Challenge {
        /// 64 lowercase hex characters.
        nonce: String,
        /// The provider named by the token.
        provider_npi: String,
        /// This organization.
        organization_npi: String,
    },
    /// `handshake.complete`
    #[serde(rename = "handshake.complete")]
    Complete {
        /// The relationship.
        relationship_id: String,
        /// `{public_url}/ws/provider/{npi}`
        provider_endpoint: String,
        /// `new` or `existing`.
        status: neuron_events::event::RelationshipStatus,
        /// A `c2sp.org/tlog-proof@v1` text proving the completed handshake's record is in the
        /// log, when the auth frame asked for one; absent otherwise, so v1 agents see the frame
        /// they always saw.
        #[serde(skip_serializing_if = "Option::is_none")]
        receipt: Option<String>,
    },
    /// `handshake.error`
    #[serde(rename = "handshake.error")]
    Error {
        /// The error code.
        code: ErrorCode,
        /// What was wrong.
        message: String,
    },
}

impl ServerMessage {
    /// The frame's JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(
                r#"{"type":"handshake.error","code":"SERVER_ERROR","message":"internal error"}"#,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_json(key: &str, signature: &str) -> String {
        format!(
            r#"{{"type":"handshake.auth","consent_token_payload":"e30","consent_token_signature":"{signature}","patient_agent_id":"p","patient_public_key":"{key}","patient_endpoint":"wss://p","extra":1}}"#
        )
    }

    #[test]
    fn parses_a_well_formed_auth_ignoring_extra_fields() {
        let key = b64::encode([1u8; 32]);
        let signature = b64::encode([2u8; 64]);
        let Ok(ClientMessage::Auth(auth)) = parse(&auth_json(&key, &signature)) else {
            panic!("not parsed");
        };
        assert_eq!(
            (
                auth.token_payload,
                auth.patient_public_key,
                auth.token_signature
            ),
            (b"{}".to_vec(), [1; 32], [2; 64])
        );
    }

    #[test]
    fn every_defect_is_named_without_echoing_values() {
        let key = b64::encode([1u8; 32]);
        let signature = b64::encode([2u8; 64]);
        let cases = [
            ("not json".to_string(), "not JSON"),
            ("[1]".to_string(), "not a JSON object"),
            (
                r#"{"type":"handshake.hello"}"#.to_string(),
                "unknown message type",
            ),
            (
                r#"{"type":"handshake.auth"}"#.to_string(),
                "missing field patient_agent_id",
            ),
            (
                auth_json(&b64::encode([1u8; 31]), &signature),
                "public key of 32 bytes, not 31",
            ),
            (
                auth_json(&key, &b64::encode([2u8; 63])),
                "signature of 64 bytes, not 63",
            ),
            (
                auth_json("!!!", &signature),
                "patient_public_key is not valid base64url",
            ),
            (
                r#"{"type":"handshake.challenge_response","signed_nonce":5}"#.to_string(),
                "signed_nonce must be a string",
            ),
            // An ANSI clear-screen, a newline, DEL and a C1 control: text that would forge lines
            // in an investigator's terminal.
            (
                auth_json(&key, &signature).replace(r#""p""#, r#""p\u001b[2J""#),
                "patient_agent_id contains a control character",
            ),
            (
                auth_json(&key, &signature).replace(r#""wss://p""#, r#""wss://p\nforged""#),
                "patient_endpoint contains a control character",
            ),
            (
                auth_json(&key, &signature).replace(r#""p""#, r#""p\u007f""#),
                "patient_agent_id contains a control character",
            ),
            (
                auth_json(&key, &signature).replace(r#""wss://p""#, r#""wss://p\u0085""#),
                "patient_endpoint contains a control character",
            ),
        ];
        for (text, expected) in cases {
            match parse(&text) {
                Err(Invalid(reason)) => assert!(reason.contains(expected), "{text}: {reason}"),
                Ok(message) => panic!("{text} parsed as {message:?}"),
            }
        }
        let long_id = auth_json(&key, &signature).replace(
            r#""patient_agent_id":"p""#,
            &format!(r#""patient_agent_id":"{}""#, "x".repeat(257)),
        );
        assert!(
            matches!(parse(&long_id), Err(Invalid(reason)) if reason.contains("1 to 256 bytes"))
        );
    }
}
