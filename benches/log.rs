//! The event log's numbers, measured in `--release` (never in a timed test):
//!
//! - durable appends/s through group commit with 1, 16 and 256 concurrent appenders, on sled with
//!   `fdatasync` (power-loss durable) and, to show what `fdatasync` costs, with sled's flush alone;
//! - verification records/s over a 1,000,000-record log, from JSONL and from sled;
//! - replay (decode + fold into every view) and fold-only records/s over the same log;
//! - an inclusion proof (a receipt) for records anywhere in that log, from the sled store's
//!   stored Merkle hashes: the mean and the slowest of 10,000.
//!
//! - with `--postgres URL`, durable appends/s on PostgreSQL too (SPEC §3.6: one transaction per
//!   batch, the commit confirmed by a synchronous standby), each run on a new log `bench-…` in that
//!   database (use a scratch one: `scripts/pg-cluster.sh start`).
//!
//! Run: `cargo bench --bench log` (options: `--records N`, `--seconds S`, `--skip-appends`, `--keep` (leave the 1M-record logs on disk), `--dir PATH` for where the
//! logs are written; default the system temp directory; `--postgres URL`).

/// The server's allocator (src/main.rs), so that the numbers are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use neuron_events::event::{ConnectionPromoted, EventData};
use neuron_events::export::{import, read_jsonl};
use neuron_events::store::{PostgresLocation, PostgresLog};
use neuron_events::testing::{fixed_clock, neuron_key, story};
use neuron_events::{
    verify_jsonl, verify_log, BatchReport, Durability, Event, Journal, JournalOptions, Log,
    MemoryLog, Record, SledLog, VerifyOptions,
};
use neuron_projections::{replay, Until};

struct Options {
    records: u64,
    seconds: f64,
    dir: PathBuf,
    skip_appends: bool,
    keep: bool,
    postgres: Option<String>,
}

/// Where the appends go.
#[derive(Clone, Debug)]
enum Store {
    Sled(Durability),
    Postgres(String),
}

