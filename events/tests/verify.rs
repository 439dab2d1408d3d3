//! Verification catches every kind of damage and names the right seq: hand-picked cases for each
//! fault, then property tests over random damage to the fixed log, over JSONL and over sled.

use std::io::Cursor;

use neuron_events::export::{export, import, read_jsonl};
use neuron_events::testing::{fixed_log, neuron_key};
use neuron_events::verify::{Anchor, Fault, Problem, SeqRange};
use neuron_events::{
    verify, verify_log, Acknowledged, Digest, LogHead, NeuronKey, Record, Report, SledLog,
    VerifyOptions,
};
use proptest::prelude::*;

fn jsonl(records: &[Vec<u8>]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|record| record.iter().copied().chain([b'\n']))
        .collect()
}

/// Verifies JSONL both ways (streamed in blocks, and line by line as entries) and insists that
/// both give the same report.
fn verify_jsonl(bytes: &[u8], options: &VerifyOptions) -> Report {
    let streamed = neuron_events::verify_jsonl(Cursor::new(bytes), options).unwrap();
    let by_entries = verify(
        read_jsonl(Cursor::new(bytes)),
        &Acknowledged::NotKept,
        options,
    )
    .unwrap();
    assert_eq!(streamed, by_entries);
    streamed
}

fn anchored(records: &[Vec<u8>]) -> VerifyOptions {
    let last = records.last().unwrap();
    VerifyOptions {
        trusted_key: Some(neuron_key().verifying_key()),
        expected_head: Some(LogHead {
            seq: records.len() as u64,
            hash: Digest::of(last),
        }),
        allow_unsigned_tail: false,
    }
}

fn problem(report: &Report) -> (u64, Fault) {
    let Problem { seq, fault, .. } = report
        .problem
        .clone()
        .unwrap_or_else(|| panic!("no problem found: {report:?}"));
    (seq, fault)
}

/// Rewrites a record's text and nothing else (the chain is not repaired).
fn edit(record: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(record.to_vec()).unwrap();
    assert!(text.contains(from), "{text} lacks {from}");
    text.replacen(from, to, 1).into_bytes()
}

#[test]
fn the_fixed_log_verifies_with_its_checkpoints() {
    let records = fixed_log().unwrap();
    let report = verify_jsonl(&jsonl(&records), &anchored(&records));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, records.len() as u64);
    assert_eq!(report.head, Digest::of(records.last().unwrap()));
    let checkpoint = report.last_checkpoint.unwrap();
    assert_eq!(
        (checkpoint.seq, checkpoint.upto),
        (records.len() as u64, records.len() as u64 - 1)
    );
    assert_eq!(checkpoint.signer, neuron_key().public_b64());
}

#[test]
fn an_altered_middle_record_is_named_even_without_an_anchor() {
    let mut records = fixed_log().unwrap();
    records[5] = edit(&records[5], "50003", "50009");
    let report = verify_jsonl(&jsonl(&records), &VerifyOptions::default());
    assert_eq!(problem(&report), (6, Fault::HashMismatch));
    assert_eq!(
        report.problem.unwrap().kind.as_deref(),
        Some("connection.queued")
    );
    assert_eq!(
        report.records, 5,
        "records before the altered one are sound"
    );
}

#[test]
fn an_altered_link_is_a_broken_link_at_that_record() {
    let mut records = fixed_log().unwrap();
    let prev = Record::decode(&records[7]).unwrap().prev.to_hex();
    records[7] = edit(&records[7], &prev, &"f".repeat(64));
    assert_eq!(
        problem(&verify_jsonl(&jsonl(&records), &VerifyOptions::default())),
        (8, Fault::BrokenLink)
    );
}

#[test]
fn numbering_faults_are_told_apart() {
    let records = fixed_log().unwrap();
    let mut missing = records.clone();
    missing.remove(9);
    assert_eq!(
        problem(&verify_jsonl(&jsonl(&missing), &VerifyOptions::default())),
        (10, Fault::SeqGap { found: 11 })
    );

    let mut swapped = records.clone();
    swapped.swap(9, 10);
    assert_eq!(
        problem(&verify_jsonl(&jsonl(&swapped), &VerifyOptions::default())),
        (10, Fault::SeqOutOfOrder { found: 11 })
    );

    let mut duplicated = records.clone();
    duplicated.insert(10, records[9].clone());
    assert_eq!(
        problem(&verify_jsonl(
            &jsonl(&duplicated),
            &VerifyOptions::default()
        )),
        (10, Fault::DuplicateSeq)
    );

    let mut renumbered = records.clone();
    renumbered[12] = edit(&records[12], "\"seq\":13,", "\"seq\":14,");
    assert_eq!(
        problem(&verify_jsonl(
            &jsonl(&renumbered),
            &VerifyOptions::default()
        )),
        (13, Fault::WrongSeq { found: 14 })
    );
}

