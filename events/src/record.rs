//! The record encoding of SPEC §3.1 and the blake3 chain that links records. A record is stored as
//! the exact bytes that were hashed; decoding reads those bytes and never re-serialises them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::event::{DecodeError, Event, EventData};
use crate::time::Timestamp;
use crate::Error;

pub use crate::limits::MAX_RECORD_BYTES;

/// A blake3 hash: a record's identity in the chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev` of the first record: 32 zero bytes.
    pub const GENESIS: Digest = Digest([0; 32]);

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads 64 hex characters.
    ///
    /// # Errors
    /// [`Error::BadDigest`] when the text is not 32 bytes of hex.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        Self::from_hex_bytes(text.as_bytes())
    }

    /// Reads 64 hex characters given as bytes.
    ///
    /// # Errors
    /// [`Error::BadDigest`] when the bytes are not 32 bytes of hex.
    pub fn from_hex_bytes(hex: &[u8]) -> Result<Self, Error> {
        // Verification reads one of these per record: decode through a table rather than
        // branching on each character (random hex digits defeat the branch predictor).
        const INVALID: u8 = 0xff;
        const NIBBLES: [u8; 256] = {
            let mut table = [INVALID; 256];
            let mut index = 0;
            while index < 10 {
                table[b'0' as usize + index] = index as u8;
                index += 1;
            }
            let mut index = 0;
            while index < 6 {
                table[b'a' as usize + index] = 10 + index as u8;
                table[b'A' as usize + index] = 10 + index as u8;
                index += 1;
            }
            table
        };
        let bad = || Error::BadDigest {
            text: String::from_utf8_lossy(hex).chars().take(80).collect(),
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        let mut invalid = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
            invalid |= (high | low) & 0xf0;
            *byte = (high << 4) | (low & 0x0f);
        }
        if invalid != 0 {
            return Err(bad());
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Encodes one record: `{"seq":N,"at":"…","kind":"…","session":"…"?,"data":{…},"prev":"HEX64"}`.
///
/// # Errors
/// [`Error::RecordTooLarge`] past [`MAX_RECORD_BYTES`]; [`Error::Encode`] if the data cannot be
/// written as JSON.
pub fn encode(seq: u64, at: Timestamp, event: &Event, prev: &Digest) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"at\":\"");
    at.write_rfc3339(&mut out);
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(event.data.kind().as_bytes());
    out.push(b'"');
    if let Some(session) = &event.session {
        out.extend_from_slice(b",\"session\":");
        serde_json::to_writer(&mut out, session).map_err(|error| Error::Encode {
            reason: error.to_string(),
        })?;
    }
    out.extend_from_slice(b",\"data\":");
    event
        .data
        .write_data(&mut out)
        .map_err(|error| Error::Encode {
            reason: error.to_string(),
        })?;
    out.extend_from_slice(b",\"prev\":\"");
    let mut hex_prev = [0u8; 64];
    // Writing 32 bytes into 64 hex characters cannot fail: the buffer has exactly that length.
    if hex::encode_to_slice(prev.0, &mut hex_prev).is_err() {
        return Err(Error::Encode {
            reason: "prev hash did not fit its hex buffer".into(),
        });
    }
    out.extend_from_slice(&hex_prev);
    out.extend_from_slice(b"\"}");
    if out.len() > MAX_RECORD_BYTES {
        return Err(Error::RecordTooLarge {
            kind: event.data.kind(),
            bytes: out.len(),
        });
    }
    Ok(out)
}

/// The fields of a record as they stand in its bytes, with the data left unread.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// When it was appended, as written.
    #[serde(borrow)]
    pub at: Cow<'a, str>,
    /// The event kind.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    /// The session, if any.
    #[serde(borrow, default)]
    pub session: Option<Cow<'a, str>>,
    /// The event data, unparsed.
    #[serde(borrow)]
    pub data: &'a RawValue,
    /// The previous record's hash, as written.
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
}

