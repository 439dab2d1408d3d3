//! Consent verification (SPEC §2.3 step 3): the token's Ed25519 signature under the patient's key
//! (strict), its claims, its times, the patient it names, and the provider it names.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use neuron_events::event::{ErrorCode, Stage};
use neuron_events::Timestamp;
use neuron_projections::ProvidersView;

use crate::failure::Failure;
use crate::npi;
use crate::wire::Auth;

/// How far in the future a token's `iat` may lie.
pub const IAT_LEEWAY_SECONDS: i64 = 60;
/// Most `consented_actions` entries.
pub const MAX_CONSENTED_ACTIONS: usize = 256;

/// A verified token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The consenting patient's agent.
    pub patient_agent_id: String,
    /// The provider consented to.
    pub provider_npi: String,
    /// Opaque to the Neuron: stored and passed on exactly as given.
    pub consented_actions: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// An optional token nonce.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// A failure at the consent stage (closed with 4003, SPEC §2.2).
fn refuse(code: ErrorCode, reason: impl Into<String>, provider_npi: Option<&str>) -> Failure {
    Failure::new(Stage::Consent, code, reason).naming(provider_npi)
}

/// A consent that passed every check, with the patient's key, decompressed once for the challenge.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The token's claims.
    pub claims: Claims,
    /// The key that signed it, which must also sign the nonce.
    pub key: VerifyingKey,
}

/// Verifies the consent of an auth message at `now` against the registered `providers`.
///
/// # Errors
/// The [`Failure`] of SPEC §2.2 for the first check that fails.
pub fn verify(auth: &Auth, now: Timestamp, providers: &ProvidersView) -> Result<Verified, Failure> {
    let key = VerifyingKey::from_bytes(&auth.patient_public_key).map_err(|_| {
        refuse(
            ErrorCode::ConsentFailed,
            "patient_public_key is not a valid Ed25519 key",
            None,
        )
    })?;
    key.verify_strict(
        &auth.token_payload,
        &Signature::from_bytes(&auth.token_signature),
    )
    .map_err(|_| {
        refuse(
            ErrorCode::ConsentFailed,
            "consent token signature does not verify under patient_public_key",
            None,
        )
    })?;
    let claims: Claims = serde_json::from_slice(&auth.token_payload).map_err(|_| {
        refuse(
            ErrorCode::InvalidMessage,
            "consent token payload is not valid claims JSON",
            None,
        )
    })?;
    if claims.consented_actions.len() > MAX_CONSENTED_ACTIONS {
        return Err(refuse(
            ErrorCode::InvalidMessage,
            format!("consent token lists more than {MAX_CONSENTED_ACTIONS} consented_actions"),
            None,
        ));
    }
    let provider = Some(claims.provider_npi.as_str());
    let now_seconds = now.seconds();
    if claims.exp <= now_seconds {
        return Err(refuse(
            ErrorCode::ConsentFailed,
            format!("consent token expired at {}", seconds_text(claims.exp)),
            provider,
        ));
    }
    if claims.iat > now_seconds + IAT_LEEWAY_SECONDS {
        return Err(refuse(
            ErrorCode::ConsentFailed,
            format!(
                "consent token issued in the future ({})",
                seconds_text(claims.iat)
            ),
            provider,
        ));
    }
    if claims.patient_agent_id != auth.patient_agent_id {
        return Err(refuse(
            ErrorCode::ConsentFailed,
            "consent token names another patient_agent_id than the message",
            provider,
        ));
    }
    if !npi::is_valid(&claims.provider_npi) {
        return Err(refuse(
            ErrorCode::ProviderNotFound,
            "provider_npi fails the NPI check digit",
            provider,
        ));
    }
    if !providers.is_registered(&claims.provider_npi) {
        return Err(refuse(
            ErrorCode::ProviderNotFound,
            "provider_npi is not a provider of this organization",
            provider,
        ));
    }
    Ok(Verified { claims, key })
}

fn seconds_text(seconds: i64) -> String {
    match Timestamp::from_millis(seconds.saturating_mul(1000)) {
        Some(time) => time.to_string(),
        None => format!("{seconds} s after the epoch"),
    }
}
