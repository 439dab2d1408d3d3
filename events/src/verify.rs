//! Chain verification over any sequence of stored records: a sled log or a JSONL export. It hashes
//! the stored bytes (never a re-serialisation), follows every `prev` link, checks numbering, checks
//! each checkpoint's head and signature, and names the first problem with its seq.
//!
//! What it can prove: the hash chain shows that nothing was altered, inserted, removed or reordered
//! before the last record; a checkpoint signed by a trusted key shows who wrote the log up to it. A
//! change to the very last record or a removed tail shows only against an anchor: the head a sled
//! store records with each batch, or a head the investigator trusts (for example from the admin
//! API).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc;
use std::thread;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::b64;
use crate::checkpoint::{verify_checkpoint, CheckpointFault};
use crate::event::{EventData, LogCheckpoint};
use crate::record::{Digest, Envelope};
use crate::store::{Log, LogHead};
use crate::time::Timestamp;
use crate::Error;

/// One record as a source yields it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The seq the store files it under (the sled key), when the source has one.
    pub key: Option<u64>,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// False when the source's framing shows the record was cut short (a JSONL line without its
    /// newline at the end of the file).
    pub complete: bool,
}

/// What the investigator trusts beyond the log itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Checkpoints must be signed by this key.
    pub trusted_key: Option<VerifyingKey>,
    /// The log must contain this record (seq and hash), as learned from a trusted source.
    pub expected_head: Option<LogHead>,
}

/// The last checkpoint whose signature and head held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    /// The checkpoint record's own seq.
    pub seq: u64,
    /// The last seq it covers.
    pub upto: u64,
    /// The signer's public key, base64url.
    pub signer: String,
}

/// What is wrong with a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The bytes are not a record.
    Unparseable {
        /// What the parser said.
        reason: String,
    },
    /// The last record was cut short, as by a crash mid-write (not tampering in the middle).
    TornTail,
    /// The record's bytes no longer hash to what the next record's `prev` committed to: it was
    /// altered after it was chained.
    HashMismatch,
    /// The record's `prev` does not match the hash of the record before it: its link was altered,
    /// or the record does not belong here.
    BrokenLink,
    /// The record with this seq is missing; the next one present has `found`.
    SeqGap {
        /// The seq found where this one was expected.
        found: u64,
    },
    /// A record stands out of order: `found` where this seq was expected.
    SeqOutOfOrder {
        /// The seq found instead.
        found: u64,
    },
    /// The record links to the one before it but carries another seq: its seq field was altered.
    WrongSeq {
        /// The seq it carries.
        found: u64,
    },
    /// Two records carry this seq: one was inserted or duplicated.
    DuplicateSeq,
    /// A sled record filed under a key other than its seq.
    KeyMismatch {
        /// The record's own seq.
        found: u64,
    },
    /// A checkpoint whose signature or key does not verify.
    BadCheckpointSignature,
    /// A checkpoint whose `upto`/`head` is not the chain head just before it.
    CheckpointHeadMismatch,
    /// A checkpoint validly signed, but not by the trusted key.
    UntrustedSigner {
        /// The key that signed it, base64url.
        signer: String,
    },
    /// The hash at this seq differs from the anchor's (the store's recorded head or the trusted
    /// head): the record was altered, or records after it were removed or added.
    HeadMismatch {
        /// The anchor's hash.
        expected: Digest,
        /// The chain's hash at this seq.
        found: Digest,
    },
    /// The log ends before this seq, which the anchor says exists: its tail was removed.
    Truncated {
        /// The last seq present.
        last_present: u64,
    },
}

