//! `neuron restore`: a data directory rebuilt from an export is one `serve` accepts and continues,
//! with the same records byte for byte; an export that does not verify, a non-empty target and a
//! key that did not sign the log are refused, and leave nothing behind.

mod common;

use std::path::Path;

use common::*;
use neuron::tools::client;
use neuron_events::testing::{fixed_clock, neuron_key};
use neuron_events::NeuronKey;

/// A stopped server's data directory with one relationship, and its export (a checkpoint every
/// four records, so that a part of it ends after one).
async fn served_once(dir: &Path) -> Vec<u8> {
    let mut config = config(dir);
    config.audit.checkpoint_every = 4;
    let server = start(config, fixed_clock(), 1).await;
    let done = client::handshake(&url(&server), None, &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(done.completed());
    server.stop("test").await.unwrap();
    exported(dir)
}

#[tokio::test]
async fn a_restored_directory_is_the_same_log_and_the_server_continues_it() {
    let original = tempfile::tempdir().unwrap();
    let export = served_once(original.path()).await;
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("backup.jsonl");
    std::fs::write(&backup, &export).unwrap();
    // The test server signs with the test key; an operator's key lives in the data directory.
    neuron_key().write_new(work.path()).unwrap();
    let key = work.path().join(neuron_events::checkpoint::KEY_FILE);

    let restored = work.path().join("restored");
    let trusted = format!("--trusted-key={}", neuron_key().public_b64());
    let output = neuron(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        &trusted,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(
        said(&output).contains("the Neuron's key was restored"),
        "{}",
        said(&output)
    );
    assert_eq!(
        exported(&restored),
        export,
        "the restored log is the export, byte for byte"
    );

    // The server continues the restored log with the restored key: the patient's relationship
    // was rebuilt from it, so this handshake reuses it.
    let options = neuron::server::Options {
        clock: std::sync::Arc::new(fixed_clock()),
        ids: std::sync::Arc::new(neuron::ids::SeededIds::new(2)),
        key: None,
    };
    let server = neuron::server::Server::start(config(&restored), options)
        .await
        .unwrap();
    let again = client::handshake(&url(&server), None, &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(again.completed(), "{:?}", again.types());
    assert_eq!(again.received.last().unwrap()["status"], "existing");
    server.stop("test").await.unwrap();
    let output = neuron(&["verify", restored.to_str().unwrap(), &trusted]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let continued = exported(&restored);
    assert!(continued.starts_with(&export) && continued.len() > export.len());
}

#[tokio::test]
async fn a_bad_export_a_used_target_and_a_foreign_key_are_refused_leaving_nothing() {
    let original = tempfile::tempdir().unwrap();
    let export = served_once(original.path()).await;
    let work = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let backup = write("backup.jsonl", &export);
    let target = work.path().join("target");
    let restore = |export: &Path, extra: &[&str]| {
        let mut args = vec![
            "restore",
            export.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        neuron(&args)
    };

    // Altered: the chain breaks at the changed record.
    let altered = String::from_utf8(export.clone()).unwrap().replacen(
        "patient-agent-ada",
        "patient-agent-eve",
        1,
    );
    let output = restore(&write("altered.jsonl", altered.as_bytes()), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("the export does not verify"),
        "{}",
        said(&output)
    );
    assert!(!target.exists(), "a refused restore left the target behind");

    // Cut after its last checkpoint: the tail is accepted only when asked.
    let lines: Vec<&[u8]> = export.split(|byte| *byte == b'\n').collect();
    let mut cut = lines[..lines.len() - 2].join(&b'\n');
    cut.push(b'\n');
    let cut = write("cut.jsonl", &cut);
    let trusted = format!("--trusted-key={}", neuron_key().public_b64());
    let output = restore(&cut, &[&trusted]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(said(&output).contains("signed by no trusted checkpoint"));
    assert!(!target.exists());

    // A key that did not sign the log.
    let stranger = tempfile::tempdir().unwrap();
    NeuronKey::from_seed([9; 32])
        .write_new(stranger.path())
        .unwrap();
    let key = stranger.path().join(neuron_events::checkpoint::KEY_FILE);
    let output = restore(&backup, &["--key", key.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(said(&output).contains("did not sign the export's checkpoints"));
    assert!(!target.exists());

    let output = restore(&cut, &[&trusted, "--allow-unsigned-tail"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(said(&output).contains("signed by no trusted checkpoint (accepted"));

    // The target now holds a log: a second restore never writes over it.
    let before = exported(&target);
    let output = restore(&backup, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(said(&output).contains("is not empty"), "{}", said(&output));
    assert_eq!(exported(&target), before);
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".neuron-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");
}
