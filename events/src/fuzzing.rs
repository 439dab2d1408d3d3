//! What the fuzz targets hold true of every input (feature `test-support`): each function takes
//! arbitrary bytes and panics when the code it exercises disagrees with itself. `fuzz/` runs them
//! under libFuzzer; `tests/fuzz_regressions.rs` runs every input the fuzzers ever found again.

use crate::record::{canonical_parts, general_parts, parts, Record};
use crate::time::Timestamp;

/// The record fast path, the general parser and [`Record::decode`] agree: whatever the fast path
/// reads, the general parser reads the same; whatever decodes has the parts its bytes show.
pub fn record_parsers_agree(data: &[u8]) {
    if let Some(fast) = canonical_parts(data) {
        match general_parts(data) {
            Ok(general) => assert_eq!(fast, general, "the two parsers read different parts"),
            Err(error) => panic!("the fast path read a record the general parser refuses: {error}"),
        }
    }
    if let Ok(record) = Record::decode(data) {
        let parts = parts(data).unwrap_or_else(|error| panic!("decoded but has no parts: {error}"));
        assert_eq!(
            (
                record.seq,
                record.at,
                record.event.kind(),
                Some(record.prev)
            ),
            (parts.seq, parts.at, parts.kind.as_ref(), parts.prev),
            "decode and parts disagree"
        );
        assert!(
            crate::record::check(data).is_ok(),
            "decodes but fails the check"
        );
    }
}

/// The export splitter gives the plain split of its input, however the input is read: the first
/// three bytes choose the read size, the block size and the longest line kept.
pub fn lines_split_as_planned(data: &[u8]) {
    let [read, block, max_line, input @ ..] = data else {
        return;
    };
    let (read, block, max_line) = (
        usize::from(*read % 16) + 1,
        usize::from(*block % 16) + 1,
        usize::from(*max_line % 32),
    );
    let split = crate::jsonl::split_lines(input, read, block, max_line)
        .unwrap_or_else(|error| panic!("reading from memory failed: {error}"));
    assert_eq!(split, crate::jsonl::reference_lines(input, max_line));
}

/// A timestamp that parses writes back in the stored form, which parses to the same instant.
pub fn timestamps_round_trip(data: &[u8]) {
    let Ok(parsed) = Timestamp::parse_rfc3339_bytes(data) else {
        return;
    };
    let mut written = Vec::new();
    parsed.write_rfc3339(&mut written);
    assert_eq!(written.len(), 24, "the stored form is 24 bytes");
    assert_eq!(
        Timestamp::parse_rfc3339_bytes(&written).ok(),
        Some(parsed),
        "{}",
        String::from_utf8_lossy(&written)
    );
    assert_eq!(Timestamp::from_millis(parsed.millis()), Some(parsed));
}

/// base64url decodes what it encodes, and what decodes encodes back to text that decodes the same.
pub fn base64url_round_trips(data: &[u8]) {
    let encoded = crate::b64::encode(data);
    assert_eq!(crate::b64::decode(&encoded).ok().as_deref(), Some(data));
    if let Ok(decoded) = crate::b64::decode(data) {
        assert_eq!(
            crate::b64::decode(crate::b64::encode(&decoded)).ok(),
            Some(decoded)
        );
    }
}