impl<'a> Envelope<'a> {
    /// Reads the envelope of a record.
    ///
    /// # Errors
    /// [`Error::Unparseable`] when the bytes are not a record.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|error| Error::Unparseable {
            reason: error.to_string(),
        })
    }

    /// The record's time, when `bytes` are a record with a valid one.
    pub fn time_of(bytes: &[u8]) -> Option<crate::Timestamp> {
        let envelope = Envelope::parse(bytes).ok()?;
        crate::Timestamp::parse_rfc3339(&envelope.at).ok()
    }

    /// The `prev` field as a digest.
    ///
    /// # Errors
    /// [`Error::BadDigest`] when it is not 64 hex characters.
    pub fn prev_digest(&self) -> Result<Digest, Error> {
        Digest::from_hex(&self.prev)
    }
}

/// A record read back from the log: every field decoded, plus the hash of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// When the record was appended.
    pub at: Timestamp,
    /// The session it belongs to, if any.
    pub session: Option<String>,
    /// What happened.
    pub event: EventData,
    /// The previous record's hash.
    pub prev: Digest,
    /// The hash of this record's bytes.
    pub hash: Digest,
}

impl Record {
    /// Decodes a record's bytes.
    ///
    /// # Errors
    /// [`Error::Unparseable`] when the bytes are not a record of a known kind with valid data.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let envelope = Envelope::parse(bytes)?;
        let unparseable = |reason: String| Error::Unparseable { reason };
        let at = Timestamp::parse_rfc3339(&envelope.at)
            .map_err(|error| unparseable(error.to_string()))?;
        let prev = envelope
            .prev_digest()
            .map_err(|error| unparseable(error.to_string()))?;
        let event =
            EventData::decode(&envelope.kind, envelope.data.get()).map_err(
                |error| match error {
                    DecodeError::UnknownKind => {
                        unparseable(format!("unknown kind {:?}", envelope.kind))
                    }
                    DecodeError::BadData(reason) => {
                        unparseable(format!("bad data for {}: {reason}", envelope.kind))
                    }
                },
            )?;
        Ok(Self {
            seq: envelope.seq,
            at,
            session: envelope.session.map(Cow::into_owned),
            event,
            prev,
            hash: Digest::of(bytes),
        })
    }

    /// The event this record holds, as it was appended.
    pub fn to_event(&self) -> Event {
        Event {
            session: self.session.clone(),
            data: self.event.clone(),
        }
    }
}

/// The envelope of a record read from its bytes, its data checked to be one JSON object but not
/// decoded: what verification needs of every record, and what a reader that skips a record's data
/// checks so as not to pass over a line that is no record at all.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The record's seq.
    pub seq: u64,
    /// Its time.
    pub at: Timestamp,
    /// Its kind (one of [`EventData::KINDS`] when the fast path read it).
    pub kind: Cow<'static, str>,
    /// Its `prev`, when that is 64 hex characters.
    pub prev: Option<Digest>,
    /// Its data, as stored.
    pub data: &'a [u8],
}

/// Reads a record's [`Parts`]: first by a fast path for the layout the writer produces, else by
/// the general parser (which also explains what is wrong).
///
/// # Errors
/// [`Error::Unparseable`] when the bytes are not a record's envelope.
pub fn parts(bytes: &[u8]) -> Result<Parts<'_>, Error> {
    match canonical_parts(bytes) {
        Some(parts) => Ok(parts),
        None => general_parts(bytes),
    }
}

/// [`Parts`] read by the general parser alone (serde, any layout). Public so that a fuzz target can
/// hold [`canonical_parts`] to it.
///
/// # Errors
/// [`Error::Unparseable`] when the bytes are not a record's envelope.
pub fn general_parts(bytes: &[u8]) -> Result<Parts<'_>, Error> {
    let envelope = Envelope::parse(bytes)?;
    let at = Timestamp::parse_rfc3339(&envelope.at).map_err(|error| Error::Unparseable {
        reason: error.to_string(),
    })?;
    let kind = match EventData::KINDS
        .iter()
        .find(|known| **known == envelope.kind)
    {
        Some(known) => Cow::Borrowed(*known),
        None => Cow::Owned(envelope.kind.clone().into_owned()),
    };
    Ok(Parts {
        seq: envelope.seq,
        at,
        kind,
        prev: Digest::from_hex(&envelope.prev).ok(),
        data: envelope.data.get().as_bytes(),
    })
}

