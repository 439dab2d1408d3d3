//! Chain verification over any sequence of stored records: a sled log or a JSONL export. It hashes
//! the stored bytes (never a re-serialisation), follows every `prev` link, checks numbering, checks
//! each checkpoint's head and signature, and names the first problem with its seq (and, in an
//! export, its line).
//!
//! What it can prove: the hash chain shows that nothing was altered, inserted, removed or reordered
//! before the last record; a checkpoint signed by a trusted key shows who wrote the log up to it.
//! A change to the very last record or a removed tail shows only against an anchor: the head a
//! sled store acknowledged in its head file ([`crate::evidence`]), or a head the investigator
//! trusts (for example from the admin API). With a trusted key, every record must be covered by a
//! trusted checkpoint; an uncovered tail is named, and accepted only when asked.
//!
//! One job per file: [`report`] (what a verification found: the report, its faults and ranges),
//! `parse` (the records read, parsed and hashed on worker threads), `checker` (the chain taken
//! record by record on the calling thread), and here the entry points.

use std::io::Read;

use crate::jsonl::Blocks;
use crate::store::Acknowledged;
use crate::store::Log;
use crate::Error;

mod checker;
mod parse;
mod relationships;
mod tree;

pub mod report;

pub use report::*;

pub use checker::VerifyOptions;
pub use parse::Entry;

use checker::check;
use parse::{batches, perform, Work, BATCH};

/// Verifies a sequence of stored records from any source, against what the source acknowledged.
/// Parsing and hashing run on as many threads as there are cores (up to four); the chain is
/// checked in order on the calling thread.
///
/// # Errors
/// Only the source's own read errors: everything wrong with the records is in the [`Report`].
pub fn verify<I>(
    entries: I,
    acknowledged: &Acknowledged,
    options: &VerifyOptions,
) -> Result<Report, Error>
where
    I: IntoIterator<Item = Result<Entry, Error>>,
{
    run(batches(entries.into_iter()), None, acknowledged, options)
}

/// Verifies a JSONL export as it streams in: read in large blocks, split and parsed on worker
/// threads, in time linear in its size and bounded memory. A last line without its newline is
/// judged as possibly torn; a line longer than any record is reported by its number unread.
///
/// # Errors
/// The input's read errors.
pub fn verify_jsonl<R: Read>(input: R, options: &VerifyOptions) -> Result<Report, Error> {
    let work = Blocks::new(input).map(|piece| match piece {
        Ok(piece) => Work::Piece(piece),
        Err(source) => Work::Failed(Error::Io {
            action: "read",
            path: "export input".into(),
            source,
        }),
    });
    run(work, None, &Acknowledged::NotKept, options)
}

/// Verifies a store in place, against the head its head file acknowledged. Worker threads read it
/// in seq ranges, so reading as well as hashing is spread over the cores.
///
/// # Errors
/// The store's read errors.
pub fn verify_log(log: &dyn Log, options: &VerifyOptions) -> Result<Report, Error> {
    let last = log.last_key()?;
    let step = BATCH as u64;
    let ranges = (0..last.div_ceil(step)).map(move |chunk| {
        let from = chunk * step + 1;
        Work::Range(from, (from + step - 1).min(last))
    });
    run(ranges, Some(log), &log.acknowledged(), options)
}

/// Runs the parsing work on worker threads and checks the chain, in order, on this one.
fn run(
    work: impl Iterator<Item = Work>,
    log: Option<&dyn Log>,
    acknowledged: &Acknowledged,
    options: &VerifyOptions,
) -> Result<Report, Error> {
    let perform = |work| perform(work, log);
    std::thread::scope(|scope| {
        let parsed = crate::parallel::ordered(scope, work, &perform).flat_map(|batch| {
            let (entries, failure) = match batch {
                Ok(entries) => (entries, None),
                Err(error) => (Vec::new(), Some(error)),
            };
            entries.into_iter().map(Ok).chain(failure.map(Err))
        });
        check(parsed, acknowledged, options)
    })
}
