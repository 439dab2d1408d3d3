//! JSONL export and import: one record's bytes per line, unchanged, so an export verifies on its
//! own and an import holds exactly the bytes that were exported.

use std::io::{BufRead, Write};

use crate::record::Envelope;
use crate::store::{Log, StoredRecord};
use crate::verify::Entry;
use crate::Error;

/// Writes the records with `from <= seq <= to` as JSONL and returns how many were written.
///
/// # Errors
/// The store's read error, or [`Error::Io`] when the output fails.
pub fn export(log: &dyn Log, from: u64, to: u64, out: &mut dyn Write) -> Result<u64, Error> {
    let mut written = 0;
    for record in log.read(from, to) {
        let (_, bytes) = record?;
        out.write_all(&bytes)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(output_error)?;
        written += 1;
    }
    out.flush().map_err(output_error)?;
    Ok(written)
}

fn output_error(source: std::io::Error) -> Error {
    Error::Io {
        action: "write",
        path: "export output".into(),
        source,
    }
}

/// Reads a JSONL export line by line as verification entries. A last line without its newline is
/// marked incomplete, so verification can tell a torn tail from tampering.
pub fn read_jsonl<R: BufRead>(mut input: R) -> impl Iterator<Item = Result<Entry, Error>> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut line = Vec::with_capacity(512);
        match input.read_until(b'\n', &mut line) {
            Ok(0) => {
                done = true;
                None
            }
            Ok(_) => {
                let complete = line.last() == Some(&b'\n');
                if complete {
                    line.pop();
                }
                Some(Ok(Entry {
                    key: None,
                    bytes: line,
                    complete,
                }))
            }
            Err(source) => {
                done = true;
                Some(Err(Error::Io {
                    action: "read",
                    path: "export input".into(),
                    source,
                }))
            }
        }
    })
}

/// The entries of a store, keyed by their seq, for verification.
pub fn read_log(log: &dyn Log) -> impl Iterator<Item = Result<Entry, Error>> + '_ {
    log.read(1, u64::MAX).map(|record| {
        record.map(|(seq, bytes)| Entry {
            key: Some(seq),
            bytes,
            complete: true,
        })
    })
}

/// Loads a JSONL export into a store, byte for byte, filing each record under its own seq. It does
/// not judge the chain (verify does); it refuses a line that is not a record, naming its line number.
///
/// # Errors
/// [`Error::Unparseable`] for a line that is not a record; the store's or the input's error.
pub fn import<R: BufRead>(input: R, log: &mut dyn Log) -> Result<u64, Error> {
    const BATCH: usize = 10_000;
    let mut batch: Vec<StoredRecord> = Vec::with_capacity(BATCH);
    let mut imported = 0;
    for (index, entry) in read_jsonl(input).enumerate() {
        let entry = entry?;
        let seq = Envelope::parse(&entry.bytes)
            .map_err(|error| Error::Unparseable {
                reason: format!("line {}: {error}", index + 1),
            })?
            .seq;
        batch.push((seq, entry.bytes));
        if batch.len() == BATCH {
            log.append(&batch)?;
            imported += batch.len() as u64;
            batch.clear();
        }
    }
    log.append(&batch)?;
    imported += batch.len() as u64;
    Ok(imported)
}

/// Decodes a JSONL export on worker threads (one per core, up to four) and hands each line to
/// `visit` in file order: the record, or why the line is not one. `wanted` picks, by a cheap look
/// at the bytes, which lines are worth decoding; the others are skipped.
///
/// # Errors
/// The input's read errors.
pub fn decode_jsonl<R, W, V>(mut input: R, wanted: W, mut visit: V) -> Result<(), Error>
where
    R: std::io::Read,
    W: Fn(&[u8]) -> bool + Sync,
    V: FnMut(Result<crate::Record, Error>),
{
    use std::sync::mpsc;
    const BLOCK: usize = 1 << 20;
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4);
    std::thread::scope(|scope| {
        let wanted = &wanted;
        let channels: Vec<_> = (0..workers)
            .map(|_| {
                let (to_worker, blocks) = mpsc::sync_channel::<Vec<u8>>(2);
                let (to_caller, decoded) =
                    mpsc::sync_channel::<Vec<Result<crate::Record, Error>>>(2);
                scope.spawn(move || {
                    for block in blocks {
                        let records = block
                            .split(|byte| *byte == b'\n')
                            .filter(|line| !line.is_empty() && wanted(line))
                            .map(crate::Record::decode)
                            .collect();
                        if to_caller.send(records).is_err() {
                            break;
                        }
                    }
                });
                (to_worker, decoded)
            })
            .collect();
        let mut carry = Vec::new();
        let mut in_flight = std::collections::VecDeque::new();
        let mut next_worker = 0;
        let mut at_end = false;
        loop {
            while !at_end && in_flight.len() < workers * 2 {
                let mut block = std::mem::take(&mut carry);
                let start = block.len();
                block.resize(start + BLOCK, 0);
                let mut filled = start;
                loop {
                    match input.read(&mut block[filled..]) {
                        Ok(0) => {
                            at_end = true;
                            break;
                        }
                        Ok(read) => {
                            filled += read;
                            if filled == block.len() {
                                break;
                            }
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(Error::Io {
                                action: "read",
                                path: "export input".into(),
                                source,
                            });
                        }
                    }
                }
                block.truncate(filled);
                if !at_end {
                    match block.iter().rposition(|byte| *byte == b'\n') {
                        Some(newline) => carry = block.split_off(newline + 1),
                        None => {
                            carry = block;
                            continue;
                        }
                    }
                }
                if block.is_empty() {
                    continue;
                }
                if channels[next_worker].0.send(block).is_err() {
                    break;
                }
                in_flight.push_back(next_worker);
                next_worker = (next_worker + 1) % workers;
            }
            let Some(worker) = in_flight.pop_front() else {
                return Ok(());
            };
            match channels[worker].1.recv() {
                Ok(records) => records.into_iter().for_each(&mut visit),
                Err(_) => return Ok(()),
            }
        }
    })
}

