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

/// Notes, checkpoints, verifier keys and receipts (the text a witness, a patient's agent or an
/// attacker hands the Neuron or its checker) are read totally: whatever parses writes back as the
/// same text, and checking it against fixed keys never panics; the tree's verifiers never panic on
/// any sizes, indexes and proofs. The first byte picks what the rest is read as.
pub fn proofs_read_totally(data: &[u8]) {
    use crate::note::{self, Checkpoint, Note, VerifierKey};
    use crate::receipt::{self, Policy, Receipt};
    use crate::tree::{self, Hash};
    let [kind, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let log = VerifierKey {
        name: crate::journal::DEMO_ORIGIN.into(),
        signature_type: note::ED25519,
        key: crate::testing::neuron_key().verifying_key(),
    };
    let witness = crate::testing::witness_vkey();
    match kind % 5 {
        0 => {
            if let Ok(parsed) = Note::parse(&text) {
                assert_eq!(parsed.to_text(), text, "a note reads back as another text");
                let _ = note::verify(&parsed, &[log.clone(), witness.clone()]);
            }
        }
        1 => {
            if let Ok(parsed) = Checkpoint::parse(&text) {
                assert_eq!(
                    parsed.to_text(),
                    text,
                    "a checkpoint reads back as another text"
                );
            }
        }
        2 => {
            if let Ok(parsed) = VerifierKey::parse(&text) {
                assert_eq!(VerifierKey::parse(&parsed.to_text()).ok(), Some(parsed));
            }
        }
        3 => {
            if let Ok(parsed) = Receipt::parse(&text) {
                assert_eq!(
                    parsed.to_text(),
                    text,
                    "a receipt reads back as another text"
                );
                let policy = Policy {
                    log,
                    witnesses: vec![witness],
                    quorum: 1,
                    now: 1_795_687_200,
                };
                let _ = receipt::check(&parsed, &policy);
            }
        }
        _ => {
            // Sizes, an index and hashes from the bytes: verification answers, never panics.
            let number = |at: usize| {
                rest.get(at..at + 8)
                    .and_then(|bytes| bytes.try_into().ok())
                    .map_or(0, u64::from_le_bytes)
            };
            let hashes: Vec<Hash> = rest
                .get(24..)
                .unwrap_or_default()
                .chunks_exact(32)
                .filter_map(|chunk| chunk.try_into().ok().map(Hash))
                .collect();
            let (first, second, third) = (number(0), number(8), number(16));
            let leaf = hashes.first().copied().unwrap_or_default();
            let root = hashes.last().copied().unwrap_or_default();
            let _ = tree::verify_inclusion(first, second, &leaf, &hashes, &root);
            let _ = tree::verify_consistency(first, second, &hashes, &leaf, &root);
            let _ = tree::verify_inclusion(third % 64, (third % 64) + 1, &leaf, &hashes, &root);
        }
    }
}
