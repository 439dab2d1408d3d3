//! Who may ask: bearer tokens checked by hash in constant time, and browsers refused (a foreign
//! `Origin`, a `Host` that does not name the listener, a change not declared JSON).

use neuron_events::event::TerminatedBy;
use warp::http::HeaderMap;

use super::errors::{ApiError, Code};
use super::head::Request;
use super::OperatorState;

/// Who made a change, as recorded in its event.
#[derive(Debug)]
pub(super) enum Caller {
    /// No tokens are configured (loopback only).
    Open,
    /// A configured token; the first 16 hex digits of its hash name it.
    Token(String),
}

impl Caller {
    pub(super) fn recorded_as(&self) -> TerminatedBy {
        TerminatedBy::Api {
            token: match self {
                Self::Open => None,
                Self::Token(id) => Some(id.clone()),
            },
        }
    }
}

pub(super) fn authenticate(
    tokens: &[blake3::Hash],
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    if tokens.is_empty() {
        return Ok(Caller::Open);
    }
    let unauthorized = |message: &str| {
        let mut refusal = ApiError::new(Code::Unauthorized, message);
        refusal.header = Some((
            "www-authenticate",
            "Bearer realm=\"neuron-admin\"".to_string(),
        ));
        refusal
    };
    let Some(value) = headers.get("authorization") else {
        return Err(unauthorized("an Authorization: Bearer token is required"));
    };
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
    else {
        return Err(unauthorized(
            "the Authorization header is not a Bearer token",
        ));
    };
    let presented = blake3::hash(token.as_bytes());
    // blake3::Hash compares in constant time; every configured hash is compared.
    let accepted = tokens
        .iter()
        .fold(false, |found, hash| found | (*hash == presented));
    if accepted {
        let id = presented.to_hex();
        Ok(Caller::Token(id.as_str()[..16].to_string()))
    } else {
        Err(ApiError::new(
            Code::Forbidden,
            "the bearer token is not accepted",
        ))
    }
}

/// Refuses what only a browser would send (SPEC §5): a `Host` that does not name this listener (a
/// DNS rebinding page) is 421, an `Origin` not listed in `admin.allowed_origins` (a page of another
/// site) is 403.
pub(super) fn refuse_browsers(state: &OperatorState, request: &Request) -> Result<(), ApiError> {
    let host = request
        .headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !state
        .hosts
        .iter()
        .any(|allowed| host.eq_ignore_ascii_case(allowed))
    {
        return Err(ApiError::new(Code::MisdirectedRequest,
            format!(
                "the Host header does not name this listener ({}, localhost:{}, or admin.allowed_hosts)",
                state.listen,
                state.listen.port()
            ),
        ));
    }
    if let Some(origin) = request.headers.get("origin") {
        let origin = origin.to_str().unwrap_or_default();
        if !state
            .allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
        {
            return Err(ApiError::new(Code::OriginRefused,
                "requests from browser pages are refused unless their origin is in admin.allowed_origins",
            ));
        }
    }
    Ok(())
}

/// A change's body must be declared JSON: a browser's form or `text/plain` post (which needs no
/// preflight) is refused with 415.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if declared.is_some_and(|media| media.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(ApiError::new(
        Code::UnsupportedMediaType,
        "a change's body must be sent as Content-Type: application/json",
    ))
}

/// A fresh bearer token and the hash to configure for it.
///
/// # Errors
/// When the operating system's random source fails.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    let token = format!("neuron_{}", neuron_events::Digest(bytes).to_hex());
    let hash = blake3::hash(token.as_bytes()).to_hex().to_string();
    Ok((token, hash))
}
