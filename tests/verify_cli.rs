//! `neuron verify` and `neuron export` on a real data directory written by `neuron self-check`:
//! exit 0 when intact, 1 when not (naming the seq), 2 when the path holds no readable log.

mod common;

use common::{exported, neuron, said};

use std::process::Command;

use neuron_events::NeuronKey;

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        neuron(&["self-check", "--data-dir", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    dir
}

#[test]
fn an_intact_data_directory_and_its_export_verify_under_the_neurons_key() {
    let dir = data_dir();
    let key = NeuronKey::load_or_create(dir.path())
        .unwrap()
        .0
        .public_b64();
    let output = neuron(&[
        "verify",
        dir.path().to_str().unwrap(),
        "--trusted-key",
        &key,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let jsonl = dir.path().join("export.jsonl");
    std::fs::write(&jsonl, exported(dir.path())).unwrap();
    let records = std::fs::read_to_string(&jsonl).unwrap().lines().count();
    assert!(records > 57, "{records}");
    let out = said(&output);
    assert!(
        out.contains(&format!("records checked: {records}"))
            && out.contains(&format!("merkle tree:     {records} leaves"))
            && out.contains("(the store's tree hashes checked)")
            && out.contains("result:          INTACT")
            && out.contains("(the trusted key)"),
        "{out}"
    );

    let output = neuron(&["verify", jsonl.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (json["intact"].as_bool(), json["report"]["records"].as_u64()),
        (Some(true), Some(records as u64))
    );
    assert_eq!(json["report"]["tree"]["stored"], "not_kept");

    let partial = neuron(&[
        "export",
        jsonl.to_str().unwrap(),
        "--from-seq",
        "10",
        "--to-seq",
        "12",
    ]);
    assert_eq!(
        String::from_utf8(partial.stdout).unwrap().lines().count(),
        3
    );
}

#[test]
fn tampering_a_foreign_signer_and_a_torn_tail_exit_1_naming_the_seq() {
    let dir = data_dir();
    let bytes = exported(dir.path());
    let lines: Vec<&str> = std::str::from_utf8(&bytes).unwrap().lines().collect();
    let target = lines
        .iter()
        .position(|line| line.contains("consent.verified"))
        .unwrap();
    let mut altered: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
    altered[target] = altered[target].replacen("\"exp\":0", "\"exp\":9", 1);
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, altered.join("\n") + "\n").unwrap();
    let output = neuron(&["verify", tampered.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "NOT INTACT at seq {} (consent.verified)",
            target + 1
        )),
        "{}",
        said(&output)
    );

    let stranger = NeuronKey::from_seed([3; 32]).public_b64();
    let output = neuron(&[
        "verify",
        dir.path().to_str().unwrap(),
        "--trusted-key",
        &stranger,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        said(&output).contains("not by the trusted key"),
        "{}",
        said(&output)
    );

    let torn = dir.path().join("torn.jsonl");
    std::fs::write(&torn, &bytes[..bytes.len() - 20]).unwrap();
    let output = neuron(&["verify", torn.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        said(&output).contains(&format!(
            "NOT INTACT at seq {}",
            bytes.split(|b| *b == b'\n').count() - 1
        )) && said(&output).contains("torn"),
        "{}",
        said(&output)
    );
}

#[test]
fn a_path_without_a_log_exits_2() {
    let empty = tempfile::tempdir().unwrap();
    for path in [empty.path().to_str().unwrap(), "/nonexistent/neuron/log"] {
        let output = neuron(&["verify", path]);
        assert_eq!(output.status.code(), Some(2), "{path}: {}", said(&output));
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("neuron: "));
    }
    let output = neuron(&[
        "verify",
        empty.path().to_str().unwrap(),
        "--trusted-key",
        "not-a-key",
    ]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn every_tamper_class_exits_1_with_the_right_seq() {
    let dir = data_dir();
    let bytes = exported(dir.path());
    let lines: Vec<String> = std::str::from_utf8(&bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let write = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let mut deleted = lines.clone();
    deleted.remove(19);
    let mut inserted = lines.clone();
    inserted.insert(30, lines[9].clone());
    let mut reordered = lines.clone();
    reordered.swap(40, 41);
    let mut flipped = lines.clone();
    flipped[4] = flipped[4].replacen("127.0.0.1", "127.0.0.2", 1);
    let cases: [(&str, Vec<String>, u64); 4] = [
        ("deleted", deleted, 20),
        ("inserted", inserted, 31),
        ("reordered", reordered, 41),
        ("flipped", flipped, 5),
    ];
    for (name, damaged, seq) in cases {
        let path = write(&format!("{name}.jsonl"), &damaged);
        let output = neuron(&["verify", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", said(&output));
        assert!(
            said(&output).contains(&format!("NOT INTACT at seq {seq}")),
            "{name}: {}",
            said(&output)
        );
    }
    // A removed tail shows against the head the investigator trusts.
    let last = lines.len();
    let head = neuron_events::Digest::of(lines[last - 1].as_bytes()).to_hex();
    let shortened = write("shortened.jsonl", &lines[..last - 3]);
    let output = neuron(&[
        "verify",
        shortened.to_str().unwrap(),
        "--expect-head",
        &format!("{last}:{head}"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("its tail was removed"),
        "{}",
        said(&output)
    );
}

#[test]
fn a_forged_checkpoint_exits_1_at_its_seq() {
    let dir = data_dir();
    let bytes = exported(dir.path());
    let mut lines: Vec<String> = std::str::from_utf8(&bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last = lines.len() - 1;
    assert!(lines[last].contains("\"kind\":\"log.checkpoint\""));
    // Re-sign the final checkpoint with another key: a valid signature, but not the Neuron's.
    let record = neuron_events::Record::decode(lines[last].as_bytes()).unwrap();
    let neuron_events::EventData::LogCheckpoint(original) = record.event else {
        panic!("not a checkpoint")
    };
    let head = neuron_events::Digest::from_hex(&original.head).unwrap();
    let tree = neuron_events::checkpoint::TreeHead {
        origin: neuron_events::journal::DEMO_ORIGIN,
        root: neuron_events::tree::Hash::from_base64(original.root.as_deref().unwrap()).unwrap(),
    };
    let forged = NeuronKey::from_seed([5; 32]).sign_checkpoint(original.upto, &head, &tree);
    lines[last] = lines[last]
        .replace(&original.sig, &forged.sig)
        .replace(&original.key, &forged.key);
    let path = dir.path().join("forged.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let key = NeuronKey::load_or_create(dir.path())
        .unwrap()
        .0
        .public_b64();
    let output = neuron(&["verify", path.to_str().unwrap(), "--trusted-key", &key]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains(&format!("NOT INTACT at seq {} (log.checkpoint)", last + 1)),
        "{}",
        said(&output)
    );
    // Only the signature changed (not re-signed): the signature no longer verifies.
    lines[last] = lines[last].replace(&forged.key, &original.key);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = neuron(&["verify", path.to_str().unwrap()]);
    assert!(
        said(&output).contains("checkpoint signature does not verify"),
        "{}",
        said(&output)
    );
}

#[test]
fn exporting_a_damaged_export_stops_at_the_first_line_that_is_no_record() {
    let dir = data_dir();
    let bytes = exported(dir.path());
    assert_eq!(
        exported(&write_to(&dir, "copy.jsonl", &bytes)),
        bytes,
        "an intact export is copied byte for byte"
    );

    let mut garbled = bytes.clone();
    let second_line = garbled.iter().position(|byte| *byte == b'\n').unwrap() + 1;
    garbled.insert(second_line, b'#');
    let mut torn = bytes.clone();
    torn.truncate(bytes.len() - 20);
    let last_line = bytes.iter().filter(|byte| **byte == b'\n').count();
    for (name, damaged, line) in [("garbled", garbled, 2), ("torn", torn, last_line)] {
        let path = write_to(&dir, &format!("{name}.jsonl"), &damaged);
        for args in [
            &["export"][..],
            &["replay"],
            &["timeline", "--provider", "1234567893"],
        ] {
            let mut args = args.to_vec();
            args.insert(1, path.to_str().unwrap());
            let output = neuron(&args);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{name} {args:?}: {}",
                said(&output)
            );
            assert!(
                String::from_utf8_lossy(&output.stderr)
                    .contains(&format!("line {line} is not a record")),
                "{name} {args:?}: {}",
                said(&output)
            );
        }
    }
}

fn write_to(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The self-check log's lines, and the line of its final checkpoint.
fn export_lines(dir: &tempfile::TempDir) -> Vec<String> {
    String::from_utf8(exported(dir.path()))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A record appended after the last one, chained correctly: what a forger who knows the format
/// but not the Neuron's key can add.
fn forged_after(lines: &[String]) -> String {
    let last = neuron_events::Record::decode(lines.last().unwrap().as_bytes()).unwrap();
    let event = neuron_events::Event::global(neuron_events::EventData::ServerStopping(
        neuron_events::event::ServerStopping {
            reason: "forged".into(),
        },
    ));
    let bytes = neuron_events::record::encode(last.seq + 1, last.at, &event, &last.hash).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_trusted_key_covers_every_record_or_names_the_uncovered_ones() {
    let dir = data_dir();
    let key = NeuronKey::load_or_create(dir.path())
        .unwrap()
        .0
        .public_b64();
    let trusted = format!("--trusted-key={key}");
    let mut lines = export_lines(&dir);
    let count = lines.len();
    lines.push(forged_after(&lines));
    let forged = write_to(
        &dir,
        "forged-tail.jsonl",
        (lines.join("\n") + "\n").as_bytes(),
    );
    let forged = forged.to_str().unwrap();

    let output = neuron(&["verify", forged]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the chain alone holds: {}",
        said(&output)
    );
    let output = neuron(&["verify", forged, &trusted]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "NOT INTACT at seq {}: record {} signed by no trusted checkpoint",
            count + 1,
            count + 1
        )),
        "{}",
        said(&output)
    );
    let output = neuron(&["verify", forged, &trusted, "--allow-unsigned-tail"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "unsigned tail:   record {} signed by no trusted checkpoint (accepted: --allow-unsigned-tail)",
            count + 1
        )),
        "{}",
        said(&output)
    );
    let output = neuron(&["verify", forged, "--allow-unsigned-tail"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "the flag needs a trusted key"
    );

    // A log with no checkpoint at all is signed by nobody, whatever is allowed.
    let unsigned: Vec<&String> = lines
        .iter()
        .take_while(|line| !line.contains("\"kind\":\"log.checkpoint\""))
        .collect();
    let first_checkpoint = unsigned.len();
    let unsigned: Vec<String> = unsigned.into_iter().cloned().collect();
    let path = write_to(
        &dir,
        "unsigned.jsonl",
        (unsigned.join("\n") + "\n").as_bytes(),
    );
    for allow in [false, true] {
        let mut args = vec!["verify", path.to_str().unwrap(), trusted.as_str()];
        if allow {
            args.push("--allow-unsigned-tail");
        }
        let output = neuron(&args);
        assert_eq!(output.status.code(), Some(1), "{}", said(&output));
        assert!(
            said(&output).contains(&format!(
                "records 1..{first_checkpoint} signed by no trusted checkpoint"
            )),
            "{}",
            said(&output)
        );
    }
}

#[test]
fn a_trusted_key_that_begins_with_a_hyphen_is_a_value_not_a_flag() {
    let key = (0u8..=255)
        .map(|seed| NeuronKey::from_seed([seed; 32]).public_b64())
        .find(|key| key.starts_with('-'))
        .unwrap();
    let dir = data_dir();
    let output = neuron(&[
        "verify",
        dir.path().to_str().unwrap(),
        "--trusted-key",
        &key,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("not by the trusted key"),
        "{}",
        said(&output)
    );
}

#[test]
fn hostile_exports_are_refused_by_line_without_being_held_whole() {
    let dir = data_dir();
    let lines = export_lines(&dir);
    // One line of 128 MiB after a record: reported at its line, not read into memory whole.
    let mut huge = (lines[0].clone() + "\n").into_bytes();
    huge.extend(std::iter::repeat_n(b'x', 128 << 20));
    huge.push(b'\n');
    let path = write_to(&dir, "huge.jsonl", &huge);
    let output = neuron(&["verify", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("NOT INTACT at seq 2, line 2: not a record: a line of 134217728 bytes, longer than the largest record"),
        "{}",
        said(&output)
    );
    for args in [
        &["replay"][..],
        &["timeline", "--session", "nobody"],
        &["export"],
    ] {
        let mut args = args.to_vec();
        args.insert(1, path.to_str().unwrap());
        let output = neuron(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", said(&output));
        assert!(
            said(&output).contains("line 2 is not a record (a line of 134217728 bytes"),
            "{args:?}: {}",
            said(&output)
        );
    }

    // Plain text: no line names the subject, and still none is skipped unread.
    let garbage = write_to(&dir, "garbage.jsonl", b"hello\nworld\n");
    let output = neuron(&["timeline", garbage.to_str().unwrap(), "--patient", "ada"]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(
        said(&output).contains("line 1 is not a record"),
        "{}",
        said(&output)
    );

    // A line missing from the middle: the passes name where numbering breaks.
    let mut gapped = lines.clone();
    gapped.remove(9);
    let path = write_to(&dir, "gapped.jsonl", (gapped.join("\n") + "\n").as_bytes());
    let output = neuron(&["replay", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(
        said(&output).contains("line 10 is not a record (seq 11 follows seq 9"),
        "{}",
        said(&output)
    );
}

#[test]
fn an_output_that_cannot_be_written_is_named_as_such_not_as_an_unreadable_log() {
    let dir = data_dir();
    let path = dir.path().to_str().unwrap();
    for args in [
        vec!["export", path],
        vec!["export", path, "--format", "fhir"],
        vec!["verify", path],
        vec!["replay", path],
        vec!["timeline", path, "--patient", "self-check-patient-1"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_neuron"))
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        let said = said(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains("writing the output: No space left on device"),
            "{args:?}: {said}"
        );
        assert!(!said.contains("cannot read the log"), "{args:?}: {said}");
    }
}