fn options() -> Options {
    let mut options = Options {
        records: 1_000_000,
        seconds: 5.0,
        dir: std::env::temp_dir(),
        skip_appends: false,
        keep: false,
        postgres: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => {
                options.records = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(options.records)
            }
            "--seconds" => {
                options.seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(options.seconds)
            }
            "--skip-appends" => options.skip_appends = true,
            "--keep" => options.keep = true,
            "--postgres" => options.postgres = args.next(),
            "--dir" => options.dir = args.next().map(PathBuf::from).unwrap_or(options.dir),
            _ => {} // cargo bench passes --bench; nothing else is ours
        }
    }
    options
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> BenchResult<()> {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "== durable appends through group commit ({} s each) ==",
        options.seconds
    );
    let mut stores = Vec::new();
    if !options.skip_appends {
        stores.push(Store::Sled(Durability::PowerLoss));
        stores.push(Store::Sled(Durability::ProcessCrash));
    }
    if let Some(url) = &options.postgres {
        stores.push(Store::Postgres(url.clone()));
    }
    for store in stores {
        for appenders in [1usize, 16, 256] {
            let (rate, per_batch) = appends(&runtime, &options, &store, appenders)?;
            let name = match &store {
                Store::Sled(durability) => format!("{durability:?}"),
                Store::Postgres(_) => "PostgreSQL".to_string(),
            };
            println!("{name}\t{appenders:>3} appenders\t{rate:>10.0} appends/s\t{per_batch:>6.1} records/batch");
        }
    }

    println!("== a {}-record log ==", options.records);
    let started = Instant::now();
    let memory = runtime.block_on(build_log(options.records))?;
    println!("built in {:.1} s", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir_in(&options.dir)?;
    let dir = if options.keep {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    let jsonl_path = dir.join("log.jsonl");
    {
        let mut out = BufWriter::new(std::fs::File::create(&jsonl_path)?);
        neuron_events::export::export(&memory, 1, u64::MAX, &mut out)?;
        out.flush()?;
    }
    // An investigator verifies a log with nothing else in memory: free the in-memory copy first.
    drop(memory);
    let sled_path = dir.join("sled");
    {
        let mut sled = SledLog::open(&sled_path)?;
        let file = BufReader::new(std::fs::File::open(&jsonl_path)?);
        import(file, &mut sled)?;
    }
    if options.keep {
        println!("logs kept in {}", dir.display());
    }
    let size = std::fs::metadata(&jsonl_path)?.len();
    println!("JSONL export: {:.1} MiB", size as f64 / (1 << 20) as f64);

    let trusted = VerifyOptions {
        trusted_key: Some(neuron_key().verifying_key()),
        ..VerifyOptions::default()
    };
    let rate = |count: u64, elapsed: Duration| count as f64 / elapsed.as_secs_f64();

    let started = Instant::now();
    let report = verify_jsonl(std::fs::File::open(&jsonl_path)?, &trusted)?;
    assert!(report.is_intact(), "{report:?}");
    let elapsed = started.elapsed();
    println!(
        "verify JSONL\t{:>10.0} records/s\t({:.2} s)",
        rate(report.records, elapsed),
        elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let sled = SledLog::open(&sled_path)?;
    println!(
        "open sled	({:.2} s: sled's recovery of a log just written by another handle)",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = verify_log(&sled, &trusted)?;
    assert!(report.is_intact(), "{report:?}");
    let elapsed = started.elapsed();
    println!(
        "verify sled\t{:>10.0} records/s\t({:.2} s)",
        rate(report.records, elapsed),
        elapsed.as_secs_f64()
    );

    proofs(&sled, report.records)?;
    drop(sled);

    let started = Instant::now();
    let file = BufReader::with_capacity(1 << 20, std::fs::File::open(&jsonl_path)?);
    let records = read_jsonl(file)
        .map(|entry| entry.and_then(|entry| Record::decode(&entry.bytes)))
        .collect::<Result<Vec<Record>, _>>()?;
    let views = replay(&records, Until::End);
    let records_for_fold = records;
    let elapsed = started.elapsed();
    println!(
        "decode+fold JSONL\t{:>10.0} records/s\t({:.2} s)",
        rate(views.last_seq, elapsed),
        elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let views = replay(&records_for_fold, Until::End);
    let elapsed = started.elapsed();
    println!(
        "fold only\t{:>10.0} records/s\t({:.2} s)",
        rate(views.last_seq, elapsed),
        elapsed.as_secs_f64()
    );
    println!(
        "views: {} sessions, {} relationships, {} providers",
        views.sessions.all().count(),
        views.relationships.all().count(),
        views.providers.all().count()
    );
    Ok(())
}

/// Receipts for records spread over the whole log: each an inclusion proof under the last
/// checkpoint, folded from stored hashes.
fn proofs(sled: &SledLog, records: u64) -> BenchResult<()> {
    use neuron_events::Log;
    let checkpoint_bytes = sled
        .read(records, records)
        .next()
        .ok_or("no last record")??
        .1;
    let last = Record::decode(&checkpoint_bytes)?;
    let EventData::LogCheckpoint(data) = &last.event else {
        return Err("the log does not end with a checkpoint".into());
    };
    let checkpoint = neuron_events::checkpoint::SignedCheckpoint::of(last.seq, data)
        .ok_or("the last checkpoint has no note")?;
    let reader = sled.reader();
    let count = 10_000u64;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for index in 0..count {
        // Spread over the tree, with a multiplier coprime to most sizes.
        let seq = (index * 7_919 + 1) % checkpoint.size + 1;
        let one = Instant::now();
        let receipt = neuron_events::receipt::make(reader.as_ref(), seq, &checkpoint)?;
        slowest = slowest.max(one.elapsed());
        std::hint::black_box(receipt);
    }
    let mean = started.elapsed() / count as u32;
    println!(
        "receipt (proof from stored hashes)	mean {:.1} µs	slowest {:.1} µs	(of {count}, tree of {} records)",
        mean.as_secs_f64() * 1e6,
        slowest.as_secs_f64() * 1e6,
        checkpoint.size
    );
    Ok(())
}

fn appends(
    runtime: &tokio::runtime::Runtime,
    options: &Options,
    store: &Store,
    appenders: usize,
) -> BenchResult<(f64, f64)> {
    let dir = tempfile::tempdir_in(&options.dir)?;
    // Opened off the runtime: the PostgreSQL store blocks on a runtime of its own.
    let log: Box<dyn Log> = match store {
        Store::Sled(durability) => Box::new(SledLog::open_with(dir.path(), *durability)?),
        Store::Postgres(url) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos();
            let location = PostgresLocation {
                log: format!("bench-{appenders}-{nanos}"),
                ..PostgresLocation::parse(url)?
            };
            let mut log = PostgresLog::connect(&location, Duration::from_secs(10))?;
            log.take_over(None)?;
            Box::new(log)
        }
    };
    runtime.block_on(appends_to(log, options, appenders))
}

async fn appends_to(
    log: Box<dyn Log>,
    options: &Options,
    appenders: usize,
) -> BenchResult<(f64, f64)> {
    let batches = Arc::new(AtomicU64::new(0));
    let counted = batches.clone();
    let observer = move |_: &[Record], _: &BatchReport| {
        counted.fetch_add(1, Ordering::Relaxed);
    };
    let journal = tokio::task::block_in_place(|| {
        Journal::start(
            log,
            Arc::new(neuron_key()),
            Arc::new(neuron_events::SystemClock),
            JournalOptions::default(),
            Box::new(observer),
        )
    })?;
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    let event = Event::in_session(
                        format!("bench-{task}"),
                        EventData::ConnectionPromoted(ConnectionPromoted { waited_ms: count }),
                    );
                    journal.append(event).await?;
                    count += 1;
                }
                Ok::<u64, neuron_events::Error>(count)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = started.elapsed();
    journal.close().await?;
    let batches = batches.load(Ordering::Relaxed).max(1);
    Ok((
        total as f64 / elapsed.as_secs_f64(),
        total as f64 / batches as f64,
    ))
}

/// The fixed story over and over, each round with its own sessions and relationship, appended
/// through a real journal (checkpoint every 1000 records) into memory, ending with a checkpoint
/// (as a stopped server's log does) so that every record is covered by a signature.
async fn build_log(records: u64) -> BenchResult<MemoryLog> {
    let log = MemoryLog::new();
    let journal = Journal::start(
        Box::new(log.clone()),
        Arc::new(neuron_key()),
        Arc::new(fixed_clock()),
        JournalOptions::default(),
        Box::new(|_: &[Record], _: &BatchReport| {}),
    )?;
    let story = story();
    let mut round = 0u64;
    while (log.len() as u64) + 1 < records {
        let remaining = (records - 1 - log.len() as u64) as usize;
        let events: Vec<Event> = story
            .iter()
            .take(remaining)
            .map(|event| vary(event, round))
            .collect();
        journal.append_all(events).await?;
        round += 1;
    }
    journal.checkpoint().await?;
    journal.close().await?;
    Ok(log)
}

fn vary(event: &Event, round: u64) -> Event {
    let mut event = event.clone();
    event.session = event.session.map(|session| format!("{round}-{session}"));
    let relationship = |id: &mut String| *id = format!("{round:08x}-{}", &id[9..]);
    match &mut event.data {
        EventData::RelationshipEstablished(data) => {
            relationship(&mut data.relationship_id);
            data.patient_agent_id = format!("{}-{round}", data.patient_agent_id);
        }
        EventData::HandshakeCompleted(data) => relationship(&mut data.relationship_id),
        EventData::RelationshipTerminated(data) => relationship(&mut data.relationship_id),
        EventData::ChallengeIssued(data) => {
            if let Some(id) = &mut data.relationship {
                relationship(id)
            }
        }
        _ => {}
    }
    event
}
