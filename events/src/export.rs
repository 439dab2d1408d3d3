//! JSONL export and import: one record's bytes per line, unchanged, so an export verifies on its
//! own and an import holds exactly the bytes that were exported. Also the passes investigators
//! make over a log, on worker threads and in order ([`crate::parallel`]): [`decode_jsonl`] over an
//! export, [`scan_parallel`] and [`decode_log`] over a store. A pass never skips a line that is not
//! a record: it names the first one.

use std::io::{Read, Write};

use crate::jsonl::{oversized_reason, Blocks, Piece};
use crate::record::{Envelope, Record};
use crate::store::{Appended, Log};
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

fn input_error(source: std::io::Error) -> Error {
    Error::Io {
        action: "read",
        path: "export input".into(),
        source,
    }
}

/// Reads a JSONL export line by line as verification entries, in bounded memory. A last line
/// without its newline is marked incomplete, so verification can tell a torn tail from tampering;
/// a line longer than any record is an error naming it, and is never held whole.
pub fn read_jsonl<R: Read>(input: R) -> impl Iterator<Item = Result<Entry, Error>> {
    Blocks::new(input).flat_map(|piece| {
        let entries: Vec<Result<Entry, Error>> = match piece {
            Ok(piece) => piece
                .lines()
                .map(|line| match line.bytes {
                    Ok(bytes) => Ok(Entry {
                        key: None,
                        line: Some(line.number),
                        bytes: bytes.to_vec(),
                        complete: line.complete,
                    }),
                    Err(length) => Err(Error::LineTooLong {
                        line: line.number,
                        length,
                    }),
                })
                .collect(),
            Err(source) => vec![Err(input_error(source))],
        };
        entries
    })
}

