//! The shape in which snapshots lock a path's records (`docs/reviewing.md`): a reviewer's diff is
//! the change. Every record snapshot stands for exact stored bytes (its records with their `prev`
//! put back chain to the head it names), and a change to one field of one record shows as two
//! lines: that record and the head.

use std::path::{Path, PathBuf};

use neuron_events::event::{Event, EventData};
use neuron_events::record::encode;
use neuron_events::testing::{neuron_key, rechain, review_form, review_head, RECORDS_HEADING};
use neuron_events::{Digest, Record};

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots")
}

/// A snapshot file's content: what follows insta's header.
fn body(name: &str) -> String {
    let text = std::fs::read_to_string(snapshots().join(format!("{name}.snap"))).unwrap();
    let mut parts = text.splitn(3, "---\n");
    parts.next();
    parts.next();
    parts.next().unwrap().to_string()
}

/// Every snapshot that locks a path's records.
fn record_snapshots() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(snapshots())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "snap")
        })
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| body(name).lines().any(|line| line == RECORDS_HEADING))
        .collect();
    names.sort();
    names
}

fn lines(records: &[Vec<u8>]) -> String {
    records
        .iter()
        .map(|record| format!("{}\n", String::from_utf8_lossy(record)))
        .collect()
}

#[test]
fn every_record_snapshot_stands_for_exact_bytes() {
    let names = record_snapshots();
    assert!(names.len() >= 28, "only {} record snapshots", names.len());
    for name in names {
        let review = body(&name);
        let records = rechain(&review);
        assert!(!records.is_empty(), "{name}: no records");
        // The records with their prev put back decode, and their last hash is the head named.
        for bytes in &records {
            Record::decode(bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        }
        let head = Digest::of(records.last().unwrap()).to_hex();
        assert_eq!(review_head(&review), Some(head), "{name}: the head");
        // And the whole snapshot, story included, is what those bytes render to.
        assert_eq!(review_form(&lines(&records)), review, "{name}");
    }
}

/// Re-encodes `records[from..]` after a change to `records[from]`'s event, chaining each to the
/// one before and signing any checkpoint again with the test key, as the journal would.
fn rewritten(
    records: &[Vec<u8>],
    from: usize,
    change: impl FnOnce(&mut EventData),
) -> Vec<Vec<u8>> {
    let mut out = records[..from].to_vec();
    let mut change = Some(change);
    for bytes in &records[from..] {
        let record = Record::decode(bytes).unwrap();
        let prev = out.last().map_or(Digest::GENESIS, |last| Digest::of(last));
        let mut data = record.event.clone();
        if let Some(change) = change.take() {
            change(&mut data);
        }
        if let EventData::LogCheckpoint(checkpoint) = &data {
            data = EventData::LogCheckpoint(neuron_key().sign_checkpoint(
                checkpoint.upto,
                &prev,
                &neuron_events::testing::tree_head(&out),
            ));
        }
        let event = Event {
            session: record.session.clone(),
            data,
        };
        out.push(encode(record.seq, record.at, &event, &prev).unwrap());
    }
    out
}

/// The lines of `after` that differ from those of `before` (same line count).
fn changed_lines(before: &str, after: &str) -> Vec<String> {
    let (before, after): (Vec<_>, Vec<_>) = (before.lines().collect(), after.lines().collect());
    assert_eq!(before.len(), after.len());
    before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(_, a)| a.to_string())
        .collect()
}

fn raise_iat(data: &mut EventData) {
    match data {
        EventData::ConsentVerified(consent) => consent.iat += 1,
        other => panic!("not consent.verified: {other:?}"),
    }
}

#[test]
fn one_changed_field_is_two_changed_lines() {
    let records = rechain(&body("server__new_relationship"));
    let consent = records
        .iter()
        .position(|bytes| Record::decode(bytes).unwrap().event.kind() == "consent.verified")
        .unwrap();

    // The path up to its handshake's end: no checkpoint after the changed record.
    let path = &records[..consent + 5];
    assert!(path
        .iter()
        .all(|bytes| Record::decode(bytes).unwrap().event.kind() != "log.checkpoint"));
    let before = review_form(&lines(path));
    let after = review_form(&lines(&rewritten(path, consent, raise_iat)));
    let changed = changed_lines(&before, &after);
    assert_eq!(changed.len(), 2, "{changed:#?}");
    assert!(
        changed[0].contains("\"kind\":\"consent.verified\""),
        "{}",
        changed[0]
    );
    assert!(
        changed[0].contains(&format!("\"iat\":{}", 1_795_687_141)),
        "{}",
        changed[0]
    );
    assert!(changed[1].starts_with("head: "), "{}", changed[1]);

    // The whole path: the checkpoints that cover the change (the one that ends the handshake's
    // batch, the one of the stop) show too, and nothing else.
    let before = review_form(&lines(&records));
    let after = review_form(&lines(&rewritten(&records, consent, raise_iat)));
    let changed = changed_lines(&before, &after);
    let checkpoints_after = records[consent..]
        .iter()
        .filter(|bytes| Record::decode(bytes).unwrap().event.kind() == "log.checkpoint")
        .count();
    assert_eq!(checkpoints_after, 2);
    assert_eq!(changed.len(), 2 + checkpoints_after, "{changed:#?}");
    for line in &changed[1..=checkpoints_after] {
        assert!(line.contains("\"kind\":\"log.checkpoint\""), "{line}");
    }
}

#[test]
#[should_panic(expected = "the chain is broken at seq 2")]
fn a_broken_chain_is_refused_when_rendering() {
    // Without its first record, the path's first prev is not the genesis: refused by seq.
    let records = rechain(&body("server__new_relationship"));
    review_form(&lines(&records[1..]));
}