/// Checks that `bytes` are a record of a known kind, without decoding its data, and returns its
/// seq: what a reader checks of the records it passes over.
///
/// # Errors
/// [`Error::Unparseable`] saying what is wrong.
pub fn check(bytes: &[u8]) -> Result<u64, Error> {
    let parts = parts(bytes)?;
    if EventData::KINDS.contains(&parts.kind.as_ref()) {
        Ok(parts.seq)
    } else {
        Err(Error::Unparseable {
            reason: format!("unknown kind {:?}", parts.kind),
        })
    }
}

/// Reads a record laid out exactly as the writer lays it out:
/// `{"seq":N,"at":"<24>","kind":"<known>"[,"session":"…"],"data":{…},"prev":"<64 hex>"}`.
/// Anything else returns `None` and goes to the general parser. Inside valid JSON, the byte
/// sequences searched for here cannot occur within a string (a raw `"` there is always escaped),
/// so the positions found are the top-level ones. Whatever it accepts, [`general_parts`] reads the
/// same (a fuzz target holds the two together).
pub fn canonical_parts(bytes: &[u8]) -> Option<Parts<'_>> {
    const PREV: &[u8] = b",\"prev\":\"";
    let rest = bytes.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().position(|byte| !byte.is_ascii_digit())?;
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq = std::str::from_utf8(&rest[..digits])
        .ok()?
        .parse::<u64>()
        .ok()?;
    let rest = rest[digits..].strip_prefix(b",\"at\":\"")?;
    let at = Timestamp::parse_rfc3339_bytes(rest.get(..24)?).ok()?;
    let rest = rest[24..].strip_prefix(b"\",\"kind\":\"")?;
    let kind_end = rest.iter().position(|byte| *byte == b'"')?;
    let kind = *EventData::KINDS
        .iter()
        .find(|known| known.as_bytes() == &rest[..kind_end])?;
    let mut rest = &rest[kind_end + 1..];
    if let Some(after) = rest.strip_prefix(b",\"session\":") {
        // A searcher is built once: building one costs more than a search in a record.
        static DATA: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b",\"data\":"));
        let end = DATA.find(after)?;
        let session = &after[..end];
        // An id written with escapes is left to the general parser, which decodes them (and
        // refuses an escape that is no character, such as a lone surrogate).
        if session.first() != Some(&b'"')
            || session.last() != Some(&b'"')
            || memchr::memchr(b'\\', session).is_some()
        {
            return None;
        }
        serde_json::from_slice::<&RawValue>(session).ok()?;
        rest = &after[end..];
    }
    let rest = rest.strip_prefix(b",\"data\":")?;
    let suffix_start = rest.len().checked_sub(PREV.len() + 66)?;
    let (data, suffix) = rest.split_at(suffix_start);
    let hex = suffix.strip_prefix(PREV)?.strip_suffix(b"\"}")?;
    let prev = Digest::from_hex_bytes(hex).ok()?;
    // A record is UTF-8 text. serde skips the strings of the data it ignores without checking
    // them (the rest of the layout is checked as ASCII above, the session by serde).
    std::str::from_utf8(data).ok()?;
    serde_json::from_slice::<serde::de::IgnoredAny>(data).ok()?;
    // Exactly one object, as serde's raw value would hold it (no white space around it).
    if !data.starts_with(b"{") || !data.ends_with(b"}") {
        return None;
    }
    Some(Parts {
        seq,
        at,
        kind: Cow::Borrowed(kind),
        prev: Some(prev),
        data,
    })
}

