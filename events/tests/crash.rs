//! A crash at any instant loses no acknowledged event and leaves a chain that verifies; a damaged
//! store is never taken for a shorter intact log. Both directions of the head evidence:
//!
//! - The test re-runs its own binary as a child (the ignored `crash_child` test) that appends from
//!   many tasks into a sled log and reports every acknowledged append on stdout. The parent SIGKILLs
//!   the child at a random moment, re-opens the log, checks it against its head file as a starting
//!   server does (no false alarm), verifies it, and checks that every acknowledged event is there
//!   with its own data. Many rounds run on the same log, so each child also continues a log that
//!   was just killed.
//! - A stopped log's store is then damaged as a bad disk or a careless copy would (truncated,
//!   bytes flipped, ranges zeroed): every damage is refused at opening or reported by
//!   verification, or else changes nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use neuron_events::event::ConnectionPromoted;
use neuron_events::testing::neuron_key;
use neuron_events::{
    verify_log, Event, EventData, Journal, JournalOptions, Log, LogHead, Record, SledLog,
    SystemClock, VerifyOptions,
};

const CHILD_ENV: &str = "NEURON_CRASH_CHILD_DIR";
const TASKS: usize = 32;
const ROUNDS: u64 = 25;

#[test]
#[ignore = "the child half of the crash test; it runs only when that test starts it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let log = SledLog::open(Path::new(&dir)).unwrap();
        let options = JournalOptions {
            checkpoint_every: 50,
            ..JournalOptions::default()
        };
        let journal = Journal::start(
            Box::new(log),
            Arc::new(neuron_key()),
            Arc::new(SystemClock),
            options,
            Box::new(|_: &[Record], _: &neuron_events::BatchReport| {}),
        )
        .unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    for round in 0.. {
                        let event = Event::in_session(
                            format!("t{task}"),
                            EventData::ConnectionPromoted(ConnectionPromoted { waited_ms: round }),
                        );
                        let committed = journal.append(event).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {} {task} {round}", committed.seq).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// A small deterministic generator for kill delays, so a failing round can be reproduced.
fn next_delay(state: &mut u64) -> Duration {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    Duration::from_millis(5 + (*state >> 33) % 400)
}

#[test]
fn killing_the_writer_at_random_moments_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut state = 0x5eed_u64;
    let mut total_acknowledged = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    let mut parts = line
                        .strip_prefix("ACK ")?
                        .split(' ')
                        .map(|part| part.parse::<u64>());
                    Some((
                        parts.next()?.ok()?,
                        parts.next()?.ok()?,
                        parts.next()?.ok()?,
                    ))
                })
                .collect::<Vec<(u64, u64, u64)>>()
        });
        std::thread::sleep(next_delay(&mut state));
        child.kill().unwrap();
        child.wait().unwrap();
        let acknowledged = reader.join().unwrap();
        total_acknowledged += acknowledged.len();
        let acknowledged_seqs: Vec<u64> = acknowledged.iter().map(|(seq, ..)| *seq).collect();

        let started = std::time::Instant::now();
        let log = SledLog::open(dir.path()).unwrap();
        eprintln!(
            "round {round}: {} acknowledged, reopened in {:?}",
            acknowledged.len(),
            started.elapsed()
        );
        // What a starting server checks: the store holds every record its head file acknowledged.
        let store_head = neuron_events::evidence::check(&log)
            .unwrap_or_else(|error| panic!("round {round}: false alarm after a crash: {error}"));
        let evidence = log.acknowledged().head().unwrap();
        let last_acknowledged = acknowledged_seqs.iter().copied().max().unwrap_or(0);
        assert!(
            evidence.seq >= last_acknowledged && evidence.seq <= store_head.seq,
            "round {round}: head file at {}, store at {}, last acknowledgement {last_acknowledged}",
            evidence.seq,
            store_head.seq
        );
        let report = verify_log(
            &log,
            &VerifyOptions {
                trusted_key: Some(neuron_key().verifying_key()),
                // A killed writer leaves records after its last checkpoint.
                allow_unsigned_tail: true,
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert!(report.is_intact(), "round {round}: {report:?}");
        for (seq, task, waited) in acknowledged {
            let (_, bytes) = log
                .read(seq, seq)
                .next()
                .unwrap_or_else(|| panic!("round {round}: acknowledged seq {seq} is gone"))
                .unwrap();
            let record = Record::decode(&bytes).unwrap();
            assert_eq!(
                record.session.as_deref(),
                Some(format!("t{task}").as_str()),
                "round {round}, seq {seq}"
            );
            assert_eq!(
                record.event,
                EventData::ConnectionPromoted(ConnectionPromoted { waited_ms: waited }),
                "round {round}, seq {seq}"
            );
        }
    }
    assert!(
        total_acknowledged > 0,
        "the children acknowledged nothing: the test exercised nothing"
    );
}