#[test]
fn a_torn_tail_is_not_tampering_but_a_bad_middle_line_is() {
    let records = fixed_log().unwrap();
    let mut bytes = jsonl(&records);
    bytes.truncate(bytes.len() - 30);
    let report = verify_jsonl(&bytes, &VerifyOptions::default());
    assert_eq!(problem(&report), (records.len() as u64, Fault::TornTail));
    assert_eq!(report.records, records.len() as u64 - 1);

    let mut garbled = records.clone();
    garbled[3] = garbled[3][..40].to_vec();
    assert!(matches!(
        problem(&verify_jsonl(&jsonl(&garbled), &VerifyOptions::default())),
        (4, Fault::Unparseable { .. })
    ));
}

#[test]
fn removed_tail_and_altered_last_record_show_against_an_anchor() {
    let records = fixed_log().unwrap();
    let options = anchored(&records);
    let shortened = &records[..records.len() - 2];
    let report = verify_jsonl(&jsonl(shortened), &options);
    assert_eq!(
        problem(&report),
        (
            shortened.len() as u64 + 1,
            Fault::Absent {
                range: SeqRange {
                    first: shortened.len() as u64 + 1,
                    last: records.len() as u64
                },
                anchor: Anchor::Trusted
            }
        )
    );
    assert!(
        verify_jsonl(&jsonl(shortened), &VerifyOptions::default()).is_intact(),
        "without an anchor a clean cut cannot show"
    );

    let mut last_altered = records.clone();
    let last = last_altered.len() - 1;
    last_altered[last] = edit(&records[last], "T10:", "T11:");
    let (seq, fault) = problem(&verify_jsonl(&jsonl(&last_altered), &options));
    assert_eq!(seq, records.len() as u64);
    assert!(matches!(fault, Fault::HeadMismatch { .. }), "{fault:?}");
}

#[test]
fn forged_checkpoints_and_foreign_signers_are_caught() {
    let records = fixed_log().unwrap();
    // The last checkpoint: a forger who re-signs an earlier one also breaks every later checkpoint.
    let index = records
        .iter()
        .rposition(|r| String::from_utf8_lossy(r).contains("log.checkpoint"))
        .unwrap();
    let seq = index as u64 + 1;

    // A checkpoint re-signed by another key, chained correctly: valid, but not the trusted signer.
    let stranger = NeuronKey::from_seed([9; 32]);
    let forged_data = stranger.sign_checkpoint(
        seq - 1,
        &Digest::of(&records[index - 1]),
        &neuron_events::testing::tree_head(&records[..index]),
    );
    let forged = rechain_from(&records, index, |record| {
        let text = String::from_utf8(record.to_vec()).unwrap();
        let start = text.find("\"data\":").unwrap() + 7;
        let end = text.find(",\"prev\":").unwrap();
        format!(
            "{}{}{}",
            &text[..start],
            serde_json::to_string(&forged_data).unwrap(),
            &text[end..]
        )
        .into_bytes()
    });
    let trusted = VerifyOptions {
        trusted_key: Some(neuron_key().verifying_key()),
        ..VerifyOptions::default()
    };
    let (bad_seq, fault) = problem(&verify_jsonl(&jsonl(&forged), &trusted));
    assert_eq!(bad_seq, seq);
    assert_eq!(
        fault,
        Fault::UntrustedSigner {
            signer: stranger.public_b64()
        }
    );
    assert!(
        verify_jsonl(&jsonl(&forged), &VerifyOptions::default()).is_intact(),
        "without a trusted key any valid signer passes"
    );

    // A signature copied onto another head does not verify.
    let tampered_sig = rechain_from(&records, index, |record| {
        let text = String::from_utf8(record.to_vec()).unwrap();
        let sig_at = text.find("\"sig\":\"").unwrap() + 7;
        let mut bytes = text.into_bytes();
        bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
        bytes
    });
    assert_eq!(
        problem(&verify_jsonl(&jsonl(&tampered_sig), &trusted)),
        (seq, Fault::BadCheckpointSignature)
    );

    // A valid signature over a head that is not the chain's.
    let wrong_head = rechain_from(&records, index, |record| {
        let other = neuron_key().sign_checkpoint(
            seq - 1,
            &Digest::of(b"elsewhere"),
            &neuron_events::testing::tree_head(&records[..index]),
        );
        let text = String::from_utf8(record.to_vec()).unwrap();
        let start = text.find("\"data\":").unwrap() + 7;
        let end = text.find(",\"prev\":").unwrap();
        format!(
            "{}{}{}",
            &text[..start],
            serde_json::to_string(&other).unwrap(),
            &text[end..]
        )
        .into_bytes()
    });
    assert_eq!(
        problem(&verify_jsonl(&jsonl(&wrong_head), &trusted)),
        (seq, Fault::CheckpointHeadMismatch)
    );
}

