//! Optional fields that the log writes as a fixed word when absent: the code holds an `Option`,
//! and only serde knows the word (`"new"` for a challenge issued with no relationship yet,
//! `"unknown"` for a failure whose token named no provider). Reading the word back gives `None`,
//! so a record decodes and encodes to the same bytes.

use serde::{Deserialize, Deserializer, Serializer};

fn write<S: Serializer>(
    value: &Option<String>,
    word: &str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_deref().unwrap_or(word))
}

fn read<'de, D: Deserializer<'de>>(
    word: &str,
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok((text != word).then_some(text))
}

/// `None` written as `"new"`.
pub(crate) mod new_when_none {
    use serde::{Deserializer, Serializer};

    /// The word written for `None`.
    pub(crate) const WORD: &str = "new";

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        super::write(value, WORD, serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        super::read(WORD, deserializer)
    }
}

/// `None` written as `"unknown"`.
pub(crate) mod unknown_when_none {
    use serde::{Deserializer, Serializer};

    /// The word written for `None`.
    pub(crate) const WORD: &str = "unknown";

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        super::write(value, WORD, serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        super::read(WORD, deserializer)
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{ChallengeIssued, ErrorCode, HandshakeFailed, Stage};

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
}
