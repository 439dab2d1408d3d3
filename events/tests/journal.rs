//! The group-commit writer: numbering, chaining, durability order, batching, failure, checkpoints,
//! and continuing a log after re-opening it.

use std::sync::{Arc, Mutex};

use neuron_events::event::{ConnectionPromoted, ServerStopping};
use neuron_events::store::{Appended, LogReader, StoredRecord};
use neuron_events::testing::{fixed_clock, neuron_key};
use neuron_events::tree::{Hash, Node};
use neuron_events::{
    verify_log, Acknowledged, BatchReport, Digest, Error, Event, EventData, Journal,
    JournalOptions, Log, LogHead, MemoryLog, Record, SledLog, VerifyOptions,
};

fn promoted(session: usize, waited_ms: u64) -> Event {
    Event::in_session(
        format!("s{session}"),
        EventData::ConnectionPromoted(ConnectionPromoted { waited_ms }),
    )
}

/// What the observer saw: each batch's seqs and how many requests it answered.
type Batches = Arc<Mutex<Vec<(Vec<u64>, usize)>>>;

fn start(log: Box<dyn Log>, checkpoint_every: u64) -> Result<(Journal, Batches), Error> {
    start_with(log, checkpoint_every, fixed_clock())
}

fn start_with(
    log: Box<dyn Log>,
    checkpoint_every: u64,
    clock: neuron_events::SteppingClock,
) -> Result<(Journal, Batches), Error> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let observer_seen = seen.clone();
    let observer = move |records: &[Record], report: &BatchReport| {
        let seqs = records.iter().map(|record| record.seq).collect();
        observer_seen.lock().unwrap().push((seqs, report.requests));
    };
    let options = JournalOptions {
        checkpoint_every,
        ..JournalOptions::default()
    };
    let journal = Journal::start(
        log,
        Arc::new(neuron_key()),
        Arc::new(clock),
        options,
        Box::new(observer),
    )?;
    Ok((journal, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_numbered_without_gaps_and_chain() -> Result<(), Error> {
    let log = MemoryLog::new();
    let (journal, seen) = start(Box::new(log.clone()), 1_000_000)?;
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for round in 0..20 {
                    seqs.push(journal.append(promoted(task, round)).await?.seq);
                }
                Ok::<_, Error>(seqs)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap()?;
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "one task's appends stay in order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1280).collect::<Vec<u64>>());
    assert_eq!(journal.status().head.seq, 1280);

    let observed: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(seqs, _)| seqs.clone())
        .collect();
    assert_eq!(
        observed,
        (1..=1280).collect::<Vec<u64>>(),
        "the observer sees every batch in order"
    );
    let batches = seen.lock().unwrap().len();
    assert!(
        batches < 1280,
        "64 concurrent appenders share batches ({batches} batches for 1280 appends)"
    );

    let report = verify_log(&log, &VerifyOptions::default())?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        (report.records, report.head),
        (1280, journal.status().head.hash)
    );
    Ok(())
}

#[tokio::test]
async fn append_all_writes_consecutive_records_in_one_batch() -> Result<(), Error> {
    let log = MemoryLog::new();
    let (journal, seen) = start(Box::new(log.clone()), 1000)?;
    let committed = journal
        .append_all(vec![promoted(1, 1), promoted(1, 2), promoted(1, 3)])
        .await?;
    assert_eq!(
        committed.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(seen.lock().unwrap().as_slice(), &[(vec![1, 2, 3], 1)]);
    assert_eq!(committed[2].hash, Digest::of(&log.all_bytes()[2]));
    Ok(())
}

#[tokio::test]
async fn checkpoints_come_every_n_records_and_on_request() -> Result<(), Error> {
    let log = MemoryLog::new();
    let (journal, _) = start(Box::new(log.clone()), 5)?;
    for round in 0..9 {
        journal.append(promoted(1, round)).await?;
    }
    let on_request = journal.checkpoint().await?;
    let kinds: Vec<String> = log
        .all_bytes()
        .iter()
        .map(|bytes| Record::decode(bytes).map(|r| r.event.kind().to_string()))
        .collect::<Result<_, _>>()?;
    let checkpoints: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| *k == "log.checkpoint")
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        checkpoints,
        vec![5, 10, 12],
        "periodic at every multiple of 5, then the requested one"
    );
    assert_eq!(on_request.seq, 12);
    assert_eq!(journal.status().last_checkpoint, Some(12));
    let report = verify_log(
        &log,
        &VerifyOptions {
            trusted_key: Some(neuron_key().verifying_key()),
            ..VerifyOptions::default()
        },
    )?;
    assert!(report.is_intact(), "{report:?}");
    let last = report.last_checkpoint.unwrap();
    assert_eq!(
        (last.seq, last.upto, last.signer),
        (12, 11, neuron_key().public_b64())
    );
    Ok(())
}

