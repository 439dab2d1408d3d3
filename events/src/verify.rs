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

use std::borrow::Cow;
use std::io::Read;
use std::iter::Peekable;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::b64;
use crate::checkpoint::{verify_checkpoint, CheckpointFault};
use crate::event::LogCheckpoint;
use crate::evidence::Acknowledged;
use crate::jsonl::{oversized_reason, Blocks, Piece};
use crate::record::Digest;
use crate::store::{Log, LogHead};
use crate::time::Timestamp;
use crate::Error;

/// One record as a source yields it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The seq the store files it under (the sled key), when the source has one.
    pub key: Option<u64>,
    /// The line it stands on, when the source is an export.
    pub line: Option<u64>,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// False when the source's framing shows the record was cut short (a JSONL line without its
    /// newline at the end of the file).
    pub complete: bool,
}

/// What the investigator trusts beyond the log itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Checkpoints must be signed by this key, and every record covered by one.
    pub trusted_key: Option<VerifyingKey>,
    /// The log must contain this record (seq and hash), as learned from a trusted source.
    pub expected_head: Option<LogHead>,
    /// With a trusted key: accept records after the last trusted checkpoint (a copy of a running
    /// or crashed server's log), naming them in the report.
    pub allow_unsigned_tail: bool,
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

/// Where a head that the log must hold comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// The store's head file: the last record the log acknowledged.
    Acknowledged,
    /// The head a store written before head files recorded inside itself.
    StoreRecord,
    /// The head the investigator trusts (`--expect-head`).
    Trusted,
}

impl Anchor {
    fn says(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::StoreRecord => "recorded by the store",
            Self::Trusted => "named by the trusted head",
        }
    }
}

/// A range of seqs, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    /// The first seq.
    pub first: u64,
    /// The last seq.
    pub last: u64,
}

impl std::fmt::Display for SeqRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "record {}", self.first)
        } else {
            write!(f, "records {}..{}", self.first, self.last)
        }
    }
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
    /// The hash at this seq differs from the anchor's: the record was altered, or records were
    /// removed and others written in their place.
    HeadMismatch {
        /// The anchor's hash.
        expected: Digest,
        /// The chain's hash at this seq.
        found: Digest,
        /// Where the anchor comes from.
        anchor: Anchor,
    },
    /// Records the anchor says exist are absent: the log was truncated or the store lost them.
    Absent {
        /// The records missing.
        range: SeqRange,
        /// Where the anchor comes from.
        anchor: Anchor,
    },
    /// The store holds records but no head file: a lost tail could not be detected.
    NoHeadEvidence,
    /// The store's head file cannot be read as one.
    HeadEvidenceDamaged {
        /// What is wrong with it.
        reason: String,
    },
    /// The store's files are damaged beyond what its own recovery can read back.
    StoreDamaged {
        /// What the store said.
        reason: String,
    },
    /// Records that no checkpoint signed by the trusted key covers.
    UnsignedTail {
        /// The records.
        range: SeqRange,
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
            Self::HeadMismatch {
                expected,
                found,
                anchor,
            } => format!(
                "hash here is {found}, but the record {} under this seq hashes to {expected}",
                anchor.says()
            ),
            Self::Absent { range, anchor } => match anchor {
                Anchor::Trusted => format!(
                    "{range} absent, but the trusted head names seq {}: its tail was removed",
                    range.last
                ),
                Anchor::Acknowledged | Anchor::StoreRecord => {
                    format!("{range} {} but absent: the store lost them", anchor.says())
                }
            },
            Self::NoHeadEvidence => {
                "the store holds records but its head file is missing: a lost tail could not be detected"
                    .into()
            }
            Self::HeadEvidenceDamaged { reason } => format!("the store's head file is damaged ({reason})"),
            Self::StoreDamaged { reason } => {
                format!("the store's files are damaged and cannot be read back ({reason})")
            }
            Self::UnsignedTail { range } => {
                format!("{range} signed by no trusted checkpoint")
            }
        }
    }
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The seq at which the log stops being trustworthy.
    pub seq: u64,
    /// The line it stands on, in an export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The kind of the record at fault, when it could be read.
    pub kind: Option<String>,
    /// What is wrong.
    #[serde(flatten)]
    pub fault: Fault,
}

