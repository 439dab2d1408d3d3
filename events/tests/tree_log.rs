//! The Merkle tree as the log keeps it: the journal stores it with the records and signs its root
//! in every checkpoint's note; verification rebuilds it and holds the store's hashes and every
//! checkpoint to it; a store written before the tree gets it at the next start; and the journal
//! refuses to sign a checkpoint over a tree that no longer has the root it signed before.

use std::io::Cursor;
use std::sync::Arc;

use neuron_events::checkpoint::TreeHead;
use neuron_events::journal::DEMO_ORIGIN;
use neuron_events::note::{self, Note, VerifierKey};
use neuron_events::testing::{fixed_clock, fixed_log, neuron_key, tree_root};
use neuron_events::tree::{self, Hash, NodeReader};
use neuron_events::verify::{Fault, StoredTree};
use neuron_events::{
    verify_log, BatchReport, Digest, Event, EventData, Journal, JournalOptions, Log, NeuronKey,
    Record, SledLog, VerifyOptions,
};

fn jsonl(records: &[Vec<u8>]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|record| record.iter().copied().chain([b'\n']))
        .collect()
}

fn verify_export(records: &[Vec<u8>]) -> neuron_events::Report {
    neuron_events::verify_jsonl(Cursor::new(jsonl(records)), &VerifyOptions::default()).unwrap()
}

/// A record's text with its `data` replaced, then the chain after it re-linked.
fn replace_data(records: &[Vec<u8>], index: usize, data: &str) -> Vec<Vec<u8>> {
    let mut out = records[..index].to_vec();
    let text = String::from_utf8(records[index].clone()).unwrap();
    let start = text.find("\"data\":").unwrap() + 7;
    let end = text.find(",\"prev\":").unwrap();
    out.push(format!("{}{}{}", &text[..start], data, &text[end..]).into_bytes());
    for record in &records[index + 1..] {
        let old = Record::decode(record).unwrap().prev.to_hex();
        let new = Digest::of(out.last().unwrap()).to_hex();
        out.push(
            String::from_utf8(record.clone())
                .unwrap()
                .replacen(&old, &new, 1)
                .into_bytes(),
        );
    }
    out
}

#[test]
fn every_checkpoint_signs_the_tree_of_the_records_before_it_as_a_c2sp_note() {
    let records = fixed_log().unwrap();
    let report = verify_export(&records);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.tree.size, records.len() as u64);
    assert_eq!(report.tree.root, tree_root(&records).to_base64());
    assert_eq!(report.tree.stored, StoredTree::NotKept);
    let key = VerifierKey::new(DEMO_ORIGIN, note::ED25519, neuron_key().verifying_key()).unwrap();
    let mut checked = 0;
    for (index, bytes) in records.iter().enumerate() {
        let record = Record::decode(bytes).unwrap();
        let EventData::LogCheckpoint(checkpoint) = record.event else {
            continue;
        };
        let note = Note::parse(checkpoint.note.as_deref().unwrap()).unwrap();
        note::verify(&note, std::slice::from_ref(&key)).unwrap();
        let body = note::Checkpoint::parse(&note.text).unwrap();
        assert_eq!(body.origin, DEMO_ORIGIN);
        assert_eq!(body.size, index as u64);
        assert_eq!(body.root, tree_root(&records[..index]));
        assert_eq!(
            checkpoint.root.as_deref(),
            Some(body.root.to_base64().as_str())
        );
        checked += 1;
    }
    assert!(checked >= 3, "{checked}");
}