/// A store that asks `before_append` before each append: to fail it, or to hold it.
struct HookedLog {
    inner: MemoryLog,
    before_append: Box<dyn FnMut() -> Result<(), Error> + Send + Sync>,
}

impl Log for HookedLog {
    fn append(&mut self, records: &[Appended]) -> Result<(), Error> {
        (self.before_append)()?;
        self.inner.append(records)
    }
    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_> {
        self.inner.read(from, to)
    }
    fn head(&self) -> Result<LogHead, Error> {
        self.inner.head()
    }
    fn tree_size(&self) -> Result<u64, Error> {
        self.inner.tree_size()
    }
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        Log::read_nodes(&self.inner, nodes)
    }
    fn scan_tree(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), Error> {
        self.inner.scan_tree(from, to, visit)
    }
    fn add_tree(&mut self, first_seq: u64, tree: &[Vec<Hash>]) -> Result<(), Error> {
        self.inner.add_tree(first_seq, tree)
    }
    fn reader(&self) -> std::sync::Arc<dyn LogReader> {
        self.inner.reader()
    }
}

/// A store that fails its appends after the first `appends_before_failure`.
fn failing_log(inner: MemoryLog, appends_before_failure: usize) -> HookedLog {
    let mut left = appends_before_failure;
    HookedLog {
        inner,
        before_append: Box::new(move || {
            if left == 0 {
                return Err(Error::Corrupt {
                    reason: "disk full".into(),
                });
            }
            left -= 1;
            Ok(())
        }),
    }
}

#[tokio::test]
async fn a_failed_batch_fails_its_callers_and_nothing_is_written_after_it() -> Result<(), Error> {
    let memory = MemoryLog::new();
    let (journal, seen) = start(Box::new(failing_log(memory.clone(), 2)), 1000)?;
    journal.append(promoted(1, 1)).await?;
    journal.append(promoted(1, 2)).await?;
    let failed = journal.append(promoted(1, 3)).await;
    assert!(
        matches!(failed, Err(Error::WriterFailed { ref reason }) if reason.contains("disk full")),
        "{failed:?}"
    );
    let later = journal.append(promoted(1, 4)).await;
    assert!(
        matches!(later, Err(Error::WriterFailed { .. })),
        "{later:?}"
    );
    assert!(journal.checkpoint().await.is_err());
    assert_eq!(memory.len(), 2);
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the observer never sees a failed batch"
    );
    let status = journal.status();
    assert_eq!(status.head.seq, 2);
    assert!(status.failed.is_some());
    Ok(())
}

