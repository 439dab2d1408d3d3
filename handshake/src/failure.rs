//! How a handshake ends when it does not complete: the WebSocket close code, and the failure that
//! carries everything its error frame, its close and its record say.

use neuron_events::event::{ErrorCode, Stage};

/// The WebSocket close codes the Neuron sends (SPEC §2.2; RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the handshake completed.
    Normal,
    /// 1001: the server is stopping.
    GoingAway,
    /// 1005: a close frame without a code (recorded as the client's, never sent).
    NoStatus,
    /// 1006: the connection ended without a close frame (recorded, never sent).
    Abnormal,
    /// 1002: a WebSocket protocol violation (reserved bits set with no extension, an unmasked
    /// client frame, an unknown opcode, a fragmented control frame…).
    ProtocolError,
    /// 1007: a text frame that is not UTF-8.
    InvalidPayload,
    /// 1009: a frame larger than `max_payload_bytes`.
    TooBig,
    /// 1011: the event log could not be written.
    ServerError,
    /// 4001: a stage's timer ran out.
    Timeout,
    /// 4002: a frame that is not a valid message for the stage.
    InvalidMessage,
    /// 4003: the consent or the proof of key possession did not hold.
    Refused,
}

impl CloseCode {
    /// The number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::NoStatus => 1005,
            Self::Abnormal => 1006,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::TooBig => 1009,
            Self::ServerError => 1011,
            Self::Timeout => 4001,
            Self::InvalidMessage => 4002,
            Self::Refused => 4003,
        }
    }

    /// The close that goes with an error code at a stage (SPEC §2.2's table): the one place the
    /// two are tied. A message refused at the consent stage closes with 4003, whatever its code.
    pub const fn for_error(code: ErrorCode, stage: Stage) -> Self {
        match code {
            ErrorCode::AuthTimeout | ErrorCode::ChallengeTimeout => Self::Timeout,
            ErrorCode::InvalidMessage if matches!(stage, Stage::Consent) => Self::Refused,
            ErrorCode::InvalidMessage => Self::InvalidMessage,
            ErrorCode::ConsentFailed | ErrorCode::ProviderNotFound => Self::Refused,
            ErrorCode::ServerError => Self::ServerError,
        }
    }
}

/// Why a handshake was refused: the stage, the code, words for the patient and the log, the
/// provider when the token verified far enough to name one, and the close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where the handshake stood.
    pub stage: Stage,
    /// The error code.
    pub code: ErrorCode,
    /// What was wrong (no secrets).
    pub reason: String,
    /// The token's provider, once its signature and claims held.
    pub provider_npi: Option<String>,
    /// The WebSocket close code.
    pub close: CloseCode,
}

impl Failure {
    /// A failure at `stage` with `code`, closed as SPEC §2.2 says for them.
    pub fn new(stage: Stage, code: ErrorCode, reason: impl Into<String>) -> Self {
        Failure {
            stage,
            code,
            reason: reason.into(),
            provider_npi: None,
            close: CloseCode::for_error(code, stage),
        }
    }

    /// The same, naming the provider of the token (when there is one).
    #[must_use]
    pub fn naming(mut self, provider_npi: Option<&str>) -> Self {
        self.provider_npi = provider_npi.map(str::to_string);
        self
    }

    /// The same, closed with `close` instead (a frame too large: 1009).
    #[must_use]
    pub fn closing(mut self, close: CloseCode) -> Self {
        self.close = close;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_follow_the_table_of_the_spec() {
        let cases = [
            (ErrorCode::AuthTimeout, Stage::Auth, 4001),
            (ErrorCode::ChallengeTimeout, Stage::Challenge, 4001),
            (ErrorCode::InvalidMessage, Stage::Auth, 4002),
            (ErrorCode::InvalidMessage, Stage::Challenge, 4002),
            (ErrorCode::InvalidMessage, Stage::Consent, 4003),
            (ErrorCode::ConsentFailed, Stage::Consent, 4003),
            (ErrorCode::ConsentFailed, Stage::Challenge, 4003),
            (ErrorCode::ProviderNotFound, Stage::Consent, 4003),
            (ErrorCode::ServerError, Stage::Challenge, 1011),
        ];
        for (code, stage, close) in cases {
            assert_eq!(
                CloseCode::for_error(code, stage).code(),
                close,
                "{code:?} at {stage:?}"
            );
        }
    }
}