/// The raw value of a record's `"session"` field, found by its place in the layout the writer
/// produces (it comes before `"data"`, so the first occurrence is the envelope's), without
/// parsing; `None` without one. What a reader that picks records by session searches for.
pub fn envelope_session(bytes: &[u8]) -> Option<&[u8]> {
    use std::sync::LazyLock;
    const KEY: &[u8] = b"\"session\":\"";
    // Built once: building a searcher costs more than a search in a record.
    static DATA: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"data\":"));
    static SESSION: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let data = DATA.find(bytes)?;
    let start = SESSION.find(&bytes[..data])? + KEY.len();
    let length = memchr::memchr(b'"', &bytes[start..data])?;
    Some(&bytes[start..start + length])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ConnectionAccepted, ServerStopping};

    fn accepted() -> Event {
        Event::in_session(
            "s-\"1\"",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:5000".into(),
                live_sessions: 3,
            }),
        )
    }

    #[test]
    fn encodes_fields_in_spec_order() -> Result<(), Error> {
        let at = Timestamp::from_millis(1_795_000_000_123).ok_or(Error::Encode {
            reason: "time".into(),
        })?;
        let bytes = encode(7, at, &accepted(), &Digest::GENESIS)?;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            text,
            format!(
                r#"{{"seq":7,"at":"2026-11-18T11:06:40.123Z","kind":"connection.accepted","session":"s-\"1\"","data":{{"peer":"127.0.0.1:5000","live_sessions":3}},"prev":"{}"}}"#,
                "0".repeat(64)
            )
        );
        let global = encode(
            8,
            at,
            &Event::global(EventData::ServerStopping(ServerStopping {
                reason: "SIGTERM".into(),
            })),
            &Digest::of(&bytes),
        )?;
        assert!(!String::from_utf8_lossy(&global).contains("session"));
        Ok(())
    }

    #[test]
    fn decodes_what_it_encodes() -> Result<(), Error> {
        let at = Timestamp::from_millis(5).ok_or(Error::Encode {
            reason: "time".into(),
        })?;
        let prev = Digest::of(b"previous");
        let bytes = encode(2, at, &accepted(), &prev)?;
        let record = Record::decode(&bytes)?;
        assert_eq!(
            (record.seq, record.at, record.prev, record.hash),
            (2, at, prev, Digest::of(&bytes))
        );
        assert_eq!(record.to_event(), accepted());
        Ok(())
    }

    #[test]
    fn refuses_unknown_kinds_fields_and_bad_data() {
        let zeros = "0".repeat(64);
        for text in [
            format!(r#"{{"seq":1,"at":"2026-11-18T11:06:40.123Z","kind":"made.up","data":{{}},"prev":"{zeros}"}}"#),
            format!(r#"{{"seq":1,"at":"2026-11-18T11:06:40.123Z","kind":"server.stopping","data":{{}},"prev":"{zeros}"}}"#),
            format!(r#"{{"seq":1,"at":"2026-11-18T11:06:40.123Z","kind":"server.stopping","data":{{"reason":"x"}},"prev":"{zeros}","extra":1}}"#),
            format!(r#"{{"seq":1,"at":"yesterday","kind":"server.stopping","data":{{"reason":"x"}},"prev":"{zeros}"}}"#),
            r#"{"seq":1,"at":"2026-11-18T11:06:40.123Z","kind":"server.stopping","data":{"reason":"x"},"prev":"00"}"#.to_string(),
            "not json".to_string(),
        ] {
            assert!(matches!(Record::decode(text.as_bytes()), Err(Error::Unparseable { .. })), "{text}");
        }
    }

    #[test]
    fn every_kind_is_distinct_and_dotted() {
        let mut kinds = EventData::KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), EventData::KINDS.len());
        assert!(kinds.iter().all(|kind| kind.split('.').count() == 2));
    }

    #[test]
    fn the_envelope_session_is_found_by_its_place_and_not_inside_data() {
        let with = br#"{"seq":3,"at":"2026-11-26T10:00:00.500Z","kind":"connection.accepted","session":"session-1","data":{"peer":"p"},"prev":"00"}"#;
        assert_eq!(envelope_session(with), Some(&b"session-1"[..]));
        let without = br#"{"seq":9,"at":"2026-11-26T10:00:00.500Z","kind":"server.stopping","data":{"reason":"\"session\":\"x\""},"prev":"00"}"#;
        assert_eq!(envelope_session(without), None);
        assert_eq!(envelope_session(b"not a record"), None);
    }
}