#[tokio::test]
async fn an_oversized_event_is_refused_alone() -> Result<(), Error> {
    let log = MemoryLog::new();
    let (journal, _) = start(Box::new(log.clone()), 1000)?;
    let huge = Event::global(EventData::ServerStopping(ServerStopping {
        reason: "x".repeat(2 << 20),
    }));
    let (refused, accepted) = tokio::join!(journal.append(huge), journal.append(promoted(1, 1)));
    assert!(
        matches!(
            refused,
            Err(Error::RecordTooLarge {
                kind: "server.stopping",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(accepted?.seq, 1);
    assert_eq!(
        journal.append(promoted(1, 2)).await?.seq,
        2,
        "the writer carries on"
    );
    assert!(verify_log(&log, &VerifyOptions::default())?.is_intact());
    Ok(())
}

#[tokio::test]
async fn close_writes_what_was_handed_over_then_refuses() -> Result<(), Error> {
    let log = MemoryLog::new();
    let (journal, _) = start(Box::new(log.clone()), 1000)?;
    let pending = journal.clone();
    let handed = tokio::spawn(async move { pending.append(promoted(1, 1)).await });
    tokio::task::yield_now().await;
    let _ = handed.await.unwrap()?;
    journal.close().await?;
    assert!(matches!(
        journal.append(promoted(1, 2)).await,
        Err(Error::WriterClosed)
    ));
    assert_eq!(log.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_sled_log_reopens_at_its_head_and_continues_the_chain() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let first_head = {
        let (journal, _) = start(Box::new(SledLog::open(dir.path())?), 4)?;
        for round in 0..6 {
            journal.append(promoted(1, round)).await?;
        }
        journal.close().await?;
        journal.status().head
    };
    assert_eq!(first_head.seq, 7, "six events and the checkpoint at seq 4");
    let reopened = SledLog::open(dir.path())?;
    assert_eq!(reopened.head()?, first_head);
    assert_eq!(reopened.acknowledged(), Acknowledged::Head(first_head));
    let (journal, _) = start_with(
        Box::new(reopened),
        4,
        neuron_events::testing::restarted_clock(),
    )?;
    let next = journal.append(promoted(2, 1)).await?;
    assert_eq!(next.seq, 9, "seq 8 is the periodic checkpoint");
    journal.close().await?;
    let log = SledLog::open(dir.path())?;
    let report = verify_log(&log, &VerifyOptions::default())?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 9);
    Ok(())
}

#[tokio::test]
async fn the_writer_refuses_to_continue_a_log_whose_tail_was_removed() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    {
        let (journal, _) = start(Box::new(SledLog::open(dir.path())?), 1000)?;
        for round in 0..3 {
            journal.append(promoted(1, round)).await?;
        }
        journal.close().await?;
    }
    let log = SledLog::open(dir.path())?;
    log.tamper(3, None)?;
    let refused = start(Box::new(log), 1000).map(|_| ());
    assert!(
        matches!(
            refused,
            Err(Error::AcknowledgedButAbsent { first: 3, last: 3 })
        ),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_clock_behind_the_log_is_recorded_and_records_then_carry_it() -> Result<(), Error> {
    let log = MemoryLog::new();
    let clock = Arc::new(fixed_clock());
    let options = JournalOptions {
        checkpoint_every: 1000,
        ..JournalOptions::default()
    };
    let journal = Journal::start(
        Box::new(log.clone()),
        Arc::new(neuron_key()),
        clock.clone(),
        options,
        Box::new(|_: &[Record], _: &BatchReport| {}),
    )?;
    journal.append(promoted(1, 0)).await?;
    journal.append(promoted(1, 1)).await?;
    // Set back an hour: the next record is the step, then the event at the real time.
    clock.advance(-3_600_000);
    journal.append(promoted(1, 2)).await?;
    // Set back again, with a checkpoint asked for: the checkpoint covers the step's record.
    clock.advance(-3_600_000);
    let checkpoint = journal.checkpoint().await?;
    journal.close().await?;

    let records: Vec<Record> = log
        .all_bytes()
        .iter()
        .map(|bytes| Record::decode(bytes))
        .collect::<Result<_, _>>()?;
    let shown: Vec<(u64, String, i64)> = records
        .iter()
        .map(|record| {
            (
                record.seq,
                record.event.kind().to_string(),
                record.at.millis(),
            )
        })
        .collect();
    let start = records[0].at.millis();
    assert_eq!(
        shown,
        vec![
            (1, "connection.promoted".to_string(), start),
            (2, "connection.promoted".to_string(), start + 250),
            (
                3,
                "server.clock_behind".to_string(),
                start + 500 - 3_600_000
            ),
            (
                4,
                "connection.promoted".to_string(),
                start + 500 - 3_600_000
            ),
            (
                5,
                "server.clock_behind".to_string(),
                start + 750 - 7_200_000
            ),
            (6, "log.checkpoint".to_string(), start + 750 - 7_200_000),
        ]
    );
    let EventData::ServerClockBehind(step) = &records[2].event else {
        panic!("{:?}", records[2]);
    };
    assert_eq!(
        (step.last_at, step.now, step.behind_ms),
        (records[1].at, records[2].at, 3_600_000 - 250)
    );
    assert_eq!(checkpoint.seq, 6);
    let EventData::LogCheckpoint(signed) = &records[5].event else {
        panic!("{:?}", records[5]);
    };
    assert_eq!(signed.upto, 5, "the checkpoint covers the step before it");
    let report = verify_log(&log, &VerifyOptions::default())?;
    assert!(report.is_intact(), "{report:?}");
    Ok(())
}

/// A store whose first append waits until the test opens its gate (telling `entered` when it
/// has begun), so that requests pile up behind the writer meanwhile.
fn gated_log(
    entered: std::sync::mpsc::Sender<()>,
    gate: std::sync::mpsc::Receiver<()>,
) -> HookedLog {
    // In a mutex: a `Log` is shared between threads, a receiver cannot be.
    let mut first = Some((entered, Mutex::new(gate)));
    HookedLog {
        inner: MemoryLog::new(),
        before_append: Box::new(move || {
            if let Some((entered, gate)) = first.take() {
                let _ = entered.send(());
                let _ = gate.lock().map(|gate| gate.recv());
            }
            Ok(())
        }),
    }
}

#[tokio::test]
async fn a_burst_is_written_in_bounded_batches_and_no_callers_events_are_split() -> Result<(), Error>
{
    let (entered, has_entered) = std::sync::mpsc::channel();
    let (open, gate) = std::sync::mpsc::channel();
    let log = gated_log(entered, gate);
    let seen: Batches = Arc::default();
    let observer_seen = seen.clone();
    let journal = Journal::start(
        Box::new(log),
        Arc::new(neuron_key()),
        Arc::new(fixed_clock()),
        JournalOptions {
            checkpoint_every: 1_000_000,
            max_batch_events: 4,
            ..JournalOptions::default()
        },
        Box::new(move |records: &[Record], report: &BatchReport| {
            let seqs = records.iter().map(|record| record.seq).collect();
            observer_seen.lock().unwrap().push((seqs, report.requests));
        }),
    )?;
    // The first append holds the writer; everything after it waits in order.
    let first = tokio::spawn({
        let journal = journal.clone();
        async move { journal.append(promoted(0, 0)).await }
    });
    tokio::task::spawn_blocking(move || has_entered.recv())
        .await
        .unwrap()
        .unwrap();
    let mut waiting = Vec::new();
    for single in 1..=5 {
        let journal = journal.clone();
        waiting.push(tokio::spawn(async move {
            journal.append_all(vec![promoted(single, 0)]).await
        }));
        // Each request is handed over before the next is made (this runtime has one thread).
        tokio::task::yield_now().await;
    }
    let six: Vec<Event> = (0..6).map(|round| promoted(6, round)).collect();
    let journal_for_six = journal.clone();
    waiting.push(tokio::spawn(async move {
        journal_for_six.append_all(six).await
    }));
    tokio::task::yield_now().await;
    for single in 7..=9 {
        let journal = journal.clone();
        waiting.push(tokio::spawn(async move {
            journal.append_all(vec![promoted(single, 0)]).await
        }));
        tokio::task::yield_now().await;
    }
    open.send(()).unwrap();
    first.await.unwrap()?;
    let mut committed = Vec::new();
    for request in waiting {
        committed.push(request.await.unwrap()?);
    }
    // The six events of one caller are consecutive.
    let six_seqs: Vec<u64> = committed[5].iter().map(|record| record.seq).collect();
    assert_eq!(six_seqs, (7..=12).collect::<Vec<u64>>());
    // After the first: four requests of one event (the cap), then one more and the six together
    // (a caller is taken whole while the batch is under the cap), then the last three.
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[
            (vec![1], 1),
            (vec![2, 3, 4, 5], 4),
            ((6..=12).collect(), 2),
            (vec![13, 14, 15], 3),
        ]
    );
    Ok(())
}