impl Fault {
    /// A sentence for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Unparseable { reason } => format!("not a record: {reason}"),
            Self::TornTail => {
                "last record is cut short (torn write at the tail, not tampering in the middle)"
                    .into()
            }
            Self::HashMismatch => {
                "record was altered: its bytes no longer hash to what the next record committed to"
                    .into()
            }
            Self::BrokenLink => "prev does not match the hash of the record before it".into(),
            Self::SeqGap { found } => format!("record missing: found seq {found} in its place"),
            Self::SeqOutOfOrder { found } => {
                format!("records out of order: found seq {found} in its place")
            }
            Self::WrongSeq { found } => {
                format!("record chains here but its seq field says {found}")
            }
            Self::DuplicateSeq => "seq appears twice: a record was inserted or duplicated".into(),
            Self::KeyMismatch { found } => format!("filed under this seq but holds seq {found}"),
            Self::BadCheckpointSignature => "checkpoint signature does not verify".into(),
            Self::CheckpointHeadMismatch => {
                "checkpoint does not sign the chain head just before it".into()
            }
            Self::UntrustedSigner { signer } => {
                format!("checkpoint signed by {signer}, not by the trusted key")
            }
            Self::HeadMismatch { expected, found } => {
                format!("hash here is {found}, the anchor says {expected}")
            }
            Self::Truncated { last_present } => {
                format!("log ends at seq {last_present}: its tail was removed")
            }
        }
    }
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The seq at which the log stops being trustworthy.
    pub seq: u64,
    /// The kind of the record at fault, when it could be read.
    pub kind: Option<String>,
    /// What is wrong.
    #[serde(flatten)]
    pub fault: Fault,
}

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records checked and found sound, before any problem.
    pub records: u64,
    /// The last sound seq.
    pub last_seq: u64,
    /// The chain head after the last sound record.
    pub head: Digest,
    /// The time of the last sound record.
    pub last_at: Option<Timestamp>,
    /// The last checkpoint that verified.
    pub last_checkpoint: Option<CheckpointSummary>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

fn problem(seq: u64, kind: Option<Cow<'static, str>>, fault: Fault) -> Option<Problem> {
    Some(Problem {
        seq,
        kind: kind.map(Cow::into_owned),
        fault,
    })
}

struct Parsed {
    seq: u64,
    at: Timestamp,
    kind: Cow<'static, str>,
    prev: Option<Digest>,
    hash: Digest,
    checkpoint: Option<Result<SignedCheckpoint, String>>,
}

/// A checkpoint's data and whether its signature verified (checked on the worker thread).
type SignedCheckpoint = (LogCheckpoint, Result<VerifyingKey, CheckpointFault>);

/// The parts of a record verification needs, read from its bytes: first by the fast path for the
/// canonical layout the writer produces, else by the general parser (which also explains what is
/// wrong).
fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let (seq, at, kind, prev, data) = match canonical_parts(bytes) {
        Some((seq, at, kind, prev, data)) => (seq, at, Cow::Borrowed(kind), Some(prev), data),
        None => {
            let envelope = Envelope::parse(bytes).map_err(|error| error.to_string())?;
            let at = Timestamp::parse_rfc3339(&envelope.at).map_err(|error| error.to_string())?;
            let kind = match EventData::KINDS
                .iter()
                .find(|known| **known == envelope.kind)
            {
                Some(known) => Cow::Borrowed(*known),
                None => Cow::Owned(envelope.kind.clone().into_owned()),
            };
            let prev = Digest::from_hex(&envelope.prev).ok();
            (envelope.seq, at, kind, prev, envelope.data.get().as_bytes())
        }
    };
    let checkpoint = (kind == "log.checkpoint").then(|| {
        serde_json::from_slice::<LogCheckpoint>(data)
            .map(|checkpoint| {
                let signer = verify_checkpoint(&checkpoint);
                (checkpoint, signer)
            })
            .map_err(|error| format!("bad data for log.checkpoint: {error}"))
    });
    Ok(Parsed {
        seq,
        at,
        kind,
        prev,
        hash: Digest::of(bytes),
        checkpoint,
    })
}