/// The entries of a store, keyed by their seq, for verification.
pub fn read_log(log: &dyn Log) -> impl Iterator<Item = Result<Entry, Error>> + '_ {
    log.read(1, u64::MAX).map(|record| {
        record.map(|(seq, bytes)| Entry {
            key: Some(seq),
            line: None,
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
pub fn import<R: Read>(input: R, log: &mut dyn Log) -> Result<u64, Error> {
    const BATCH: usize = 10_000;
    let mut frontier = crate::store::frontier_of(log)?;
    let mut batch: Vec<Appended> = Vec::with_capacity(BATCH);
    let mut imported = 0;
    for entry in read_jsonl(input) {
        let entry = entry?;
        let line = entry.line.unwrap_or_default();
        let seq = Envelope::parse(&entry.bytes)
            .map_err(|error| Error::Unparseable {
                reason: format!("line {line}: {error}"),
            })?
            .seq;
        if !entry.complete {
            return Err(Error::Unparseable {
                reason: format!("line {line}: cut short (no newline at the end of the input)"),
            });
        }
        let tree = frontier.append(crate::tree::leaf_hash(&entry.bytes));
        batch.push(Appended {
            seq,
            bytes: entry.bytes,
            tree,
        });
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

/// A line or stored record that is not a record, found by a pass over a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place} is not a record ({reason})")]
pub struct Undecodable {
    /// Where it stands: `line N` in an export, `record N` in a store.
    pub place: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Undecodable {
    /// The bytes at `place` did not decode: `error` says why (a parse error's reason alone).
    pub fn new(place: String, error: Error) -> Self {
        Self {
            place,
            reason: match error {
                Error::Unparseable { reason } => reason,
                other => other.to_string(),
            },
        }
    }
}

/// What a pass makes of one record.
enum Judged {
    /// `wanted` picked it: decoded.
    Decoded(Box<Record>),
    /// Checked to be a record of a known kind, with this seq, and passed over.
    Passed(u64),
    /// Not a record.
    Undecodable(Undecodable),
}

/// Decodes a record when it was `picked`, else checks it to be a record of a known kind without
/// decoding its data ([`crate::record::check`]), so that a line which is no record at all is
/// never passed over.
fn judge(bytes: &[u8], picked: bool, place: impl Fn() -> String) -> Judged {
    let undecodable = |error: Error| Judged::Undecodable(Undecodable::new(place(), error));
    if picked {
        return match Record::decode(bytes) {
            Ok(record) => Judged::Decoded(Box::new(record)),
            Err(error) => undecodable(error),
        };
    }
    match crate::record::check(bytes) {
        Ok(seq) => Judged::Passed(seq),
        Err(error) => undecodable(error),
    }
}

/// What a pass does with the lines `wanted` does not pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpicked {
    /// Check each to be a record, its seq following the one before: a pass that must not pass
    /// over a line that is no record.
    Checked,
    /// Leave them: a second pass over an export a first pass checked.
    Skipped,
}

/// One piece of an export as a worker judged it: the seqs it runs from and to, the records picked,
/// and the first line that is not a record (the records after it are not kept).
#[derive(Default)]
struct PieceJudgement {
    first: Option<(u64, u64)>,
    numbering: Numbering,
    decoded: Vec<Record>,
    failure: Option<Undecodable>,
}

/// Decodes a JSONL export on worker threads and hands `visit`, in file order, each line that
/// `wanted` picks (by a cheap look at the bytes) as a record. With [`Unpicked::Checked`] the
/// other lines are checked, not decoded, and the first line that is not a record, or whose seq
/// does not follow the line before it, comes as [`Undecodable`], and nothing after it.
///
/// # Errors
/// The input's read errors.
pub fn decode_jsonl<R, W, V>(
    input: R,
    wanted: W,
    unpicked: Unpicked,
    mut visit: V,
) -> Result<(), Error>
where
    R: Read,
    W: Fn(&[u8]) -> bool + Sync,
    V: FnMut(Result<Record, Undecodable>),
{
    let work = |piece: std::io::Result<Piece>| -> Result<PieceJudgement, Error> {
        let piece = piece.map_err(input_error)?;
        let mut judgement = PieceJudgement::default();
        for line in piece.lines() {
            let place = || format!("line {}", line.number);
            let judged = match line.bytes {
                // A torn last line is as undecodable as any other.
                Ok(bytes) => {
                    let picked = wanted(bytes);
                    if !picked && unpicked == Unpicked::Skipped {
                        continue;
                    }
                    judge(bytes, picked, place)
                }
                Err(length) => Judged::Undecodable(Undecodable {
                    place: place(),
                    reason: oversized_reason(length),
                }),
            };
            let (seq, decoded) = match judged {
                Judged::Decoded(record) => (record.seq, Some(*record)),
                Judged::Passed(seq) => (seq, None),
                Judged::Undecodable(undecodable) => {
                    judgement.failure = Some(undecodable);
                    break;
                }
            };
            if unpicked == Unpicked::Checked {
                if let Err(reason) = judgement.numbering.next(seq) {
                    judgement.failure = Some(Undecodable {
                        place: place(),
                        reason,
                    });
                    break;
                }
                judgement.first.get_or_insert((line.number, seq));
            }
            judgement.decoded.extend(decoded);
        }
        Ok(judgement)
    };
    let mut numbering = Numbering::default();
    std::thread::scope(|scope| {
        for judgement in crate::parallel::ordered(scope, Blocks::new(input), &work) {
            let judgement = judgement?;
            // Pieces are judged apart: the first seq of one must follow the last of the one before.
            if let Some((line, seq)) = judgement.first {
                if let Err(reason) = numbering.next(seq) {
                    visit(Err(Undecodable {
                        place: format!("line {line}"),
                        reason,
                    }));
                    return Ok(());
                }
            }
            if let Some(last) = judgement.numbering.last {
                numbering.last = Some(last);
            }
            judgement.decoded.into_iter().map(Ok).for_each(&mut visit);
            if let Some(undecodable) = judgement.failure {
                visit(Err(undecodable));
                return Ok(());
            }
        }
        Ok(())
    })
}

/// Seqs that must follow each other without a gap, from wherever they start.
#[derive(Default)]
struct Numbering {
    last: Option<u64>,
}

impl Numbering {
    fn next(&mut self, seq: u64) -> Result<(), String> {
        match self.last {
            Some(last) if last.checked_add(1) != Some(seq) => Err(format!(
                "seq {seq} follows seq {last}: records are missing, repeated or out of order (run neuron verify)"
            )),
            _ => {
                self.last = Some(seq);
                Ok(())
            }
        }
    }
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
    if from == 0 || from > to {
        return Ok(());
    }
    let ranges = (from..=to)
        .step_by(PARALLEL_CHUNK_SEQS as usize)
        .map(|start| (start, start.saturating_add(PARALLEL_CHUNK_SEQS - 1).min(to)));
    let work = |(start, end): (u64, u64)| -> Result<Vec<T>, Error> {
        let mut items = Vec::new();
        let mut next = start;
        let mut gap = None;
        log.scan(start, end, &mut |seq, bytes| {
            if seq != next {
                gap.get_or_insert(next);
            }
            next = seq + 1;
            pick(seq, bytes, &mut items);
        })?;
        // A damaged store can hold a record and not the ones before it: never pass over a hole.
        match gap.or((next <= end).then_some(next)) {
            Some(missing) => Err(Error::Corrupt {
                reason: format!("record {missing} is missing from the store (run neuron verify)"),
            }),
            None => Ok(items),
        }
    };
    std::thread::scope(|scope| {
        for items in crate::parallel::ordered(scope, ranges, &work) {
            items?.into_iter().for_each(&mut visit);
        }
        Ok(())
    })
}

/// Decodes every record of a store that `wanted` picks (by a cheap look at its bytes), in seq
/// order, reading and decoding on worker threads ([`scan_parallel`]); the others are checked to
/// be records, not decoded. The first that is not a record comes as [`Undecodable`], and nothing
/// after it.
///
/// # Errors
/// The store's read errors; [`Error::Corrupt`] when a record is missing from the store.
pub fn decode_log<W, V>(log: &dyn Log, wanted: W, mut visit: V) -> Result<(), Error>
where
    W: Fn(&[u8]) -> bool + Sync,
    V: FnMut(Result<Record, Undecodable>),
{
    let mut failed = false;
    scan_parallel(
        log,
        |seq, bytes, judged| match judge(bytes, wanted(bytes), || format!("record {seq}")) {
            Judged::Decoded(record) => judged.push(Ok(*record)),
            Judged::Passed(_) => {}
            Judged::Undecodable(undecodable) => judged.push(Err(undecodable)),
        },
        |judged| {
            if !failed {
                failed = judged.is_err();
                visit(judged);
            }
        },
    )
}