#[test]
fn a_checkpoint_of_another_tree_or_with_a_foreign_note_is_caught_at_its_seq() {
    let records = fixed_log().unwrap();
    let index = records
        .iter()
        .position(|r| String::from_utf8_lossy(r).contains("log.checkpoint"))
        .unwrap();
    let seq = index as u64 + 1;
    let head = Digest::of(&records[index - 1]);

    // Signed by the Neuron's own key, with everything right but the tree's root: a checkpoint of
    // another log.
    let other_tree = TreeHead {
        origin: DEMO_ORIGIN,
        root: Hash([7; 32]),
    };
    let forged = neuron_key().sign_checkpoint(seq - 1, &head, &other_tree);
    let changed = replace_data(&records, index, &serde_json::to_string(&forged).unwrap());
    let report = verify_export(&changed);
    let problem = report.problem.unwrap();
    assert_eq!(problem.seq, seq);
    assert!(
        matches!(&problem.fault, Fault::CheckpointTreeMismatch { signed, rebuilt }
            if *signed == Hash([7; 32]).to_base64() && *rebuilt == tree_root(&records[..index]).to_base64()),
        "{problem:?}"
    );

    // The chain signature by the Neuron's key, the note by another key.
    let right = TreeHead {
        origin: DEMO_ORIGIN,
        root: tree_root(&records[..index]),
    };
    let mut mixed = neuron_key().sign_checkpoint(seq - 1, &head, &right);
    mixed.note = NeuronKey::from_seed([9; 32])
        .sign_checkpoint(seq - 1, &head, &right)
        .note;
    let changed = replace_data(&records, index, &serde_json::to_string(&mixed).unwrap());
    let problem = verify_export(&changed).problem.unwrap();
    assert_eq!(problem.seq, seq);
    assert!(
        matches!(&problem.fault, Fault::BadCheckpointNote { reason } if reason.contains("not signed by the checkpoint's key")),
        "{problem:?}"
    );

    // A note under another origin than the log's server.started names.
    let elsewhere = TreeHead {
        origin: "elsewhere.example/log",
        root: tree_root(&records[..index]),
    };
    let moved = neuron_key().sign_checkpoint(seq - 1, &head, &elsewhere);
    let changed = replace_data(&records, index, &serde_json::to_string(&moved).unwrap());
    let problem = verify_export(&changed).problem.unwrap();
    assert!(
        matches!(&problem.fault, Fault::BadCheckpointNote { reason } if reason.contains("elsewhere.example/log")),
        "{problem:?}"
    );

    // A size without a note, or a note whose text is not a checkpoint.
    let mut bare = neuron_key().sign_checkpoint(seq - 1, &head, &right);
    bare.note = None;
    let changed = replace_data(&records, index, &serde_json::to_string(&bare).unwrap());
    assert!(matches!(
        verify_export(&changed).problem.unwrap().fault,
        Fault::BadCheckpointNote { .. }
    ));
}

/// A sled log written by a journal with the fixed key and clock: the fixed story.
fn written_store(dir: &std::path::Path) -> usize {
    let records = fixed_log().unwrap();
    let mut log = SledLog::open(dir).unwrap();
    neuron_events::export::import(Cursor::new(jsonl(&records)), &mut log).unwrap();
    log.close().unwrap();
    records.len()
}

#[test]
fn a_store_is_checked_hash_for_hash_against_the_tree_its_records_give() {
    let dir = tempfile::tempdir().unwrap();
    let count = written_store(dir.path()) as u64;
    let log = SledLog::open(dir.path()).unwrap();
    let report = verify_log(&log, &VerifyOptions::default()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.tree.stored, StoredTree::Checked);
    assert_eq!(report.tree.size, count);

    // Proofs from the stored hashes verify against the rebuilt root, for any record.
    let root = Hash::from_base64(&report.tree.root).unwrap();
    let nodes = neuron_events::store::LogNodes(&log);
    for index in [0, 5, count / 2, count - 1] {
        let proof = tree::prove_inclusion(index, count, &nodes).unwrap();
        let bytes = log.read(index + 1, index + 1).next().unwrap().unwrap().1;
        tree::verify_inclusion(index, count, &tree::leaf_hash(&bytes), &proof, &root).unwrap();
    }
    assert_eq!(tree::tree_hash(count, &nodes).unwrap(), root);

    // One stored hash altered: named at its record.
    log.tamper_tree(6, Some(&[1u8; 64])).unwrap();
    let problem = verify_log(&log, &VerifyOptions::default())
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((problem.seq, problem.fault), (6, Fault::StoredTreeMismatch));

    // One record's hashes removed, the others kept: an incomplete tree.
    log.tamper_tree(6, None).unwrap();
    let problem = verify_log(&log, &VerifyOptions::default())
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(problem.seq, 6);
    assert!(
        matches!(problem.fault, Fault::TreeIncomplete { .. }),
        "{problem:?}"
    );
    assert!(nodes
        .read_nodes(&[tree::Node { level: 0, index: 5 }])
        .is_err());
}

/// A journal restarted on `log`, a day after the fixed clock wrote it.
fn journal_on(log: SledLog) -> Result<Journal, neuron_events::Error> {
    Journal::start(
        Box::new(log),
        Arc::new(neuron_key()),
        Arc::new(neuron_events::testing::restarted_clock()),
        JournalOptions::default(),
        Box::new(|_: &[Record], _: &BatchReport| {}),
    )
}