/// Reads a record laid out exactly as the writer lays it out:
/// `{"seq":N,"at":"<24>","kind":"<known>"[,"session":"…"],"data":<one JSON value>,"prev":"<64 hex>"}`.
/// Anything else returns `None` and goes to the general parser. Inside valid JSON, the byte
/// sequences searched for here cannot occur within a string (a raw `"` there is always escaped),
/// so the positions found are the top-level ones.
fn canonical_parts(bytes: &[u8]) -> Option<(u64, Timestamp, &'static str, Digest, &[u8])> {
    const PREV: &[u8] = b",\"prev\":\"";
    let rest = bytes.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().position(|byte| !byte.is_ascii_digit())?;
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq = std::str::from_utf8(&rest[..digits])
        .ok()?
        .parse::<u64>()
        .ok()?;
    let rest = rest[digits..].strip_prefix(b",\"at\":\"")?;
    let at = Timestamp::parse_rfc3339_bytes(rest.get(..24)?).ok()?;
    let rest = rest[24..].strip_prefix(b"\",\"kind\":\"")?;
    let kind_end = rest.iter().position(|byte| *byte == b'"')?;
    let kind = *EventData::KINDS
        .iter()
        .find(|known| known.as_bytes() == &rest[..kind_end])?;
    let mut rest = &rest[kind_end + 1..];
    if let Some(after) = rest.strip_prefix(b",\"session\":") {
        let end = find(after, b",\"data\":")?;
        serde_json::from_slice::<&serde_json::value::RawValue>(&after[..end]).ok()?;
        if after.first() != Some(&b'"') {
            return None;
        }
        rest = &after[end..];
    }
    let rest = rest.strip_prefix(b",\"data\":")?;
    let suffix_start = rest.len().checked_sub(PREV.len() + 66)?;
    let (data, suffix) = rest.split_at(suffix_start);
    let hex = suffix.strip_prefix(PREV)?.strip_suffix(b"\"}")?;
    let prev = Digest::from_hex_bytes(hex).ok()?;
    serde_json::from_slice::<serde::de::IgnoredAny>(data).ok()?;
    if !data.starts_with(b"{") {
        return None;
    }
    Some((seq, at, kind, prev, data))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Where a parsed record stood in its source; its bytes stay with the worker that parsed them.
#[derive(Clone, Copy, Debug)]
struct Position {
    key: Option<u64>,
    complete: bool,
}

type ParsedEntry = (Position, Result<Parsed, String>);

/// Records in a batch handed to a parsing worker.
const BATCH: usize = 4096;

/// Bytes of JSONL handed to a parsing worker at once.
const BLOCK: usize = 1 << 20;

/// What a parsing worker is handed.
enum Work {
    /// Entries already read: parse and hash them.
    Entries(Vec<Entry>),
    /// Whole JSONL lines; the last one lacks its newline when `complete` is false.
    Lines { block: Vec<u8>, complete: bool },
    /// Read the records with seq in this range from the store, then parse and hash them.
    Range(u64, u64),
}

/// Where the entries come from.
enum Feeder<I, R> {
    /// An iterator read on the calling thread.
    Iter(I),
    /// A JSONL stream read in large blocks on the calling thread and split into lines by the
    /// workers, so that no line is copied or allocated on its own.
    Reader { input: R, carry: Vec<u8> },
    /// A store that the workers read in seq ranges, so that reading is spread over cores too.
    Ranges { next: u64, last: u64 },
}

/// Entries parsed and hashed on worker threads, handed back in their original order.
struct ParsedStream<I, R> {
    feeder: Feeder<I, R>,
    #[allow(clippy::type_complexity)]
    workers: Vec<(
        mpsc::SyncSender<Work>,
        mpsc::Receiver<Result<Vec<ParsedEntry>, Error>>,
    )>,
    in_flight: VecDeque<usize>,
    next_worker: usize,
    current: std::vec::IntoIter<ParsedEntry>,
    exhausted: bool,
    read_error: Option<Error>,
}

fn parse_one(key: Option<u64>, bytes: &[u8], complete: bool) -> ParsedEntry {
    (Position { key, complete }, parse(bytes))
}

fn perform(work: Work, log: Option<&dyn Log>) -> Result<Vec<ParsedEntry>, Error> {
    match work {
        Work::Entries(entries) => Ok(entries
            .into_iter()
            .map(|entry| parse_one(entry.key, &entry.bytes, entry.complete))
            .collect()),
        Work::Lines { block, complete } => {
            let body = block.strip_suffix(b"\n").unwrap_or(&block);
            let mut parsed = Vec::with_capacity(BATCH);
            let mut start = 0;
            for newline in memchr::memchr_iter(b'\n', body) {
                parsed.push(parse_one(None, &body[start..newline], true));
                start = newline + 1;
            }
            parsed.push(parse_one(None, &body[start..], complete));
            Ok(parsed)
        }
        Work::Range(from, to) => {
            let mut parsed = Vec::with_capacity(BATCH);
            if let Some(log) = log {
                log.scan(from, to, &mut |seq, bytes| {
                    parsed.push(parse_one(Some(seq), bytes, true))
                })?;
            }
            Ok(parsed)
        }
    }
}

impl<I, R> ParsedStream<I, R>
where
    I: Iterator<Item = Result<Entry, Error>>,
    R: Read,
{
    fn start<'scope>(
        feeder: Feeder<I, R>,
        log: Option<&'scope dyn Log>,
        scope: &'scope thread::Scope<'scope, '_>,
    ) -> Self {
        let count = thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 4);
        let workers = (0..count)
            .map(|_| {
                let (to_worker, work) = mpsc::sync_channel::<Work>(2);
                let (to_caller, results) = mpsc::sync_channel(2);
                scope.spawn(move || {
                    for work in work {
                        if to_caller.send(perform(work, log)).is_err() {
                            break;
                        }
                    }
                });
                (to_worker, results)
            })
            .collect();
        Self {
            feeder,
            workers,
            in_flight: VecDeque::new(),
            next_worker: 0,
            current: Vec::new().into_iter(),
            exhausted: false,
            read_error: None,
        }
    }

    fn next_work(&mut self) -> Option<Work> {
        match &mut self.feeder {
            Feeder::Ranges { next, last } => {
                if *next > *last {
                    self.exhausted = true;
                    return None;
                }
                let from = *next;
                let to = from.saturating_add(BATCH as u64 - 1).min(*last);
                *next = to.saturating_add(1);
                if to == u64::MAX {
                    self.exhausted = true;
                }
                Some(Work::Range(from, to))
            }
            Feeder::Reader { input, carry } => {
                let mut block = std::mem::take(carry);
                let start = block.len();
                block.resize(start + BLOCK, 0);
                let mut filled = start;
                // Fill the block, or reach the end of the input.
                let at_end = loop {
                    match input.read(&mut block[filled..]) {
                        Ok(0) => break true,
                        Ok(read) => {
                            filled += read;
                            if filled == block.len() {
                                break false;
                            }
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            self.read_error = Some(Error::Io {
                                action: "read",
                                path: "export input".into(),
                                source,
                            });
                            self.exhausted = true;
                            return None;
                        }
                    }
                };
                block.truncate(filled);
                if at_end {
                    self.exhausted = true;
                    let complete = block.last() == Some(&b'\n');
                    return (!block.is_empty()).then_some(Work::Lines { block, complete });
                }
                match block.iter().rposition(|byte| *byte == b'\n') {
                    Some(newline) => {
                        *carry = block.split_off(newline + 1);
                        Some(Work::Lines {
                            block,
                            complete: true,
                        })
                    }
                    // A line longer than a block: keep reading until it ends.
                    None => {
                        *carry = block;
                        self.next_work()
                    }
                }
            }
            Feeder::Iter(source) => {
                let mut batch = Vec::with_capacity(BATCH);
                while batch.len() < BATCH {
                    match source.next() {
                        Some(Ok(entry)) => batch.push(entry),
                        Some(Err(error)) => {
                            self.read_error = Some(error);
                            self.exhausted = true;
                            break;
                        }
                        None => {
                            self.exhausted = true;
                            break;
                        }
                    }
                }
                (!batch.is_empty()).then_some(Work::Entries(batch))
            }
        }
    }

    fn fill(&mut self) {
        while !self.exhausted && self.in_flight.len() < self.workers.len() * 2 {
            let Some(work) = self.next_work() else {
                break;
            };
            let worker = self.next_worker;
            self.next_worker = (worker + 1) % self.workers.len();
            if self.workers[worker].0.send(work).is_err() {
                self.exhausted = true;
                break;
            }
            self.in_flight.push_back(worker);
        }
    }
}