/// Replaces record `index` by `change(record)` and re-chains every later record, as a forger who
/// knows the format (but not the Neuron's key) would.
fn rechain_from(
    records: &[Vec<u8>],
    index: usize,
    change: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    let mut out = records[..index].to_vec();
    out.push(change(&records[index]));
    for record in &records[index + 1..] {
        let old_prev = Record::decode(record).unwrap().prev.to_hex();
        let new_prev = Digest::of(out.last().unwrap()).to_hex();
        out.push(edit(
            record,
            &format!("\"prev\":\"{old_prev}\""),
            &format!("\"prev\":\"{new_prev}\""),
        ));
    }
    out
}

#[test]
fn sled_logs_are_verified_with_their_keys_and_recorded_head() {
    let records = fixed_log().unwrap();
    let load = || {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SledLog::open(dir.path()).unwrap();
        import(Cursor::new(jsonl(&records)), &mut log).unwrap();
        (dir, log)
    };
    let check = |log: &SledLog| verify_log(log, &VerifyOptions::default()).unwrap();

    let (_dir, log) = load();
    assert!(check(&log).is_intact());

    let (_dir, log) = load();
    log.tamper(4, Some(&records[4])).unwrap();
    assert_eq!(problem(&check(&log)), (4, Fault::KeyMismatch { found: 5 }));

    let (_dir, log) = load();
    log.tamper(records.len() as u64, None).unwrap();
    let n = records.len() as u64;
    assert_eq!(
        problem(&check(&log)),
        (
            n,
            Fault::Absent {
                range: SeqRange { first: n, last: n },
                anchor: Anchor::Acknowledged
            }
        )
    );

    let (_dir, log) = load();
    log.tamper(n, Some(&edit(&records[n as usize - 1], "T10:", "T12:")))
        .unwrap();
    assert!(matches!(problem(&check(&log)), (seq, Fault::HeadMismatch { .. }) if seq == n));
}

/// One kind of damage to a list of records.
#[derive(Clone, Debug)]
enum Damage {
    /// Byte `offset` (modulo the record's length) of record `index` becomes `value` (if different).
    Byte {
        index: usize,
        offset: usize,
        value: u8,
    },
    Delete {
        index: usize,
    },
    /// A copy of record `source` inserted before position `position`.
    Duplicate {
        source: usize,
        position: usize,
    },
    /// Records `index` and `index + 1` trade places.
    Swap {
        index: usize,
    },
    /// Only the first `keep` records remain.
    CutRecords {
        keep: usize,
    },
    /// The file is cut inside record `index`, `offset` bytes into it.
    CutBytes {
        index: usize,
        offset: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(index, offset, value)| {
            Damage::Byte {
                index,
                offset,
                value,
            }
        }),
        any::<usize>().prop_map(|index| Damage::Delete { index }),
        (any::<usize>(), any::<usize>())
            .prop_map(|(source, position)| Damage::Duplicate { source, position }),
        any::<usize>().prop_map(|index| Damage::Swap { index }),
        any::<usize>().prop_map(|keep| Damage::CutRecords { keep }),
        (any::<usize>(), any::<usize>())
            .prop_map(|(index, offset)| Damage::CutBytes { index, offset }),
    ]
}

