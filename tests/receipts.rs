//! Consent receipts end to end: a patient's agent that asks gets, with `handshake.complete`, a
//! `c2sp.org/tlog-proof@v1` proof that its completed handshake is in the log, which `neuron
//! check-receipt` checks offline; an agent that does not ask sees the v1 frame unchanged; and every
//! forgery an attacker could try is refused with its reason.

mod common;

use std::path::Path;

use common::{ada, config, neuron, said, url, NOW, PROVIDER};
use neuron::tools::client::{self, Patient};
use neuron_events::journal::DEMO_ORIGIN;
use neuron_events::note::{self, Note, VerifierKey};
use neuron_events::receipt::Receipt;
use neuron_events::testing::{fixed_clock, neuron_key};
use tokio_tungstenite::tungstenite::Message;

fn log_vkey() -> VerifierKey {
    neuron_key().verifier_key(DEMO_ORIGIN).unwrap()
}

/// One handshake asking for a receipt; the `handshake.complete` frame as received.
async fn handshake_with_receipt(url: &str, patient: &Patient) -> serde_json::Value {
    let payload = patient.claims(PROVIDER, NOW - 60, NOW + 3600);
    let transcript = client::handshake_with(
        url,
        None,
        patient,
        patient.auth_frame_with_receipt(&payload),
    )
    .await
    .unwrap();
    assert!(transcript.completed(), "{transcript:?}");
    transcript.received[1].clone()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn check(dir: &Path, receipt: &str, extra: &[&str]) -> (Option<i32>, String) {
    let path = write(dir, "receipt.tlog-proof", receipt);
    let vkey = log_vkey().to_text();
    let mut args = vec!["check-receipt", &path, "--log-key", &vkey];
    args.extend_from_slice(extra);
    let output = neuron(&args);
    (output.status.code(), said(&output))
}

#[tokio::test]
async fn an_agent_that_asks_gets_a_receipt_anyone_can_check_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(config(dir.path()), fixed_clock(), 21).await;
    let complete = handshake_with_receipt(&url(&server), &ada()).await;
    let text = complete["receipt"].as_str().unwrap().to_string();
    let receipt = Receipt::parse(&text).unwrap();
    let record = neuron_events::Record::decode(receipt.extra.as_deref().unwrap()).unwrap();
    assert_eq!(record.event.kind(), "connection.handshake_completed");
    assert_eq!(record.seq, receipt.index + 1);

    // A second handshake (existing) gets its own receipt, under a larger tree.
    let again = handshake_with_receipt(&url(&server), &ada()).await;
    assert_eq!(again["status"], "existing");
    let later = Receipt::parse(again["receipt"].as_str().unwrap()).unwrap();
    assert!(later.index > receipt.index);
    // The v1 frame is unchanged for an agent that does not ask.
    let plain = client::handshake(&url(&server), None, &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(plain.received[1].get("receipt").is_none(), "{plain:?}");
    server.stop("test over").await.unwrap();

    // Checked offline with the log's key: valid, and said in words.
    let work = tempfile::tempdir().unwrap();
    let (code, out) = check(work.path(), &text, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("VALID")
            && out.contains(&format!(
                "relationship {} with provider {PROVIDER} (new)",
                complete["relationship_id"].as_str().unwrap()
            ))
            && out.contains(&format!("at leaf {}", receipt.index)),
        "{out}"
    );
    // The receipt's tree is the log's: the same root verify rebuilds at that size.
    neuron_events::testing::until_unlocked(&dir.path().join("log"));
    let records = common::records(dir.path());
    let lines: Vec<Vec<u8>> = records.lines().map(|l| l.as_bytes().to_vec()).collect();
    let note = Note::parse(&receipt.checkpoint).unwrap();
    let body = note::Checkpoint::parse(&note.text).unwrap();
    assert_eq!(
        body.root,
        neuron_events::testing::tree_root(&lines[..body.size as usize])
    );
}

#[tokio::test]
async fn a_receipt_made_with_the_fixed_key_and_clock_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(config(dir.path()), fixed_clock(), 22).await;
    let from = Some(std::net::SocketAddr::from(([127, 40, 0, 1], 40_001)));
    let payload = ada().claims(PROVIDER, NOW - 60, NOW + 3600);
    let mut connection = client::connect(&url(&server), from).await.unwrap();
    let transcript = client::converse(
        &mut connection,
        vec![Message::text(ada().auth_frame_with_receipt(&payload))],
        Some(&ada()),
    )
    .await;
    server.stop("test over").await.unwrap();
    let receipt = transcript.received[1]["receipt"]
        .as_str()
        .unwrap()
        .to_string();
    neuron_events::testing::snapshot_settings()
        .bind(|| insta::assert_snapshot!("receipts__first_handshake", receipt));
}

