//! Parallel decoding gives every record once, in seq order, as a plain sequential read does, from
//! a store spanning many worker ranges and from a JSONL export cut into many blocks.

use neuron_events::export::{decode_jsonl, decode_log, Unpicked};
use neuron_events::testing::fixed_log;
use neuron_events::{Log, MemoryLog, Record};

/// The fixed story repeated (renumbered, unchained: decoding does not check the chain) until the
/// store spans several of decode_log's ranges, with an uneven last one.
fn long_log() -> MemoryLog {
    let story = fixed_log().unwrap();
    let mut records = Vec::new();
    let mut seq = 0u64;
    while seq <= 40_000 {
        for bytes in &story {
            seq += 1;
            let text = String::from_utf8(bytes.clone()).unwrap();
            let rest = &text[text.find(",\"at\"").unwrap()..];
            records.push((seq, format!("{{\"seq\":{seq}{rest}").into_bytes()));
        }
    }
    MemoryLog::from_records(records).unwrap()
}

fn sequential(log: &MemoryLog, wanted: impl Fn(&[u8]) -> bool) -> Vec<Record> {
    let mut records = Vec::new();
    log.scan(1, u64::MAX, &mut |_, bytes| {
        if wanted(bytes) {
            records.push(Record::decode(bytes).unwrap());
        }
    })
    .unwrap();
    records
}

#[test]
fn a_store_decodes_in_order_on_worker_threads() {
    let log = long_log();
    let mut parallel = Vec::new();
    decode_log(&log, |_| true, |record| parallel.push(record.unwrap())).unwrap();
    let expected = sequential(&log, |_| true);
    assert!(expected.len() > 40_000);
    assert_eq!(parallel.len(), expected.len());
    assert!(parallel == expected, "same records, same order");

    let terminations = |bytes: &[u8]| {
        memchr::memmem::find(bytes, b"termination.relationship_terminated").is_some()
    };
    let mut picked = Vec::new();
    decode_log(&log, terminations, |record| {
        picked.push(record.unwrap().seq)
    })
    .unwrap();
    let expected: Vec<u64> = sequential(&log, terminations)
        .iter()
        .map(|r| r.seq)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(picked, expected);

    let mut none = 0;
    decode_log(&MemoryLog::new(), |_| true, |_| none += 1).unwrap();
    assert_eq!(none, 0);
}

#[test]
fn an_export_decodes_in_order_on_worker_threads() {
    let log = long_log();
    let mut jsonl = Vec::new();
    neuron_events::export::export(&log, 1, u64::MAX, &mut jsonl).unwrap();
    let mut parallel = Vec::new();
    decode_jsonl(
        &jsonl[..],
        |_| true,
        Unpicked::Checked,
        |record| parallel.push(record.unwrap()),
    )
    .unwrap();
    assert!(parallel == sequential(&log, |_| true));

    // Picking some: the same records, whether the others are checked or skipped.
    let picked = |bytes: &[u8]| bytes.windows(7).any(|w| w == b"session");
    for unpicked in [Unpicked::Checked, Unpicked::Skipped] {
        let mut some = Vec::new();
        decode_jsonl(&jsonl[..], picked, unpicked, |record| {
            some.push(record.unwrap())
        })
        .unwrap();
        assert!(some == sequential(&log, picked), "{unpicked:?}");
    }
}