/// The head a store acknowledged, as verification found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AcknowledgedHead {
    /// The seq the evidence names.
    pub seq: u64,
    /// Where the evidence comes from.
    pub anchor: Anchor,
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
    /// The head the store acknowledged, for a store that keeps that evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<AcknowledgedHead>,
    /// Records after the last trusted checkpoint, accepted because the investigator allowed an
    /// unsigned tail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsigned_tail: Option<SeqRange>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }

    /// The report on a store whose files are too damaged to be opened: nothing could be checked,
    /// and the records its head file acknowledged, if it could be read, are named.
    pub fn of_damaged_store(acknowledged: Option<&Acknowledged>, reason: String) -> Self {
        let acknowledged = match acknowledged {
            Some(Acknowledged::Head(head)) => Some(AcknowledgedHead {
                seq: head.seq,
                anchor: Anchor::Acknowledged,
            }),
            _ => None,
        };
        Self {
            records: 0,
            last_seq: 0,
            head: Digest::GENESIS,
            last_at: None,
            last_checkpoint: None,
            acknowledged,
            unsigned_tail: None,
            problem: Some(Problem {
                seq: 1,
                line: None,
                kind: None,
                fault: Fault::StoreDamaged { reason },
            }),
        }
    }
}

struct Parsed {
    seq: u64,
    at: Timestamp,
    kind: Cow<'static, str>,
    prev: Option<Digest>,
    hash: Digest,
    /// Boxed: rare, and large (entries are moved around in batches of thousands).
    checkpoint: Option<Box<Result<SignedCheckpoint, String>>>,
}

/// A checkpoint's data and whether its signature verified (checked on the worker thread).
type SignedCheckpoint = (LogCheckpoint, Result<VerifyingKey, CheckpointFault>);

/// The parts of a record verification needs, read from its bytes ([`crate::record::parts`]), and
/// its hash; a checkpoint's signature is checked here too, on the worker thread.
fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let parts = crate::record::parts(bytes).map_err(|error| match error {
        Error::Unparseable { reason } => reason,
        other => other.to_string(),
    })?;
    let checkpoint = (parts.kind == "log.checkpoint").then(|| {
        Box::new(
            serde_json::from_slice::<LogCheckpoint>(parts.data)
                .map(|checkpoint| {
                    let signer = verify_checkpoint(&checkpoint);
                    (checkpoint, signer)
                })
                .map_err(|error| format!("bad data for log.checkpoint: {error}")),
        )
    });
    Ok(Parsed {
        seq: parts.seq,
        at: parts.at,
        kind: parts.kind,
        prev: parts.prev,
        hash: Digest::of(bytes),
        checkpoint,
    })
}

/// Where a parsed record stood in its source; its bytes stay with the worker that parsed them.
#[derive(Clone, Copy, Debug)]
struct Position {
    key: Option<u64>,
    line: Option<u64>,
    complete: bool,
    /// A line longer than any record: never a torn tail, whatever its end.
    oversized: bool,
}

type ParsedEntry = (Position, Result<Parsed, String>);

/// Records (or seqs of a store) handed to a parsing worker at once.
const BATCH: usize = 4096;

/// What a parsing worker is handed.
enum Work {
    /// Entries already read: parse and hash them.
    Entries(Vec<Entry>),
    /// A piece of an export: split it into lines, parse and hash them.
    Piece(Piece),
    /// Read the records with seq in this range from the store, then parse and hash them.
    Range(u64, u64),
    /// The source failed to read: the pass ends with this error.
    Failed(Error),
}

fn parse_one(key: Option<u64>, line: Option<u64>, bytes: &[u8], complete: bool) -> ParsedEntry {
    let position = Position {
        key,
        line,
        complete,
        oversized: false,
    };
    (position, parse(bytes))
}