impl<I, R> Iterator for ParsedStream<I, R>
where
    I: Iterator<Item = Result<Entry, Error>>,
    R: Read,
{
    type Item = Result<ParsedEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(parsed) = self.current.next() {
                return Some(Ok(parsed));
            }
            self.fill();
            let Some(worker) = self.in_flight.pop_front() else {
                return self.read_error.take().map(Err);
            };
            match self.workers[worker].1.recv() {
                Ok(Ok(batch)) => self.current = batch.into_iter(),
                Ok(Err(error)) => {
                    self.exhausted = true;
                    self.in_flight.clear();
                    return Some(Err(error));
                }
                Err(_) => return self.read_error.take().map(Err),
            }
        }
    }
}

type NoEntries = std::iter::Empty<Result<Entry, Error>>;

/// Verifies a sequence of stored records from any source. Parsing and hashing run on as many
/// threads as there are cores (up to four); the chain is checked in order on the calling thread.
///
/// `recorded_head` is the head the store itself recorded, checked exactly; the options'
/// `expected_head` may be any seq the log must contain.
///
/// # Errors
/// Only the source's own read errors: everything wrong with the records is in the [`Report`].
pub fn verify<I>(
    entries: I,
    recorded_head: Option<LogHead>,
    options: &VerifyOptions,
) -> Result<Report, Error>
where
    I: IntoIterator<Item = Result<Entry, Error>>,
{
    thread::scope(|scope| {
        let feeder: Feeder<_, std::io::Empty> = Feeder::Iter(entries.into_iter());
        check(
            ParsedStream::start(feeder, None, scope),
            recorded_head,
            options,
        )
    })
}

