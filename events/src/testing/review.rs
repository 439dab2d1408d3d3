//! The review form snapshots lock records in: the story in words, then every record, `prev`
//! left out so that a reviewer reads what changed rather than a chain of new hashes.

use crate::{Digest, Record};

use super::fixed::neuron_key;

/// Waits until no handle in this process holds the sled store at `log_dir` any longer. sled lets
/// go of its file lock a moment after its last handle is dropped (its I/O threads finish first): a
/// test that writes a store and then investigates it, in this process or a child, waits for that
/// as an investigator refuses a locked store at once. Panics after ten seconds.
pub fn until_unlocked(log_dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Ok(file) = std::fs::File::open(log_dir.join("db")) else {
            return;
        };
        if file.try_lock_shared().is_ok() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is still locked after ten seconds",
            log_dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Every record of the sled log in `log_dir`, one per line, after checking that the log verifies
/// with every checkpoint signed by the test key. Panics (failing the test) otherwise.
pub fn verified_records(log_dir: &std::path::Path) -> String {
    use crate::store::Log;
    let log = match crate::SledLog::open(log_dir) {
        Ok(log) => log,
        Err(error) => panic!("cannot open {}: {error}", log_dir.display()),
    };
    let options = crate::VerifyOptions {
        trusted_key: Some(neuron_key().verifying_key()),
        expected_head: None,
        allow_unsigned_tail: false,
    };
    match crate::verify_log(&log, &options) {
        Ok(report) if report.is_intact() => {}
        outcome => panic!("{} does not verify: {outcome:?}", log_dir.display()),
    }
    let mut text = String::new();
    if let Err(error) = log.scan(1, u64::MAX, &mut |_, bytes| {
        text.push_str(&String::from_utf8_lossy(bytes));
        text.push('\n');
    }) {
        panic!("cannot read {}: {error}", log_dir.display());
    }
    text
}

/// The first line of a review form's story section.
const STORY_HEADING: &str = "# What happened, in the words of `neuron timeline`:";
/// The first line of a review form's records section.
pub const RECORDS_HEADING: &str =
    "# The records as stored, each without its \"prev\" (the chain is checked; the head sums it up):";
/// What begins a review form's last line.
const HEAD_PREFIX: &str = "head: ";

/// A path's records (one stored record per line) in the form its snapshot locks them, the form a
/// reviewer reads in a pull request (`docs/reviewing.md`): first the story, one line per record in
/// the words of `neuron timeline`; then each record exactly as stored but for its `prev`; then the
/// head, the hash of the last record's bytes. The chain is checked here (each `prev` the hash of
/// the bytes before it), so the records and the head fix every stored byte, and a change to one
/// record shows as that record's lines and the head, not as every later line.
///
/// # Panics
/// When a line is not a record, does not end with its `prev`, or the chain is broken: the test
/// then fails, naming the seq.
pub fn review_form(records: &str) -> String {
    let mut story = format!("{STORY_HEADING}\n");
    let mut stored = format!("{RECORDS_HEADING}\n");
    let mut head = Digest::GENESIS;
    for line in records.lines() {
        let record = match Record::decode(line.as_bytes()) {
            Ok(record) => record,
            Err(error) => panic!("not a record ({error}): {line}"),
        };
        assert_eq!(
            record.prev, head,
            "the chain is broken at seq {}: its prev is not the hash of the record before",
            record.seq
        );
        let at = record.at.to_string();
        story.push_str(&format!(
            "{:>4}  {}  {:<10}  {}\n",
            record.seq,
            at.get(11..23).unwrap_or(&at),
            crate::narrate::safe(record.session.as_deref().unwrap_or("-")),
            crate::narrate::safe(&crate::narrate::describe(&record.event)),
        ));
        stored.push_str(without_prev(line));
        stored.push('\n');
        head = record.hash;
    }
    format!("{story}\n{stored}\n{HEAD_PREFIX}{}\n", head.to_hex())
}

/// A stored record's bytes without their last field, `"prev"`.
fn without_prev(line: &str) -> &str {
    const PREV: &str = ",\"prev\":\"";
    let Some(start) = line.rfind(PREV) else {
        panic!("a record without prev: {line}");
    };
    let hash = &line[start + PREV.len()..];
    assert!(
        hash.len() == 64 + 2 && hash.ends_with("\"}"),
        "a record whose last field is not its prev: {line}"
    );
    &line[..start]
}

/// The stored records a review form stands for: each record line with its `prev` put back, the
/// hash of the line before. With [`review_head`], what a test needs to check that a snapshot
/// stands for exactly the bytes a log holds.
pub fn rechain(review: &str) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut prev = Digest::GENESIS;
    let mut lines = review.lines().skip_while(|line| *line != RECORDS_HEADING);
    lines.next();
    for line in lines.take_while(|line| !line.is_empty()) {
        let bytes = format!("{line},\"prev\":\"{}\"}}", prev.to_hex()).into_bytes();
        prev = Digest::of(&bytes);
        records.push(bytes);
    }
    records
}

/// The head a review form names.
pub fn review_head(review: &str) -> Option<String> {
    review
        .lines()
        .find_map(|line| line.strip_prefix(HEAD_PREFIX))
        .map(str::to_string)
}

/// Locks a path's records (one stored record per line) in [`review_form`] as snapshot `name`. A
/// macro, so that the snapshot names the test that locked it as its source.
#[macro_export]
macro_rules! lock_records {
    ($name:expr, $records:expr) => {{
        let review = $crate::testing::review_form($records);
        $crate::testing::snapshot_settings().bind(|| ::insta::assert_snapshot!($name, review));
    }};
}
