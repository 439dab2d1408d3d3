//! Chain verification over any sequence of stored records: a sled log or a JSONL export. It hashes
//! the stored bytes (never a re-serialisation), follows every `prev` link, checks numbering, checks
//! each checkpoint's head and signature, and names the first problem with its seq.
//!
//! What it can prove: the hash chain shows that nothing was altered, inserted, removed or reordered
//! before the last record; a checkpoint signed by a trusted key shows who wrote the log up to it. A
//! change to the very last record or a removed tail shows only against an anchor: the head a sled
//! store records with each batch, or a head the investigator trusts (for example from the admin
//! API).

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::b64;
use crate::checkpoint::{verify_checkpoint, CheckpointFault};
use crate::event::LogCheckpoint;
use crate::record::{Digest, Envelope};
use crate::store::LogHead;
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
    pub last_at: Option<String>,
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

fn problem(seq: u64, kind: Option<String>, fault: Fault) -> Option<Problem> {
    Some(Problem { seq, kind, fault })
}

struct Parsed {
    seq: u64,
    at: String,
    kind: String,
    prev: Option<Digest>,
    hash: Digest,
    checkpoint: Option<Result<LogCheckpoint, String>>,
}

fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let envelope = Envelope::parse(bytes).map_err(|error| error.to_string())?;
    Timestamp::parse_rfc3339(&envelope.at).map_err(|error| error.to_string())?;
    let checkpoint = (envelope.kind == "log.checkpoint").then(|| {
        serde_json::from_str::<LogCheckpoint>(envelope.data.get())
            .map_err(|error| error.to_string())
    });
    Ok(Parsed {
        seq: envelope.seq,
        at: envelope.at.into_owned(),
        kind: envelope.kind.into_owned(),
        prev: Digest::from_hex(&envelope.prev).ok(),
        hash: Digest::of(bytes),
        checkpoint,
    })
}

/// Verifies a sequence of stored records.
///
/// `recorded_head` is the head the store itself recorded (sled), checked exactly; the options'
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
    let mut source = entries.into_iter();
    let mut lookahead: Option<(Entry, Result<Parsed, String>)> = None;
    let mut next = |peek_only: bool,
                    lookahead: &mut Option<(Entry, Result<Parsed, String>)>|
     -> Result<bool, Error> {
        if lookahead.is_none() {
            if let Some(entry) = source.next() {
                let entry = entry?;
                let parsed = parse(&entry.bytes);
                *lookahead = Some((entry, parsed));
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
    let mut last_kind: Option<String> = None;
    // What the report said before the last sound record, to take that record back when the next
    // one shows it was altered.
    // The checkpoint part is only kept when that record was itself a checkpoint.
    #[allow(clippy::type_complexity)]
    let mut before_last: Option<(Digest, Option<String>, Option<Option<CheckpointSummary>>)> = None;
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
            let checkpoint = match checkpoint {
                Ok(checkpoint) => checkpoint,
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
            let signer = match verify_checkpoint(checkpoint) {
                Ok(signer) => signer,
                Err(CheckpointFault::BadKey | CheckpointFault::BadSignature) => {
                    report.problem = problem(parsed.seq, kind, Fault::BadCheckpointSignature);
                    return Ok(report);
                }
            };
            if let Some(trusted) = options.trusted_key {
                if trusted != signer {
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