/// Writes a stopped log of `events` records through a real journal.
fn stopped_log(dir: &Path, events: u64) -> LogHead {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let journal = Journal::start(
            Box::new(SledLog::open(dir).unwrap()),
            Arc::new(neuron_key()),
            Arc::new(neuron_events::testing::fixed_clock()),
            JournalOptions {
                checkpoint_every: 100,
                ..JournalOptions::default()
            },
            Box::new(|_: &[Record], _: &neuron_events::BatchReport| {}),
        )
        .unwrap();
        for round in 0..events {
            let event = Event::in_session(
                format!("session-{}", round / 7),
                EventData::ConnectionPromoted(ConnectionPromoted { waited_ms: round }),
            );
            journal.append(event).await.unwrap();
        }
        journal.checkpoint().await.unwrap();
        journal.close().await.unwrap();
        journal.status().head
    })
}

/// One way a disk or a careless copy damages the store's data file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Keep this many per mille of the file.
    Truncate(u64),
    /// Flip 8 bytes starting at this per mille of the file.
    Flip(u64),
    /// Zero this many bytes starting at this per mille of the file.
    Zero(u64, u64),
}

fn damage(file: &Path, damage: Damage) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = |per_mille: u64| (bytes.len() as u64 * per_mille / 1000) as usize;
    match damage {
        Damage::Truncate(per_mille) => bytes.truncate(at(per_mille)),
        Damage::Flip(per_mille) => {
            let start = at(per_mille).min(bytes.len().saturating_sub(8));
            for byte in &mut bytes[start..start + 8] {
                *byte ^= 0x5a;
            }
        }
        Damage::Zero(length, per_mille) => {
            let start = at(per_mille);
            let end = (start + length as usize).min(bytes.len());
            bytes[start..end].fill(0);
        }
    }
    std::fs::write(file, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What opening and verifying a damaged copy found: `Err` when it was refused or reported, `Ok`
/// with the verified head when it passed.
fn judge(dir: &Path) -> Result<LogHead, String> {
    // A panic here fails the test: every damage must come back as an error.
    let log = SledLog::open(dir).map_err(|error| format!("refused at opening: {error}"))?;
    neuron_events::evidence::check(&log)
        .map_err(|error| format!("refused by the head file: {error}"))?;
    let report = verify_log(
        &log,
        &VerifyOptions {
            trusted_key: Some(neuron_key().verifying_key()),
            ..VerifyOptions::default()
        },
    )
    .map_err(|error| format!("unreadable: {error}"))?;
    match report.problem {
        Some(problem) => Err(format!("reported: {}", problem.fault.describe())),
        None => Ok(LogHead {
            seq: report.last_seq,
            hash: report.head,
        }),
    }
}

/// A small deterministic generator for damages, so that a failing case can be reproduced.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn a_damaged_store_is_refused_or_reported_never_taken_for_a_shorter_log() {
    let original = tempfile::tempdir().unwrap();
    let head = stopped_log(original.path(), 6_000);
    let mut cases = vec![
        Damage::Truncate(990),
        Damage::Truncate(900),
        Damage::Truncate(750),
        Damage::Truncate(500),
        Damage::Truncate(250),
        Damage::Truncate(10),
        Damage::Truncate(0),
        Damage::Flip(600),
        Damage::Flip(750),
        Damage::Flip(900),
        Damage::Flip(999),
        Damage::Zero(64 << 10, 500),
        Damage::Zero(64 << 10, 100),
        Damage::Zero(64 << 10, 900),
        Damage::Zero(4096, 0),
    ];
    // More random cases on request (the corruption fuzzing of fuzz/run.sh sets this).
    let random: u64 = std::env::var("NEURON_CORRUPTION_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(24);
    let mut state = 0xdeca_f00d_u64;
    for _ in 0..random {
        let per_mille = next(&mut state) % 1000;
        cases.push(match next(&mut state) % 3 {
            0 => Damage::Truncate(per_mille),
            1 => Damage::Flip(per_mille),
            _ => Damage::Zero(1 + next(&mut state) % (128 << 10), per_mille),
        });
    }
    let mut refused = 0;
    for case in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        damage(&copy.path().join("db"), case);
        let outcome = judge(copy.path());
        eprintln!("{case:?}: {outcome:?}");
        match outcome {
            Err(_) => refused += 1,
            Ok(found) => assert_eq!(
                found, head,
                "{case:?}: the damaged store passed as a different log"
            ),
        }
    }
    assert!(
        refused > 0,
        "no damage was noticed: the test exercised nothing"
    );
}