/// Applies damage to the JSONL form of `records`; returns the damaged bytes and the seq the
/// verifier must name, or None when the damage changed nothing.
fn apply(records: &[Vec<u8>], damage: &Damage) -> Option<(Vec<u8>, u64)> {
    let n = records.len();
    let mut changed = records.to_vec();
    let seq = match *damage {
        Damage::Byte {
            index,
            offset,
            value,
        } => {
            let index = index % n;
            let offset = offset % records[index].len();
            if changed[index][offset] == value {
                return None;
            }
            changed[index][offset] = value;
            index as u64 + 1
        }
        Damage::Delete { index } => {
            let index = index % n;
            changed.remove(index);
            index as u64 + 1
        }
        Damage::Duplicate { source, position } => {
            let (source, position) = (source % n, position % (n + 1));
            changed.insert(position, records[source].clone());
            // Adjacent to the original, the duplicated seq itself is named; elsewhere, the
            // position where numbering breaks.
            if source + 1 == position || source == position {
                source as u64 + 1
            } else {
                position as u64 + 1
            }
        }
        Damage::Swap { index } => {
            let index = index % (n - 1);
            changed.swap(index, index + 1);
            index as u64 + 1
        }
        Damage::CutRecords { keep } => {
            let keep = keep % n;
            changed.truncate(keep);
            keep as u64 + 1
        }
        Damage::CutBytes { index, offset } => {
            let index = index % n;
            let offset = offset % records[index].len();
            let mut bytes = jsonl(&records[..index]);
            bytes.extend_from_slice(&records[index][..offset]);
            // Cut at a line boundary this is a removed tail; inside a line, a torn last record.
            return Some((bytes, index as u64 + 1));
        }
    };
    Some((jsonl(&changed), seq))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Any single damage to a JSONL log is caught, at the right seq, by an investigator who
    /// holds the trusted key and the head from the running server.
    #[test]
    fn any_damage_to_a_jsonl_log_is_caught_at_the_right_seq(damage in damage()) {
        let records = fixed_log().unwrap();
        if let Some((bytes, seq)) = apply(&records, &damage) {
            let report = verify_jsonl(&bytes, &anchored(&records));
            let found = report.problem.clone();
            prop_assert!(found.is_some(), "{damage:?} went unnoticed");
            prop_assert_eq!(found.map(|p| p.seq), Some(seq), "{:?} -> {:?}", damage, report.problem);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// (a) over sled: byte changes, deletions and new records are caught using the head sled
    /// records with every batch, with no outside anchor.
    #[test]
    fn any_damage_to_a_sled_log_is_caught_at_the_right_seq(index in any::<usize>(), offset in any::<usize>(), value in any::<u8>(), delete in any::<bool>()) {
        let records = fixed_log().unwrap();
        let n = records.len();
        let dir = tempfile::tempdir().unwrap();
        let mut log = SledLog::open(dir.path()).unwrap();
        import(Cursor::new(jsonl(&records)), &mut log).unwrap();
        let index = index % n;
        let seq = index as u64 + 1;
        if delete {
            log.tamper(seq, None).unwrap();
        } else {
            let mut record = records[index].clone();
            let offset = offset % record.len();
            if record[offset] == value {
                return Ok(());
            }
            record[offset] = value;
            log.tamper(seq, Some(&record)).unwrap();
        }
        let report = verify_log(&log, &VerifyOptions::default()).unwrap();
        prop_assert_eq!(report.problem.as_ref().map(|p| p.seq), Some(seq), "{:?}", report.problem);
    }

    /// (c) export → import → export keeps every byte, and the import verifies.
    #[test]
    fn export_import_round_trips_byte_for_byte(from in 1u64..10, extra in 0u64..40) {
        let records = fixed_log().unwrap();
        let source_dir = tempfile::tempdir().unwrap();
        let mut source = SledLog::open(source_dir.path()).unwrap();
        import(Cursor::new(jsonl(&records)), &mut source).unwrap();
        let to = from + extra;
        let mut first = Vec::new();
        let written = export(&source, from, to, &mut first).unwrap();
        let expected: Vec<Vec<u8>> = records.iter().skip(from as usize - 1).take((to - from + 1) as usize).cloned().collect();
        prop_assert_eq!(written, expected.len() as u64);
        prop_assert_eq!(&first, &jsonl(&expected));

        let copy_dir = tempfile::tempdir().unwrap();
        let mut copy = SledLog::open(copy_dir.path()).unwrap();
        import(Cursor::new(&first), &mut copy).unwrap();
        let mut second = Vec::new();
        export(&copy, 0, u64::MAX, &mut second).unwrap();
        prop_assert_eq!(&first, &second);
        if from == 1 {
            let report = verify_log(&copy, &VerifyOptions::default()).unwrap();
            prop_assert!(report.is_intact(), "{:?}", report);
        }
    }
}
