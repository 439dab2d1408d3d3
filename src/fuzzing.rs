//! What the fuzz targets of the `neuron` crate hold true of every input: each function takes
//! arbitrary bytes and panics when the code it exercises breaks its own rules. `fuzz/` runs them
//! under libFuzzer; `tests/fuzz_regressions.rs` runs every input the fuzzers ever found again.

use crate::wire::{self, ClientMessage};

/// A frame either parses into a message within every field limit of SPEC §2.2, or is refused
/// with a short, printable reason (built from field names and numbers only, so it never echoes
/// what was sent).
pub fn wire_frames_keep_their_limits(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match wire::parse(text) {
        Ok(ClientMessage::Auth(auth)) => {
            for (field, value, limit) in [
                (
                    "patient_agent_id",
                    &auth.patient_agent_id,
                    wire::MAX_PATIENT_AGENT_ID,
                ),
                (
                    "patient_endpoint",
                    &auth.patient_endpoint,
                    wire::MAX_PATIENT_ENDPOINT,
                ),
            ] {
                assert!(
                    !value.is_empty() && value.len() <= limit,
                    "{field} of {} bytes",
                    value.len()
                );
                assert!(
                    !value.chars().any(char::is_control),
                    "{field} holds a control character"
                );
            }
            assert!(auth.token_payload.len() <= wire::MAX_TOKEN_PAYLOAD);
        }
        Ok(ClientMessage::ChallengeResponse { .. }) => {}
        Err(wire::Invalid(reason)) => {
            assert!(reason.len() < 200, "a refusal of {} bytes", reason.len());
            assert!(
                reason.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "{reason:?}"
            );
        }
    }
}