/// Seqs one worker reads at a time in [`scan_parallel`].
const PARALLEL_CHUNK_SEQS: u64 = 2048;

/// Reads a store on worker threads and hands what they pick to `visit` in seq order: each worker
/// scans its own seq ranges (so reading the store, not only what follows, is spread over the
/// cores) and `pick` turns each record's bytes into any number of items. At most two ranges per
/// worker are held at once.
///
/// # Errors
/// The store's read errors, after the items of the ranges before the failing one were visited.
pub fn scan_parallel<T, P, V>(log: &dyn Log, pick: P, visit: V) -> Result<(), Error>
where
    T: Send,
    P: Fn(u64, &[u8], &mut Vec<T>) + Sync,
    V: FnMut(T),
{
    let last = log.last_key()?;
    scan_parallel_range(log, 1, last, pick, visit)
}

/// As [`scan_parallel`], for the records with `from <= seq <= to`.
///
/// # Errors
/// As [`scan_parallel`].
pub fn scan_parallel_range<T, P, V>(
    log: &dyn Log,
    from: u64,
    to: u64,
    pick: P,
    mut visit: V,
) -> Result<(), Error>
where
    T: Send,
    P: Fn(u64, &[u8], &mut Vec<T>) + Sync,
    V: FnMut(T),
{
    use std::sync::mpsc;
    if from == 0 || from > to {
        return Ok(());
    }
    let start = from;
    let chunks = (to - from + 1).div_ceil(PARALLEL_CHUNK_SEQS);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4) as u64;
    std::thread::scope(|scope| {
        let pick = &pick;
        let receivers: Vec<_> = (0..workers)
            .map(|worker| {
                let (to_caller, picked) = mpsc::sync_channel::<Result<Vec<T>, Error>>(2);
                scope.spawn(move || {
                    let mut chunk = worker;
                    while chunk < chunks {
                        let from = start + chunk * PARALLEL_CHUNK_SEQS;
                        let to = (from + PARALLEL_CHUNK_SEQS - 1).min(to);
                        let mut items = Vec::new();
                        let scanned =
                            log.scan(from, to, &mut |seq, bytes| pick(seq, bytes, &mut items));
                        let failed = scanned.is_err();
                        if to_caller.send(scanned.map(|()| items)).is_err() || failed {
                            break;
                        }
                        chunk += workers;
                    }
                });
                picked
            })
            .collect();
        for chunk in 0..chunks {
            // Chunk i was read by worker i % workers; its channel yields its chunks in order.
            let Some(receiver) = usize::try_from(chunk % workers)
                .ok()
                .and_then(|worker| receivers.get(worker))
            else {
                break;
            };
            match receiver.recv() {
                Ok(Ok(items)) => items.into_iter().for_each(&mut visit),
                Ok(Err(error)) => return Err(error),
                Err(_) => break,
            }
        }
        Ok(())
    })
}

/// Decodes every record of a store that `wanted` picks (by a cheap look at its bytes), in seq
/// order, reading and decoding on worker threads ([`scan_parallel`]).
///
/// # Errors
/// The store's read errors.
pub fn decode_log<W, V>(log: &dyn Log, wanted: W, visit: V) -> Result<(), Error>
where
    W: Fn(&[u8]) -> bool + Sync,
    V: FnMut(Result<crate::Record, Error>),
{
    scan_parallel(
        log,
        |_, bytes, decoded| {
            if wanted(bytes) {
                decoded.push(crate::Record::decode(bytes));
            }
        },
        visit,
    )
}
