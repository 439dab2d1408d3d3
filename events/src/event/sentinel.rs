//! Optional fields that the log writes as a fixed word when absent: the code holds an `Option`,
//! and only serde knows the word (`"new"` for a challenge issued with no relationship yet,
//! `"unknown"` for a failure whose token named no provider). Reading the word back gives `None`,
//! so a record decodes and encodes to the same bytes.

use serde::{Deserialize, Deserializer, Serializer};

/// What `connection.challenge_issued` writes for no relationship.
const NEW: &str = "new";
/// What `connection.handshake_failed` writes for no provider.
const UNKNOWN: &str = "unknown";

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
pub(super) fn write_new<S: Serializer>(
    value: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    write(value, NEW, serializer)
}

/// `"new"` read as `None`.
pub(super) fn read_new<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    read(NEW, deserializer)
}

/// `None` written as `"unknown"`.
pub(super) fn write_unknown<S: Serializer>(
    value: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    write(value, UNKNOWN, serializer)
}

/// `"unknown"` read as `None`.
pub(super) fn read_unknown<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    read(UNKNOWN, deserializer)
}