#[test]
fn a_store_written_before_the_tree_gets_it_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let count = written_store(dir.path()) as u64;
    {
        let log = SledLog::open(dir.path()).unwrap();
        for seq in 1..=count {
            log.tamper_tree(seq, None).unwrap();
        }
        let report = verify_log(&log, &VerifyOptions::default()).unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.tree.stored, StoredTree::NotStored);
        assert_eq!(log.tree_size().unwrap(), 0);
    }
    neuron_events::testing::until_unlocked(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let journal = journal_on(SledLog::open(dir.path()).unwrap()).unwrap();
        let latest = journal.status().checkpoint.unwrap();
        assert_eq!(latest.seq, count);
        journal
            .append(Event::global(EventData::ServerStopping(
                neuron_events::event::ServerStopping {
                    reason: "test".into(),
                },
            )))
            .await
            .unwrap();
        journal.close().await.unwrap();
    });
    neuron_events::testing::until_unlocked(dir.path());
    let log = SledLog::open(dir.path()).unwrap();
    let report = verify_log(&log, &VerifyOptions::default()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.tree.stored, StoredTree::Checked);
    assert_eq!(report.tree.size, count + 1);
}

#[test]
fn the_journal_refuses_to_sign_over_a_tree_that_lost_the_root_it_signed() {
    let dir = tempfile::tempdir().unwrap();
    let count = written_store(dir.path()) as u64;
    {
        // The root of the largest perfect subtree of the last checkpoint's tree (size count - 1),
        // stored with record 2^level, replaced: that tree's root, as the store gives it, changes.
        let level = 63 - (count - 1).leading_zeros();
        let log = SledLog::open(dir.path()).unwrap();
        log.tamper_tree(1 << level, Some(&vec![3u8; 32 * (level as usize + 1)]))
            .unwrap();
    }
    neuron_events::testing::until_unlocked(dir.path());
    let refused = journal_on(SledLog::open(dir.path()).unwrap())
        .err()
        .unwrap();
    assert!(
        refused
            .to_string()
            .contains("no checkpoint consistent with both can be signed"),
        "{refused}"
    );

    // And a log whose checkpoints name another origin than the one configured.
    let dir = tempfile::tempdir().unwrap();
    written_store(dir.path());
    let refused = Journal::start(
        Box::new(SledLog::open(dir.path()).unwrap()),
        Arc::new(neuron_key()),
        Arc::new(fixed_clock()),
        JournalOptions {
            origin: "another.example/log".into(),
            ..JournalOptions::default()
        },
        Box::new(|_: &[Record], _: &BatchReport| {}),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&refused, neuron_events::Error::OriginChanged { log, .. } if log == DEMO_ORIGIN),
        "{refused}"
    );
}

#[test]
fn the_stored_tree_reads_back_whatever_the_batches_and_restarts() {
    // Batches of every size against the store's blocks of sixteen: single records, runs ending
    // mid-block, runs spanning several blocks, and reopenings between them (no cached block).
    let dir = tempfile::tempdir().unwrap();
    let mut frontier = tree::Frontier::default();
    let mut leaves = Vec::new();
    let mut seq = 0u64;
    for (round, sizes) in [&[1usize, 1, 3, 16, 17][..], &[5, 40, 1], &[2, 33, 1, 1]]
        .iter()
        .enumerate()
    {
        let mut log = SledLog::open(dir.path()).unwrap();
        for &size in *sizes {
            let batch: Vec<_> = (0..size)
                .map(|_| {
                    seq += 1;
                    let bytes = format!("record {seq} of round {round}").into_bytes();
                    let leaf = tree::leaf_hash(&bytes);
                    leaves.push(leaf);
                    neuron_events::store::Appended {
                        seq,
                        tree: frontier.append(leaf),
                        bytes,
                    }
                })
                .collect();
            log.append(&batch).unwrap();
        }
        log.close().unwrap();
        drop(log);
        neuron_events::testing::until_unlocked(dir.path());
    }
    let log = SledLog::open(dir.path()).unwrap();
    assert_eq!(log.tree_size().unwrap(), seq);
    let nodes = neuron_events::store::LogNodes(&log);
    for (index, leaf) in leaves.iter().enumerate() {
        let read = nodes
            .read_nodes(&[tree::Node {
                level: 0,
                index: index as u64,
            }])
            .unwrap();
        assert_eq!(read, vec![*leaf], "leaf {index}");
    }
    assert_eq!(tree::tree_hash(seq, &nodes).unwrap(), frontier.root());
    let mut scanned = Vec::new();
    log.scan_tree(3, seq - 2, &mut |at, hashes| {
        scanned.push((at, hashes.len() / 32))
    })
    .unwrap();
    let expected: Vec<_> = (3..=seq - 2)
        .map(|at| (at, at.trailing_zeros() as usize + 1))
        .collect();
    assert_eq!(scanned, expected);
}
