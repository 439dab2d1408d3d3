//! The shape in which snapshots lock a path's records (`docs/reviewing.md`): a reviewer's diff is
//! the change. Every record snapshot stands for exact stored bytes (its records with their `prev`
//! put back chain to the head it names), and a change to one field of one record shows as two
//! lines: that record and the head.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a panic is a failed test

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
            data = EventData::LogCheckpoint(neuron_key().sign_checkpoint(checkpoint.upto, &prev));
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
    let records = rechain(&body("handshake__new_relationship"));
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

    // The whole path: the checkpoint that covers the change shows too, and nothing else.
    let before = review_form(&lines(&records));
    let after = review_form(&lines(&rewritten(&records, consent, raise_iat)));
    let changed = changed_lines(&before, &after);
    assert_eq!(changed.len(), 3, "{changed:#?}");
    assert!(
        changed[1].contains("\"kind\":\"log.checkpoint\""),
        "{}",
        changed[1]
    );
}

#[test]
#[should_panic(expected = "the chain is broken at seq 2")]
fn a_broken_chain_is_refused_when_rendering() {
    // Without its first record, the path's first prev is not the genesis: refused by seq.
    let records = rechain(&body("handshake__new_relationship"));
    review_form(&lines(&records[1..]));
}

/// The heads of the last records of every record snapshot before they took the review form (the
/// hash of each one's last stored line): the conversion changed no byte.
const HEADS_BEFORE_THE_REVIEW_FORM: &[(&str, &str)] = &[
    (
        "admin__provider_added_and_removed",
        "1dc21d9982af6890e02f6bfd46eb60a2a11fe3678733eb0599be0ac99fd306c9",
    ),
    (
        "admin__termination_then_new_relationship",
        "f899ab768cacff0556cb0d9ccff8deefd676ebd02b97e66746d6714816e0daf8",
    ),
    (
        "handshake__auth_timeout",
        "a026f45cafb0757f6f1c5afb7bf4aaa51e705fff2d0d2fe4cc2ae18a0884b7e7",
    ),
    (
        "handshake__early_consent_failure",
        "b0d3dbd60c63a3318093c36e89504bdfba5f02b62e624b180efb183b7a20b90e",
    ),
    (
        "handshake__existing_relationship_and_restart",
        "e862a1b799c09de98b21e17e01526c38a3dc13fc10a471e15d5a7351db8dadf0",
    ),
    (
        "handshake__invalid_messages",
        "538adb815bd3f19c2a760363084d12020c7ed1abf1a51c0b9f0a29bf3d19cef3",
    ),
    (
        "handshake__new_relationship",
        "4b9133cbabe74aecd9a652ffc79fc8001badc0bb9a967ab0c28efcb0a728fdc8",
    ),
    (
        "handshake__oversized_frame",
        "09b867e487131ca7fb94403a09207a0b4afd71bc050aafbcef16dc6fea402350",
    ),
    (
        "log__fixed_story",
        "56d998a26fd0fefed68f405f11f22649bde8a2953f353ce14e5a586f8752239a",
    ),
    (
        "path__auth_again_at_the_challenge_stage",
        "0ade603fe12708978874539a27d0d1bc6e73f82a27eff87d527613c10d803de2",
    ),
    (
        "path__bad_base64",
        "2cfeb35cdb3c0bf82226e12b91b71d864a2ed1b770a928e0639e50ce0ec1a16d",
    ),
    (
        "path__bad_nonce_signature",
        "ccb62e5c5c2c37138b15ac3eb37e92a0ecb52efb9ed0cdb00bbb6770e454e433",
    ),
    (
        "path__challenge_timeout",
        "fd183f0f0d29867a2782eeb41340a79fdb356e1d4ca32e5d586e7c6fc246ce0e",
    ),
    (
        "path__control_character_refused",
        "fd3cfbe3b7d89aff53e5f7695e20ed2752a7af86427148f341f652788b69709b",
    ),
    (
        "path__disconnect_after_the_challenge",
        "6a5d2c683679072b8fb4ef221d4492dfaff5842dc8c08e8b84aab41e106be53f",
    ),
    (
        "path__disconnect_before_auth",
        "af593fd080676ec878e5d02b355db5de03ec60255aebd5bcba489b5edad910fd",
    ),
    (
        "path__expired_token",
        "d41f7f52aaec17bdd2e8b9589e9b4281a39f8d33cc6d0b2b03c04f0ace9f7433",
    ),
    (
        "path__iat_in_the_future",
        "0b7bbe44db7fa804605baa51bda73c5c7197d67bdc18afb3dc2b6cf3fdee5dec",
    ),
    (
        "path__key_not_32_bytes",
        "a2a39a556c89fd0975269e7b87347ee8e0d5cb79f70b93d81dcf3fa798c7af06",
    ),
    (
        "path__patient_id_mismatch",
        "80f1381377cc963fa9ae950414a6e3dda3edc47e35c8b9a889b3eea4e3eaaf7c",
    ),
    (
        "path__provider_npi_check_digit",
        "5908d46260e46ddeb387830a070714d077dbd2885e863ac8e3895ed5b4611cea",
    ),
    (
        "path__provider_removed_mid_handshake",
        "b0c9979049bb65ff688279a7bc34c6e39b9b120b280ab6eabd45ebe12e85505f",
    ),
    (
        "path__relationship_terminated_mid_handshake",
        "310da53eead5ded3217ea83d97b13810c1b6c99ed44b3a5cc4aab887da7e27c6",
    ),
    (
        "path__signed_payload_not_claims",
        "639d379e17d6bfcf8ada529157ffdea394340c5b866a96cd08b191d9abf04e39",
    ),
    (
        "path__unknown_provider",
        "6b56083c1da05a6f68dc9608db5a654fe489927871ea8088ea8faed749a1671c",
    ),
    (
        "queue__clients_leave_the_queue",
        "c873a61f1abe31ef8746a7f7cbcdccff4e4e20bbb5cdf72e080ee3cf58702c9a",
    ),
    (
        "queue__promoted_and_full",
        "2aa8189f5768880772f95a9bc47fae6d60c19045eecc431316cfe2c109f0e06b",
    ),
    (
        "shutdown__live_and_queued",
        "4d118e13f82108853ee6eb5b492abb4ac743b9d3c7a07fb2723680c355e6e4e2",
    ),
];

#[test]
fn the_review_form_kept_every_byte() {
    assert_eq!(record_snapshots().len(), HEADS_BEFORE_THE_REVIEW_FORM.len());
    for (name, head) in HEADS_BEFORE_THE_REVIEW_FORM {
        assert_eq!(review_head(&body(name)).as_deref(), Some(*head), "{name}");
    }
}
