//! `neuron self-check` on a real data directory: it writes a durable, verifiable log that a second
//! run continues.

use std::process::Command;

use neuron_events::{verify_log, NeuronKey, SledLog, VerifyOptions};

fn self_check(dir: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_neuron"))
        .args(["self-check", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn self_check_writes_a_log_that_verifies_under_the_neurons_key_and_a_rerun_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = self_check(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("verified 57 records"), "{out}");
    assert!(out.contains("8 relationships active"), "{out}");
    assert!(out.trim_end().ends_with("log intact"), "{out}");

    let (ok, out) = self_check(dir.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("verified 114 records"),
        "the second run continues the chain: {out}"
    );

    let (key, created) = NeuronKey::load_or_create(dir.path()).unwrap();
    assert!(!created, "self-check created the Neuron's key");
    let log = SledLog::open(&dir.path().join("log")).unwrap();
    let options = VerifyOptions {
        trusted_key: Some(key.verifying_key()),
        ..VerifyOptions::default()
    };
    let report = verify_log(&log, &options).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        (report.records, report.last_checkpoint.map(|c| c.seq)),
        (114, Some(114))
    );
}

#[test]
fn self_check_on_an_unusable_directory_fails_with_exit_2_and_says_why() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_neuron"))
        .args(["self-check", "--data-dir"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("neuron: self-check: "), "{stderr}");
}