fn perform(work: Work, log: Option<&dyn Log>) -> Result<Vec<ParsedEntry>, Error> {
    match work {
        Work::Entries(entries) => Ok(entries
            .into_iter()
            .map(|entry| parse_one(entry.key, entry.line, &entry.bytes, entry.complete))
            .collect()),
        Work::Piece(piece) => {
            let mut parsed = Vec::with_capacity(piece.line_count());
            parsed.extend(piece.lines().map(|line| match line.bytes {
                Ok(bytes) => parse_one(None, Some(line.number), bytes, line.complete),
                Err(length) => (
                    Position {
                        key: None,
                        line: Some(line.number),
                        complete: line.complete,
                        oversized: true,
                    },
                    Err(oversized_reason(length)),
                ),
            }));
            Ok(parsed)
        }
        Work::Range(from, to) => {
            let mut parsed = Vec::with_capacity(BATCH);
            if let Some(log) = log {
                log.scan(from, to, &mut |seq, bytes| {
                    parsed.push(parse_one(Some(seq), None, bytes, true))
                })?;
            }
            Ok(parsed)
        }
        Work::Failed(error) => Err(error),
    }
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

/// Entries in batches; a read error ends them, after the entries read before it.
fn batches<I>(mut entries: I) -> impl Iterator<Item = Work>
where
    I: Iterator<Item = Result<Entry, Error>>,
{
    let mut failure: Option<Error> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if let Some(error) = failure.take() {
            done = true;
            return Some(Work::Failed(error));
        }
        if done {
            return None;
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            match entries.next() {
                Some(Ok(entry)) => batch.push(entry),
                Some(Err(error)) => {
                    failure = Some(error);
                    break;
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        if batch.is_empty() {
            done = true;
            return failure.take().map(Work::Failed);
        }
        Some(Work::Entries(batch))
    })
}

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

/// What the report said before the last sound record, to take that record back when the next one
/// shows it was altered. The checkpoint part is only kept when that record was itself a
/// checkpoint.
struct Undo {
    head: Digest,
    at: Option<Timestamp>,
    checkpoint: Option<Option<CheckpointSummary>>,
}

/// The chain checked record by record: each step either accepts the record or names the problem.
struct Checker<'a> {
    options: &'a VerifyOptions,
    /// Heads the log must hold, with the hash found at each one's seq once it is passed.
    anchors: Vec<(LogHead, Anchor, Option<Digest>)>,
    report: Report,
    last_kind: Option<Cow<'static, str>>,
    undo: Option<Undo>,
}

/// The entry after the one being checked: none at the end of the log.
type Following<'a> = Option<&'a Result<ParsedEntry, Error>>;

fn following_parsed<'a>(following: Following<'a>) -> Option<Option<&'a Parsed>> {
    following.map(|entry| match entry {
        Ok((_, Ok(parsed))) => Some(parsed),
        _ => None,
    })
}

fn problem_at(seq: u64, kind: Option<Cow<'static, str>>, fault: Fault) -> Problem {
    Problem {
        seq,
        line: None,
        kind: kind.map(Cow::into_owned),
        fault,
    }
}

impl<'a> Checker<'a> {
    fn new(acknowledged: &Acknowledged, options: &'a VerifyOptions) -> Self {
        let mut anchors = Vec::new();
        let acknowledged_head = match acknowledged {
            Acknowledged::Head(head) => Some((*head, Anchor::Acknowledged)),
            Acknowledged::Legacy(head) => Some((*head, Anchor::StoreRecord)),
            _ => None,
        };
        anchors.extend(acknowledged_head.map(|(head, anchor)| (head, anchor, None)));
        anchors.extend(
            options
                .expected_head
                .map(|head| (head, Anchor::Trusted, None)),
        );
        Self {
            options,
            anchors,
            report: Report {
                records: 0,
                last_seq: 0,
                head: Digest::GENESIS,
                last_at: None,
                last_checkpoint: None,
                acknowledged: acknowledged_head.map(|(head, anchor)| AcknowledgedHead {
                    seq: head.seq,
                    anchor,
                }),
                unsigned_tail: None,
                problem: None,
            },
            last_kind: None,
            undo: None,
        }
    }

