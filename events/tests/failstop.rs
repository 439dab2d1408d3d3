//! Fail-stop: the first failed append stops the journal for good, and nothing of that batch or
//! after it reaches the disk from that process, not even by sled's flush when the store is let go.
//!
//! For each step of `SledLog::append` (sled taking the batch, sled's flush, `fdatasync`, the head
//! file), the test re-runs its own binary as a child (the ignored `failstop_child` test) whose
//! store fails at that step of its fourth append. The child checks what its callers are told,
//! closes the journal (which lets the store go), and exits. The parent then reopens the store as a
//! restarting server would: no false alarm, the log verifies, the three acknowledged records are
//! there, nothing after the failed one is, and the journal continues the chain.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use neuron_events::event::ConnectionPromoted;
use neuron_events::testing::{fixed_clock, neuron_key};
use neuron_events::{
    verify_log, AppendStep, Error, Event, EventData, Journal, JournalOptions, Log, Record, SledLog,
    VerifyOptions,
};

const CHILD_DIR: &str = "NEURON_FAILSTOP_CHILD_DIR";
const CHILD_STEP: &str = "NEURON_FAILSTOP_CHILD_STEP";
/// The exit status of a child that saw everything it expected.
const STOPPED: i32 = 3;

fn step_named(name: &str) -> AppendStep {
    match name {
        "apply" => AppendStep::Apply,
        "flush" => AppendStep::Flush,
        "sync" => AppendStep::Sync,
        _ => AppendStep::Evidence,
    }
}

fn promoted(round: u64) -> Event {
    Event::in_session(
        "s1",
        EventData::ConnectionPromoted(ConnectionPromoted { waited_ms: round }),
    )
}

fn start(log: SledLog) -> Journal {
    start_with(log, fixed_clock())
}

fn start_with(log: SledLog, clock: neuron_events::SteppingClock) -> Journal {
    Journal::start(
        Box::new(log),
        Arc::new(neuron_key()),
        Arc::new(clock),
        JournalOptions::default(),
        Box::new(|_: &[Record], _: &neuron_events::BatchReport| {}),
    )
    .unwrap()
}

#[test]
#[ignore = "the child half of the fail-stop test; it runs only when that test starts it"]
fn failstop_child() {
    let (Ok(dir), Ok(step)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_STEP)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut log = SledLog::open(Path::new(&dir)).unwrap();
        log.fail_at(step_named(&step), 3);
        let journal = start(log);
        for round in 1..=3 {
            assert_eq!(journal.append(promoted(round)).await.unwrap().seq, round);
        }
        let failed = journal.append(promoted(4)).await;
        assert!(
            matches!(&failed, Err(Error::WriterFailed { reason }) if reason.contains("Input/output error")),
            "{failed:?}"
        );
        let reason = journal.failed().await;
        assert!(reason.contains("Input/output error"), "{reason}");
        assert!(matches!(
            journal.append(promoted(5)).await,
            Err(Error::WriterFailed { .. })
        ));
        assert!(journal.checkpoint().await.is_err());
        // Closing lets the store go: a store that was not abandoned would flush here.
        assert!(journal.close().await.is_err());
        drop(journal);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    });
    std::process::exit(STOPPED);
}

#[test]
fn a_failed_append_stops_the_journal_and_nothing_more_reaches_the_disk() {
    let exe = std::env::current_exe().unwrap();
    for step in ["apply", "flush", "sync", "evidence"] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(&exe)
            .args(["failstop_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_STEP, step)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(STOPPED),
            "{step}: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let log = SledLog::open(dir.path()).unwrap();
        let head = neuron_events::evidence::check(&log)
            .unwrap_or_else(|error| panic!("{step}: false alarm after fail-stop: {error}"));
        let report = verify_log(&log, &VerifyOptions::default()).unwrap();
        assert!(report.is_intact(), "{step}: {report:?}");
        let seqs: Vec<u64> = log.read(1, u64::MAX).map(|r| r.unwrap().0).collect();
        match step {
            // sled held the failed batch in memory only: it never reached the disk.
            "apply" => assert_eq!(seqs, vec![1, 2, 3], "{step}"),
            // The failed batch may be on disk (its outcome is unknown to its caller); nothing
            // after it is.
            _ => assert!(
                seqs == [1, 2, 3] || seqs == [1, 2, 3, 4],
                "{step}: {seqs:?}"
            ),
        }
        assert_eq!(head.seq, *seqs.last().unwrap(), "{step}");

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let journal = start_with(log, neuron_events::testing::restarted_clock());
            let next = journal.append(promoted(9)).await.unwrap();
            assert_eq!(next.seq, head.seq + 1, "{step}: the chain continues");
            journal.close().await.unwrap();
        });
    }
}
