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

/// The number printed after `label` in a self-check's output.
fn number_after(out: &str, label: &str) -> u64 {
    let start = out
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
        + label.len();
    out[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {out}"))
}

#[test]
fn self_check_writes_a_log_that_verifies_under_the_neurons_key_and_a_rerun_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = self_check(dir.path());
    assert!(ok, "{out}");
    // 8 sessions of 7 events and a final checkpoint, plus one checkpoint per batch that completed
    // a handshake (how many batches the sessions made depends on timing: 1 to 8).
    assert_eq!(number_after(&out, "appended "), 57, "{out}");
    let first = number_after(&out, "verified ");
    assert!((58..=65).contains(&first), "{out}");
    assert!(out.contains("8 relationships active"), "{out}");
    assert!(out.trim_end().ends_with("log intact"), "{out}");

    let (ok, out) = self_check(dir.path());
    assert!(ok, "{out}");
    let second = number_after(&out, "verified ");
    assert!(
        (first + 58..=first + 65).contains(&second),
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
        (second, Some(second))
    );
    assert_eq!(report.tree.size, second);
    assert_eq!(
        report.tree.stored,
        neuron_events::verify::StoredTree::Checked
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
