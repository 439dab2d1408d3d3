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
    let restored_log = exported(&restored);
    assert!(
        restored_log.starts_with(&export),
        "the restored log is the export, byte for byte"
    );
    let appended = std::str::from_utf8(&restored_log[export.len()..]).unwrap();
    assert_eq!(appended.lines().count(), 1, "{appended}");
    assert!(
        appended.contains(r#""kind":"log.restored""#) && !appended.contains("unverified"),
        "then one log.restored record: {appended}"
    );

    // The server continues the restored log with the restored key: the patient's relationship
    // was rebuilt from it, so this handshake reuses it.
    let options = neuron::server::Options {
        clock: std::sync::Arc::new(fixed_clock()),
        ids: std::sync::Arc::new(neuron::ids::SeededIds::new(2)),
        key: None,
        acknowledge_rollback: false,
        start_over: neuron::server::StartOver::Nothing,
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
    assert!(continued.starts_with(&restored_log) && continued.len() > restored_log.len());
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
    let trusted = format!("--trusted-key={}", neuron_key().public_b64());
    let output = restore(&write("altered.jsonl", altered.as_bytes()), &[&trusted]);
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
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("not by the trusted key"),
        "{}",
        said(&output)
    );
    assert!(!target.exists());
    // Two keys that disagree.
    let output = restore(&backup, &["--key", key.to_str().unwrap(), &trusted]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(said(&output).contains("but --trusted-key names"));
    // No key at all: nothing would say who wrote the log.
    let output = restore(&backup, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(said(&output).contains("say which key signed the log"));
    assert!(!target.exists());

    let output = restore(&cut, &[&trusted, "--allow-unsigned-tail"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(
        said(&output).contains("no checkpoint of that key covers them"),
        "{}",
        said(&output)
    );

    // The target now holds a log: a second restore never writes over it.
    let before = exported(&target);
    let output = restore(&backup, &[&trusted]);
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

/// A record chained after the last line of `export`, as a forger who knows the format writes it:
/// the chain verifies, but no checkpoint signed it.
fn forged_after(export: &[u8], data: neuron_events::event::EventData) -> Vec<u8> {
    let text = std::str::from_utf8(export).unwrap();
    let last = text.lines().last().unwrap();
    let record = neuron_events::Record::decode(last.as_bytes()).unwrap();
    let bytes = neuron_events::record::encode(
        record.seq + 1,
        record.at,
        &neuron_events::Event::in_session("session-forged", data),
        &record.hash,
    )
    .unwrap();
    let mut forged = export.to_vec();
    forged.extend_from_slice(&bytes);
    forged.push(b'\n');
    forged
}

fn mallory_relationship() -> neuron_events::event::EventData {
    neuron_events::event::EventData::RelationshipEstablished(
        neuron_events::event::RelationshipEstablished {
            relationship_id: "00000000-0000-4000-8000-00000000f0f0".into(),
            patient_agent_id: "patient-agent-mallory".into(),
            provider_npi: PROVIDER.into(),
            patient_public_key: neuron_events::b64::encode([0x44; 32]),
            patient_endpoint: "wss://mallory.example/agent".into(),
            consented_actions: vec!["read:everything".into()],
        },
    )
}

#[tokio::test]
async fn forged_records_are_not_laundered_by_a_restore() {
    let original = tempfile::tempdir().unwrap();
    let export = served_once(original.path()).await;
    let work = tempfile::tempdir().unwrap();
    neuron_key().write_new(work.path()).unwrap();
    let key = work.path().join(neuron_events::checkpoint::KEY_FILE);
    let key = key.to_str().unwrap();
    let trusted = format!("--trusted-key={}", neuron_key().public_b64());

    // A chain-valid forged record after the export's last checkpoint.
    let forged = work.path().join("forged.jsonl");
    std::fs::write(&forged, forged_after(&export, mallory_relationship())).unwrap();
    let forged_seq = export.split(|b| *b == b'\n').count(); // lines + 1 = the forged record's seq
    let target = work.path().join("target");
    let output = neuron(&[
        "restore",
        forged.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
        "--key",
        key,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "record {forged_seq} signed by no trusted checkpoint"
        )),
        "the uncovered seq is named: {}",
        said(&output)
    );
    assert!(!target.exists());

    // A fully fabricated export, chain-valid, with no checkpoint: refused even with
    // --allow-unsigned-tail (nothing at all vouches for it).
    let fabricated = work.path().join("fabricated.jsonl");
    let genesis = neuron_events::record::encode(
        1,
        neuron_events::Timestamp::saturating_from_millis(NOW * 1000),
        &neuron_events::Event::in_session("session-forged", mallory_relationship()),
        &neuron_events::Digest::GENESIS,
    )
    .unwrap();
    std::fs::write(&fabricated, [genesis, b"\n".to_vec()].concat()).unwrap();
    for extra in [None, Some("--allow-unsigned-tail")] {
        let mut args = vec![
            "restore",
            fabricated.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
            "--key",
            key,
        ];
        args.extend(extra);
        let output = neuron(&args);
        assert_eq!(output.status.code(), Some(1), "{}", said(&output));
        assert!(
            said(&output).contains("record 1 signed by no trusted checkpoint"),
            "{}",
            said(&output)
        );
        assert!(!target.exists());
    }

    // An empty export.
    let empty = work.path().join("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    let output = neuron(&[
        "restore",
        empty.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
        "--key",
        key,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("holds no record"),
        "{}",
        said(&output)
    );
    assert!(!target.exists());

    // Accepted explicitly, the forged tail is restored as unverified, and stays named as such after
    // the real key's checkpoints cover it.
    let output = neuron(&[
        "restore",
        forged.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
        "--key",
        key,
        "--allow-unsigned-tail",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "except record {forged_seq}: no checkpoint of that key covers them"
        )),
        "{}",
        said(&output)
    );
    let server = neuron::server::Server::start(
        config(&target),
        neuron::server::Options {
            clock: std::sync::Arc::new(fixed_clock()),
            ids: std::sync::Arc::new(neuron::ids::SeededIds::new(3)),
            key: None,
            acknowledge_rollback: false,
            start_over: neuron::server::StartOver::Nothing,
        },
    )
    .await
    .unwrap();
    server.stop("test").await.unwrap();
    neuron_events::testing::until_unlocked(&target.join("log"));
    let verified = neuron(&["verify", target.to_str().unwrap(), &trusted]);
    assert_eq!(verified.status.code(), Some(1), "{}", said(&verified));
    let restored_seq = forged_seq + 1;
    assert!(
        said(&verified).contains(&format!(
            "record {forged_seq} restored unverified (log.restored at seq {restored_seq})"
        )),
        "{}",
        said(&verified)
    );
    let accepted = neuron(&[
        "verify",
        target.to_str().unwrap(),
        &trusted,
        "--allow-unsigned-tail",
    ]);
    assert_eq!(accepted.status.code(), Some(0), "{}", said(&accepted));
    assert!(
        said(&accepted).contains(&format!("unverified:      record {forged_seq} restored without a trusted checkpoint (log.restored at seq {restored_seq})")),
        "{}",
        said(&accepted)
    );
    let untrusted = neuron(&["verify", target.to_str().unwrap()]);
    assert_eq!(untrusted.status.code(), Some(0), "{}", said(&untrusted));
    assert!(
        said(&untrusted).contains("restored without a trusted checkpoint"),
        "{}",
        said(&untrusted)
    );
}

#[test]
fn log_restored_says_what_was_restored() {
    // The fixed story, written by a journal with the fixed key and clock: the same bytes on every
    // run, ending with a checkpoint.
    let export: Vec<u8> = neuron_events::testing::fixed_log()
        .unwrap()
        .into_iter()
        .flat_map(|mut record| {
            record.push(b'\n');
            record
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let forged = work.path().join("forged.jsonl");
    std::fs::write(&forged, forged_after(&export, mallory_relationship())).unwrap();
    let target = work.path().join("target");
    let clock = fixed_clock();
    clock.advance(3_600_000);
    let restored = neuron::restore::restore(&neuron::restore::Request {
        export: &forged,
        target: neuron::restore::Target::DataDir(&target),
        key: None,
        trusted_key: Some(neuron_key().verifying_key()),
        allow_unsigned_tail: true,
        clock: &clock,
    })
    .unwrap();
    assert!(restored.removed_staging.is_empty());
    let text = exported(&target);
    let last = std::str::from_utf8(&text).unwrap().lines().last().unwrap();
    neuron_events::testing::snapshot_settings()
        .bind(|| insta::assert_snapshot!("restore__log_restored_record", last));
}

#[test]
fn a_restore_killed_midway_leaves_nothing_behind_for_good() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("data");
    // What a killed restore leaves: its staging folder with a store in it, and no one holding it.
    let abandoned = work.path().join(".neuron-restore-data-abc123");
    std::fs::create_dir_all(abandoned.join("log")).unwrap();
    std::fs::write(abandoned.join("restoring.lock"), b"").unwrap();
    std::fs::write(abandoned.join("log").join("db"), b"half a store").unwrap();
    // A restore of another target's is not this one's to remove.
    let other = work.path().join(".neuron-restore-elsewhere-abc123");
    std::fs::create_dir_all(&other).unwrap();
    // A restore running now holds its lock: left alone.
    let running = work.path().join(".neuron-restore-data-running");
    std::fs::create_dir_all(&running).unwrap();
    let held = std::fs::File::create(running.join("restoring.lock")).unwrap();
    held.lock().unwrap();

    let removed = neuron::restore::remove_abandoned_staging(&target).unwrap();
    assert_eq!(removed, std::slice::from_ref(&abandoned));
    assert!(!abandoned.exists() && other.exists() && running.exists());
    drop(held);
}

#[tokio::test]
async fn a_restore_killed_for_real_is_cleaned_up_by_the_next_one_and_by_serve() {
    // An export large enough that the restore is still writing when it is killed.
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("big.jsonl");
    {
        use neuron_events::event::{EventData, ServerStopping};
        let log = neuron_events::MemoryLog::new();
        let journal = neuron_events::Journal::start(
            Box::new(log.clone()),
            std::sync::Arc::new(neuron_key()),
            std::sync::Arc::new(fixed_clock()),
            neuron_events::JournalOptions::default(),
            Box::new(|_: &[neuron_events::Record], _: &neuron_events::BatchReport| {}),
        )
        .unwrap();
        for _ in 0..40 {
            let events = (0..5000)
                .map(|_| {
                    neuron_events::Event::global(EventData::ServerStopping(ServerStopping {
                        reason: "filler ".repeat(40),
                    }))
                })
                .collect();
            journal.append_all(events).await.unwrap();
        }
        journal.checkpoint().await.unwrap();
        journal.close().await.unwrap();
        let mut bytes = Vec::new();
        for record in log.all_bytes() {
            bytes.extend_from_slice(&record);
            bytes.push(b'\n');
        }
        std::fs::write(&export, bytes).unwrap();
    }
    let target = work.path().join("data");
    let trusted = format!("--trusted-key={}", neuron_key().public_b64());
    let staging_of = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(work.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".neuron-restore-data-")
            })
            .collect()
    };
    let mut killed = false;
    for _attempt in 0..5 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_neuron"))
            .args([
                "restore",
                export.to_str().unwrap(),
                "--data-dir",
                target.to_str().unwrap(),
                &trusted,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once its store is being written.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if staging_of()
                .iter()
                .any(|staging| staging.join("log").join("db").exists())
                || child.try_wait().unwrap().is_some()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        let _ = child.wait();
        if !target.exists() && !staging_of().is_empty() {
            killed = true;
            break;
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    assert!(
        killed,
        "the restore always finished before it could be killed"
    );

    // `serve` on that target names and removes what the killed restore left.
    std::fs::create_dir_all(&target).unwrap();
    let server = start(config(&target), fixed_clock(), 4).await;
    server.stop("test").await.unwrap();
    assert!(staging_of().is_empty(), "{:?}", staging_of());

    // And the next restore does too (a second killed one, then a restore into a new target).
    let abandoned = work.path().join(".neuron-restore-fresh-xyz");
    std::fs::create_dir_all(&abandoned).unwrap();
    let fresh = work.path().join("fresh");
    let output = neuron(&[
        "restore",
        export.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
        &trusted,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "removed {}, left by a restore that was stopped midway",
            abandoned.display()
        )),
        "{}",
        said(&output)
    );
    assert!(!abandoned.exists());
}
