//! Every input the fuzz targets start from or ever found a failure with (`fuzz/seeds/TARGET`,
//! `fuzz/regressions/TARGET`) is run again through what its target holds true, on every build,
//! with the stable toolchain.

use std::path::Path;

/// What a fuzz target holds true of every input: it panics when that does not hold.
type Check = fn(&[u8]);

/// Each fuzz target and the check it runs.
const TARGETS: &[(&str, Check)] = &[
    ("wire", neuron::fuzzing::wire_frames_keep_their_limits),
    ("record", neuron_events::fuzzing::record_parsers_agree),
    ("jsonl", neuron_events::fuzzing::lines_split_as_planned),
    ("timestamp", neuron_events::fuzzing::timestamps_round_trip),
    ("base64url", neuron_events::fuzzing::base64url_round_trips),
    ("admin", operator_requests_get_documented_answers),
    ("proofs", neuron_events::fuzzing::proofs_read_totally),
];

/// The `admin` target's check, over the same fixed log as the fuzz target.
fn operator_requests_get_documented_answers(data: &[u8]) {
    static OPERATOR: std::sync::OnceLock<neuron::fuzzing::Operator> = std::sync::OnceLock::new();
    OPERATOR
        .get_or_init(|| {
            neuron::fuzzing::Operator::over(neuron_events::testing::fixed_log().unwrap())
        })
        .requests_get_documented_answers(data);
}

#[test]
fn every_kept_fuzz_input_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for (target, check) in TARGETS {
        for kept in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kept).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let input = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&input));
                assert!(outcome.is_ok(), "{} fails {target}", path.display());
                ran += 1;
            }
        }
    }
    let targets = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .unwrap()
        .count();
    assert_eq!(
        targets,
        TARGETS.len(),
        "a fuzz target is missing from this list"
    );
    assert!(ran >= TARGETS.len(), "no kept input was run");
}