/// Verifies a JSONL export as it streams in: read in large blocks, split and parsed on worker
/// threads. A last line without its newline is judged as possibly torn.
///
/// # Errors
/// The input's read errors.
pub fn verify_jsonl<R: Read>(input: R, options: &VerifyOptions) -> Result<Report, Error> {
    thread::scope(|scope| {
        let feeder: Feeder<NoEntries, R> = Feeder::Reader {
            input,
            carry: Vec::new(),
        };
        check(ParsedStream::start(feeder, None, scope), None, options)
    })
}

/// Verifies a store in place, against the head it recorded. Worker threads read it in seq ranges,
/// so reading as well as hashing is spread over the cores.
///
/// # Errors
/// The store's read errors.
pub fn verify_log(log: &dyn Log, options: &VerifyOptions) -> Result<Report, Error> {
    let recorded_head = log.recorded_head()?;
    let last = log.last_key()?;
    thread::scope(|scope| {
        let feeder: Feeder<NoEntries, std::io::Empty> = Feeder::Ranges { next: 1, last };
        check(
            ParsedStream::start(feeder, Some(log), scope),
            recorded_head,
            options,
        )
    })
}

fn check<I>(
    mut source: I,
    recorded_head: Option<LogHead>,
    options: &VerifyOptions,
) -> Result<Report, Error>
where
    I: Iterator<Item = Result<ParsedEntry, Error>>,
{
    let mut lookahead: Option<ParsedEntry> = None;
    let mut next = |peek_only: bool, lookahead: &mut Option<ParsedEntry>| -> Result<bool, Error> {
        if lookahead.is_none() {
            if let Some(parsed) = source.next() {
                *lookahead = Some(parsed?);
            }
        }
        Ok(peek_only && lookahead.is_some())
    };

    let mut report = Report {
        records: 0,
        last_seq: 0,
        head: Digest::GENESIS,
        last_at: None,
        last_checkpoint: None,
        problem: None,
    };
    let mut last_kind: Option<Cow<'static, str>> = None;
    // What the report said before the last sound record, to take that record back when the next
    // one shows it was altered.
    // The checkpoint part is only kept when that record was itself a checkpoint.
    #[allow(clippy::type_complexity)]
    let mut before_last: Option<(
        Digest,
        Option<Timestamp>,
        Option<Option<CheckpointSummary>>,
    )> = None;
    let mut expected_hash_at_anchor: Option<Digest> = None;
    let anchor_seq = options.expected_head.map(|head| head.seq);

    loop {
        next(false, &mut lookahead)?;
        let Some((entry, parsed)) = lookahead.take() else {
            break;
        };
        let expected = report.last_seq + 1;
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                let at_end = !next(true, &mut lookahead)?;
                let fault = if at_end && !entry.complete {
                    Fault::TornTail
                } else {
                    Fault::Unparseable { reason }
                };
                report.problem = problem(entry.key.unwrap_or(expected), None, fault);
                return Ok(report);
            }
        };
        let kind = Some(parsed.kind.clone());
        if let Some(key) = entry.key {
            if key != parsed.seq {
                report.problem = problem(key, kind, Fault::KeyMismatch { found: parsed.seq });
                return Ok(report);
            }
        }
        if parsed.seq != expected {
            let fault = if parsed.prev == Some(report.head) {
                // It chains onto the record before it, so it stands where it belongs: only its seq
                // field was changed.
                Fault::WrongSeq { found: parsed.seq }
            } else if parsed.seq + 1 == expected {
                report.problem = problem(parsed.seq, kind, Fault::DuplicateSeq);
                return Ok(report);
            } else if parsed.seq > expected {
                next(true, &mut lookahead)?;
                let expected_follows =
                    matches!(&lookahead, Some((_, Ok(following))) if following.seq == expected);
                if expected_follows {
                    Fault::SeqOutOfOrder { found: parsed.seq }
                } else {
                    Fault::SeqGap { found: parsed.seq }
                }
            } else {
                Fault::SeqOutOfOrder { found: parsed.seq }
            };
            report.problem = problem(expected, kind, fault);
            return Ok(report);
        }
        if parsed.prev != Some(report.head) {
            // Either this record's link was altered, or the record before it was. The next record
            // (or the anchor, at the end) tells which: if it still links to this one, this one is
            // intact and its predecessor changed.
            next(true, &mut lookahead)?;
            let successor_links_here = match &lookahead {
                Some((_, Ok(following))) => following.prev == Some(parsed.hash),
                Some((_, Err(_))) => false,
                None => [recorded_head, options.expected_head]
                    .into_iter()
                    .flatten()
                    .any(|anchor| anchor.seq == parsed.seq && anchor.hash == parsed.hash),
            };
            if let (true, Some((head, at, checkpoint))) = (successor_links_here, before_last.take())
            {
                let altered = report.last_seq;
                report.records -= 1;
                report.last_seq -= 1;
                report.head = head;
                report.last_at = at;
                if let Some(checkpoint) = checkpoint {
                    report.last_checkpoint = checkpoint;
                }
                report.problem = problem(altered, last_kind, Fault::HashMismatch);
            } else {
                report.problem = problem(parsed.seq, kind, Fault::BrokenLink);
            }
            return Ok(report);
        }
        let previous_checkpoint = parsed
            .checkpoint
            .is_some()
            .then(|| report.last_checkpoint.clone());
        if let Some(checkpoint) = &parsed.checkpoint {
            let (checkpoint, signer) = match checkpoint {
                Ok((checkpoint, signer)) => (checkpoint, signer),
                Err(reason) => {
                    report.problem = problem(
                        parsed.seq,
                        kind,
                        Fault::Unparseable {
                            reason: reason.clone(),
                        },
                    );
                    return Ok(report);
                }
            };
            if checkpoint.upto != report.last_seq || checkpoint.head != report.head.to_hex() {
                report.problem = problem(parsed.seq, kind, Fault::CheckpointHeadMismatch);
                return Ok(report);
            }
            let signer = match signer {
                Ok(signer) => signer,
                Err(CheckpointFault::BadKey | CheckpointFault::BadSignature) => {
                    report.problem = problem(parsed.seq, kind, Fault::BadCheckpointSignature);
                    return Ok(report);
                }
            };
            if let Some(trusted) = options.trusted_key {
                if trusted != *signer {
                    let signer = b64::encode(signer.as_bytes());
                    report.problem = problem(parsed.seq, kind, Fault::UntrustedSigner { signer });
                    return Ok(report);
                }
            }
            report.last_checkpoint = Some(CheckpointSummary {
                seq: parsed.seq,
                upto: checkpoint.upto,
                signer: checkpoint.key.clone(),
            });
        }
        if anchor_seq == Some(parsed.seq) {
            expected_hash_at_anchor = Some(parsed.hash);
        }
        before_last = Some((report.head, report.last_at.take(), previous_checkpoint));
        report.records += 1;
        report.last_seq = parsed.seq;
        report.head = parsed.hash;
        report.last_at = Some(parsed.at);
        last_kind = kind;
    }

    if let Some(recorded) = recorded_head {
        if recorded.seq > report.last_seq {
            report.problem = problem(
                report.last_seq + 1,
                None,
                Fault::Truncated {
                    last_present: report.last_seq,
                },
            );
        } else if recorded.seq < report.last_seq {
            report.problem = problem(
                recorded.seq + 1,
                None,
                Fault::HeadMismatch {
                    expected: recorded.hash,
                    found: report.head,
                },
            );
        } else if recorded.hash != report.head {
            let kind = last_kind.clone();
            report.problem = problem(
                recorded.seq,
                kind,
                Fault::HeadMismatch {
                    expected: recorded.hash,
                    found: report.head,
                },
            );
        }
        if report.problem.is_some() {
            return Ok(report);
        }
    }
    if let Some(anchor) = options.expected_head {
        match expected_hash_at_anchor {
            None => {
                report.problem = problem(
                    report.last_seq + 1,
                    None,
                    Fault::Truncated {
                        last_present: report.last_seq,
                    },
                )
            }
            Some(found) if found != anchor.hash => {
                report.problem = problem(
                    anchor.seq,
                    None,
                    Fault::HeadMismatch {
                        expected: anchor.hash,
                        found,
                    },
                );
            }
            Some(_) => {}
        }
    }
    Ok(report)
}