/// A valid receipt from a real server, for the forgery cases to start from.
async fn genuine(dir: &Path) -> (String, String) {
    let server = common::start(config(dir), fixed_clock(), 23).await;
    let first = handshake_with_receipt(&url(&server), &ada()).await;
    let second = handshake_with_receipt(
        &url(&server),
        &Patient::from_seed("patient-agent-bob", [0x22; 32]),
    )
    .await;
    server.stop("test over").await.unwrap();
    (
        first["receipt"].as_str().unwrap().to_string(),
        second["receipt"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn forged_and_malformed_receipts_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (text, other) = genuine(dir.path()).await;
    let work = tempfile::tempdir().unwrap();
    let receipt = Receipt::parse(&text).unwrap();
    let refused = |changed: String, extra: &[&str], reason: &str| {
        let (code, out) = check(work.path(), &changed, extra);
        assert_eq!(code, Some(1), "{reason}: {out}");
        assert!(out.contains(reason), "expected {reason:?}: {out}");
    };

    // The record's bytes changed (another provider's address).
    let mut changed = receipt.clone();
    let bytes = String::from_utf8(changed.extra.clone().unwrap()).unwrap();
    changed.extra = Some(bytes.replace("/ws/provider/", "/ws/evil/").into_bytes());
    refused(
        changed.to_text(),
        &[],
        "the record is not in the tree the checkpoint signs",
    );

    // The index moved.
    let mut moved = receipt.clone();
    moved.index += 1;
    refused(moved.to_text(), &[], "the record is seq");

    // The proof and checkpoint of another tree (the second handshake's) with this record.
    let second = Receipt::parse(&other).unwrap();
    let mut mixed = second.clone();
    mixed.extra = receipt.extra.clone();
    mixed.index = receipt.index;
    refused(mixed.to_text(), &[], "the record is not in the tree");

    // The checkpoint re-signed by another key under the log's name.
    let note = Note::parse(&receipt.checkpoint).unwrap();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[0x55; 32]);
    let mut resigned = receipt.clone();
    resigned.checkpoint = Note {
        text: note.text.clone(),
        signatures: vec![note::sign(DEMO_ORIGIN, &stranger, &note.text)],
    }
    .to_text();
    refused(resigned.to_text(), &[], "not signed by the log's key");

    // A key-ID collision: a line that claims the log's name and key ID, signed by another key.
    let mut collided = receipt.clone();
    let mut line = note::sign(DEMO_ORIGIN, &stranger, &note.text);
    line.id = log_vkey().id();
    collided.checkpoint = Note {
        text: note.text.clone(),
        signatures: vec![line],
    }
    .to_text();
    refused(collided.to_text(), &[], "does not verify");

    // A control character in the note.
    let mut controlled = receipt.clone();
    controlled.checkpoint = controlled.checkpoint.replacen('\n', "\u{1b}\n", 1);
    refused(controlled.to_text(), &[], "control character");

    // Witnesses: a cosignature by a key no one trusts does not count; a trusted witness's in the
    // future is refused; a quorum not met is named.
    let trusted = ed25519_dalek::SigningKey::from_bytes(&[0x66; 32]);
    let trusted_key = VerifierKey::new(
        "witness.example/w1",
        note::COSIGNATURE_V1,
        trusted.verifying_key(),
    )
    .unwrap()
    .to_text();
    let unknown = ed25519_dalek::SigningKey::from_bytes(&[0x77; 32]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut cosigned = receipt.clone();
    cosigned.checkpoint = Note {
        text: note.text.clone(),
        signatures: [
            note.signatures.clone(),
            vec![note::cosign(
                "witness.example/w2",
                &unknown,
                now,
                &note.text,
            )],
        ]
        .concat(),
    }
    .to_text();
    refused(
        cosigned.to_text(),
        &["--witness", &trusted_key, "--quorum", "1"],
        "0 of the trusted witnesses cosigned the checkpoint; 1 are required",
    );
    let mut future = receipt.clone();
    future.checkpoint = Note {
        text: note.text.clone(),
        signatures: [
            note.signatures.clone(),
            vec![note::cosign(
                "witness.example/w1",
                &trusted,
                now + 3600,
                &note.text,
            )],
        ]
        .concat(),
    }
    .to_text();
    refused(
        future.to_text(),
        &["--witness", &trusted_key],
        "in the future",
    );
    let mut witnessed = receipt.clone();
    witnessed.checkpoint = Note {
        text: note.text.clone(),
        signatures: [
            note.signatures.clone(),
            vec![note::cosign(
                "witness.example/w1",
                &trusted,
                now - 5,
                &note.text,
            )],
        ]
        .concat(),
    }
    .to_text();
    let (code, out) = check(
        work.path(),
        &witnessed.to_text(),
        &["--witness", &trusted_key],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("witness.example/w1 cosigned it"), "{out}");

    // Not a receipt at all; no record in it.
    refused(
        "hello\n".into(),
        &[],
        "not a c2sp.org/tlog-proof@v1 receipt",
    );
    let mut bare = receipt.clone();
    bare.extra = None;
    refused(bare.to_text(), &[], "carries no record");
    let mut garbage = receipt;
    garbage.extra = Some(b"not a record".to_vec());
    refused(garbage.to_text(), &[], "not a log record");

    // Unreadable: exit 2.
    let missing = neuron(&[
        "check-receipt",
        work.path().join("absent").to_str().unwrap(),
        "--log-key",
        &log_vkey().to_text(),
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", said(&missing));
    let bad_key = neuron(&[
        "check-receipt",
        &write(work.path(), "r", &text),
        "--log-key",
        "nope",
    ]);
    assert_eq!(bad_key.status.code(), Some(2), "{}", said(&bad_key));
}

#[tokio::test]
async fn proofs_are_served_to_operators_and_the_public_without_revealing_a_record() {
    use common::get;
    use neuron_events::tree::{self, Hash};
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(config(dir.path()), fixed_clock(), 24).await;
    let first = handshake_with_receipt(&url(&server), &ada()).await;
    let receipt = Receipt::parse(first["receipt"].as_str().unwrap()).unwrap();
    let small = Note::parse(&receipt.checkpoint).unwrap();
    let small = note::Checkpoint::parse(&small.text).unwrap();
    handshake_with_receipt(
        &url(&server),
        &Patient::from_seed("patient-agent-bob", [0x22; 32]),
    )
    .await;
    let (public, operator) = (server.local_addr(), server.admin_addr());

    // The latest checkpoint, the same note on both listeners, signed by the log's key.
    let (status, latest) = get(public, "/log/checkpoint", None).await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(
        get(operator, "/v1/audit/checkpoint", None).await,
        (200, latest.clone())
    );
    let latest_note = Note::parse(&latest).unwrap();
    note::verify(&latest_note, &[log_vkey()]).unwrap();
    let large = note::Checkpoint::parse(&latest_note.text).unwrap();
    assert!(large.size > small.size);

    // The log still extends the tree the receipt names: the public consistency proof checks.
    let (status, proof) = get(
        public,
        &format!("/log/consistency?from={}&to={}", small.size, large.size),
        None,
    )
    .await;
    assert_eq!(status, 200, "{proof}");
    let hashes: Vec<Hash> = proof
        .lines()
        .map(|l| Hash::from_base64(l).unwrap())
        .collect();
    tree::verify_consistency(small.size, large.size, &hashes, &small.root, &large.root).unwrap();
    assert_eq!(
        get(
            operator,
            &format!(
                "/v1/audit/consistency?from={}&to={}",
                small.size, large.size
            ),
            None
        )
        .await,
        (200, proof)
    );

    // An operator's inclusion proof of a record: a receipt the CLI accepts, at the latest size and
    // at the receipt's own.
    let seq = receipt.index + 1;
    let (status, at_latest) = get(operator, &format!("/v1/audit/proof/{seq}"), None).await;
    assert_eq!(status, 200, "{at_latest}");
    let work = tempfile::tempdir().unwrap();
    assert_eq!(check(work.path(), &at_latest, &[]).0, Some(0));
    let (status, at_small) = get(
        operator,
        &format!("/v1/audit/proof/{seq}?size={}", small.size),
        None,
    )
    .await;
    assert_eq!(status, 200, "{at_small}");
    assert_eq!(Receipt::parse(&at_small).unwrap(), receipt);

    // Out of range: 400 naming the parameter; a size no checkpoint signs: 404.
    for (path, named) in [
        (format!("/v1/audit/proof/{}", large.size + 5), "seq"),
        (format!("/v1/audit/proof/{seq}?size=100000"), "size"),
        ("/v1/audit/proof/0".to_string(), "seq"),
        ("/v1/audit/consistency?from=0&to=3".to_string(), "from"),
        ("/v1/audit/consistency?from=3&to=100000".to_string(), "to"),
        ("/v1/audit/consistency?from=3".to_string(), "to"),
        ("/v1/audit/consistency?from=5&to=3".to_string(), "from"),
    ] {
        let (status, body) = get(operator, &path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["field"], named, "{path}: {body}");
    }
    // The tree right after the receipt's checkpoint record: signed by no checkpoint.
    let unsigned = small.size + 1;
    let (status, body) = get(
        operator,
        &format!("/v1/audit/proof/{seq}?size={unsigned}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no checkpoint signs the tree"), "{body}");
    for path in [
        "/log/consistency?from=0&to=3",
        "/log/consistency?from=3&to=100000",
        "/log/consistency?to=3",
        "/log/consistency?from=1&to=2&seq=1",
    ] {
        assert_eq!(get(public, path, None).await.0, 400, "{path}");
    }
    // The public listener serves no record: every other path is 404, and its answers hold none.
    for path in [
        "/log/records",
        "/log/proof/1",
        "/log/export",
        "/v1/audit/export",
    ] {
        assert_eq!(get(public, path, None).await.0, 404, "{path}");
    }
    assert!(!latest.contains("patient") && !latest.contains("relationship"));
    server.stop("test over").await.unwrap();
}