    /// Checks one entry; `following` is the next one, when there is one.
    fn step(&mut self, entry: ParsedEntry, following: Following<'_>) -> Result<(), Problem> {
        let (position, parsed) = entry;
        let expected = self.report.last_seq + 1;
        let at_line = |mut problem: Problem| {
            problem.line = position.line;
            problem
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                let fault = if following.is_none() && !position.complete && !position.oversized {
                    Fault::TornTail
                } else {
                    Fault::Unparseable { reason }
                };
                return Err(at_line(problem_at(
                    position.key.unwrap_or(expected),
                    None,
                    fault,
                )));
            }
        };
        let kind = Some(parsed.kind.clone());
        if let Some(key) = position.key {
            if key != parsed.seq {
                let fault = Fault::KeyMismatch { found: parsed.seq };
                return Err(problem_at(key, kind, fault));
            }
        }
        if parsed.seq != expected {
            return Err(at_line(self.misnumbered(&parsed, kind, following)));
        }
        if parsed.prev != Some(self.report.head) {
            return Err(at_line(self.unlinked(&parsed, kind, following, position)));
        }
        let previous_checkpoint = parsed
            .checkpoint
            .is_some()
            .then(|| self.report.last_checkpoint.clone());
        if let Some(checkpoint) = &parsed.checkpoint {
            self.checkpoint(&parsed, checkpoint)
                .map_err(|fault| at_line(problem_at(parsed.seq, kind.clone(), fault)))?;
        }
        for (anchor, _, found) in &mut self.anchors {
            if anchor.seq == parsed.seq {
                *found = Some(parsed.hash);
            }
        }
        self.undo = Some(Undo {
            head: self.report.head,
            at: self.report.last_at.take(),
            checkpoint: previous_checkpoint,
        });
        self.report.records += 1;
        self.report.last_seq = parsed.seq;
        self.report.head = parsed.hash;
        self.report.last_at = Some(parsed.at);
        self.last_kind = kind;
        Ok(())
    }

    /// A record whose seq is not the next one: which numbering fault it is.
    fn misnumbered(
        &self,
        parsed: &Parsed,
        kind: Option<Cow<'static, str>>,
        following: Following<'_>,
    ) -> Problem {
        let expected = self.report.last_seq + 1;
        if parsed.prev == Some(self.report.head) {
            // It chains onto the record before it, so it stands where it belongs: only its seq
            // field was changed.
            return problem_at(expected, kind, Fault::WrongSeq { found: parsed.seq });
        }
        if parsed.seq + 1 == expected {
            return problem_at(parsed.seq, kind, Fault::DuplicateSeq);
        }
        let expected_follows = matches!(
            following_parsed(following),
            Some(Some(next)) if next.seq == expected
        );
        let fault = if parsed.seq > expected && !expected_follows {
            Fault::SeqGap { found: parsed.seq }
        } else {
            Fault::SeqOutOfOrder { found: parsed.seq }
        };
        problem_at(expected, kind, fault)
    }

    /// A record whose `prev` is not the head before it. Either its link was altered, or the record
    /// before it was: the next record (or an anchor, at the end) tells which. If the next one still
    /// links to this one, this one is intact and its predecessor changed.
    fn unlinked(
        &mut self,
        parsed: &Parsed,
        kind: Option<Cow<'static, str>>,
        following: Following<'_>,
        position: Position,
    ) -> Problem {
        let successor_links_here = match following_parsed(following) {
            Some(Some(next)) => next.prev == Some(parsed.hash),
            Some(None) => false,
            None => self
                .anchors
                .iter()
                .any(|(anchor, ..)| anchor.seq == parsed.seq && anchor.hash == parsed.hash),
        };
        match (successor_links_here, self.undo.take()) {
            (true, Some(undo)) => {
                let altered = self.report.last_seq;
                self.report.records -= 1;
                self.report.last_seq -= 1;
                self.report.head = undo.head;
                self.report.last_at = undo.at;
                if let Some(checkpoint) = undo.checkpoint {
                    self.report.last_checkpoint = checkpoint;
                }
                // The altered record stood one line above this one.
                let mut problem = problem_at(altered, self.last_kind.take(), Fault::HashMismatch);
                problem.line = position.line.map(|line| line.saturating_sub(1));
                problem
            }
            _ => {
                let mut problem = problem_at(parsed.seq, kind, Fault::BrokenLink);
                problem.line = position.line;
                problem
            }
        }
    }

    /// A checkpoint must sign the head just before it, with a valid signature by the trusted key.
    fn checkpoint(
        &mut self,
        parsed: &Parsed,
        checkpoint: &Result<SignedCheckpoint, String>,
    ) -> Result<(), Fault> {
        let (checkpoint, signer) = checkpoint.as_ref().map_err(|reason| Fault::Unparseable {
            reason: reason.clone(),
        })?;
        if checkpoint.upto != self.report.last_seq || checkpoint.head != self.report.head.to_hex() {
            return Err(Fault::CheckpointHeadMismatch);
        }
        let signer = signer.as_ref().map_err(|fault| match fault {
            CheckpointFault::BadKey | CheckpointFault::BadSignature => {
                Fault::BadCheckpointSignature
            }
        })?;
        if let Some(trusted) = self.options.trusted_key {
            if trusted != *signer {
                let signer = b64::encode(signer.as_bytes());
                return Err(Fault::UntrustedSigner { signer });
            }
        }
        self.report.last_checkpoint = Some(CheckpointSummary {
            seq: parsed.seq,
            upto: checkpoint.upto,
            signer: checkpoint.key.clone(),
        });
        Ok(())
    }

    /// After the last record: the anchors, the evidence itself, and trusted coverage.
    fn finish(&mut self, acknowledged: &Acknowledged) -> Result<(), Problem> {
        let last = self.report.last_seq;
        for (anchor, source, found) in &self.anchors {
            if anchor.seq == 0 {
                continue;
            }
            match found {
                None => {
                    let range = SeqRange {
                        first: last + 1,
                        last: anchor.seq,
                    };
                    let fault = Fault::Absent {
                        range,
                        anchor: *source,
                    };
                    return Err(problem_at(last + 1, None, fault));
                }
                Some(found) if *found != anchor.hash => {
                    let fault = Fault::HeadMismatch {
                        expected: anchor.hash,
                        found: *found,
                        anchor: *source,
                    };
                    let kind = (anchor.seq == last)
                        .then(|| self.last_kind.clone())
                        .flatten();
                    return Err(problem_at(anchor.seq, kind, fault));
                }
                Some(_) => {}
            }
        }
        match acknowledged {
            Acknowledged::Missing => {
                return Err(problem_at(last + 1, None, Fault::NoHeadEvidence));
            }
            Acknowledged::Damaged { reason } => {
                let fault = Fault::HeadEvidenceDamaged {
                    reason: reason.clone(),
                };
                return Err(problem_at(last + 1, None, fault));
            }
            Acknowledged::Head(_) | Acknowledged::Legacy(_) | Acknowledged::NotKept => {}
        }
        if self.options.trusted_key.is_some() {
            let covered = self.report.last_checkpoint.as_ref().map_or(0, |c| c.seq);
            if covered < last {
                let range = SeqRange {
                    first: covered + 1,
                    last,
                };
                // An unsigned tail may be accepted; a log that no trusted checkpoint signs at all
                // proves nothing about who wrote it.
                if covered == 0 || !self.options.allow_unsigned_tail {
                    return Err(problem_at(covered + 1, None, Fault::UnsignedTail { range }));
                }
                self.report.unsigned_tail = Some(range);
            }
        }
        Ok(())
    }
}

fn check<I>(
    source: I,
    acknowledged: &Acknowledged,
    options: &VerifyOptions,
) -> Result<Report, Error>
where
    I: Iterator<Item = Result<ParsedEntry, Error>>,
{
    let mut source: Peekable<I> = source.peekable();
    let mut checker = Checker::new(acknowledged, options);
    while let Some(entry) = source.next() {
        let entry = entry?;
        if let Err(problem) = checker.step(entry, source.peek()) {
            checker.report.problem = Some(problem);
            return Ok(checker.report);
        }
    }
    if let Err(problem) = checker.finish(acknowledged) {
        checker.report.problem = Some(problem);
    }
    Ok(checker.report)
}
