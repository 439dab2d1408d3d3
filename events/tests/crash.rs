//! A crash at any instant loses no acknowledged event and leaves a chain that verifies.
//!
//! The test re-runs its own binary as a child (the ignored `crash_child` test) that appends from many
//! tasks into a sled log and reports every acknowledged append on stdout. The parent SIGKILLs the
//! child at a random moment, re-opens the log, verifies it, and checks that every acknowledged event
//! is there with its own data. Many rounds run on the same log, so each child also continues a log
//! that was just killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a panic is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use neuron_events::event::ConnectionPromoted;
use neuron_events::testing::neuron_key;
use neuron_events::{
    verify_log, Event, EventData, Journal, JournalOptions, Log, Record, SledLog, SystemClock,
    VerifyOptions,
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

        let started = std::time::Instant::now();
        let log = SledLog::open(dir.path()).unwrap();
        eprintln!(
            "round {round}: {} acknowledged, reopened in {:?}",
            acknowledged.len(),
            started.elapsed()
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
