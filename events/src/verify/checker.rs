//! The chain checked record by record, in order: each step accepts the record or names the
//! problem; at the end, the anchors, the evidence and trusted coverage.

use std::borrow::Cow;
use std::iter::Peekable;

use ed25519_dalek::VerifyingKey;

use crate::b64;
use crate::checkpoint::CheckpointFault;
use crate::record::Digest;
use crate::store::Acknowledged;
use crate::store::LogHead;
use crate::time::Timestamp;
use crate::Error;

use super::parse::{Detail, Parsed, ParsedEntry, Position, SignedCheckpoint};
use super::relationships::InForce;
use super::report::*;
use super::tree::TreeCheck;

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
    /// The relationship in force for each pair, to name a second one established beside it.
    relationships: InForce,
    /// The Merkle tree over the sound records.
    tree: TreeCheck,
    /// The log's origin, as the last `server.started` names it.
    origin: Option<String>,
    /// The root every checkpoint signed, by tree size: what a `log.cosigned` must name.
    signed_roots: std::collections::HashMap<u64, String>,
    /// Witness conflicts not (yet) acknowledged.
    conflicts: Vec<Anomaly>,
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
                unverified: Vec::new(),
                anomalies: Vec::new(),
                rollbacks: Vec::new(),
                tree: TreeCheck::default().summary(),
                problem: None,
            },
            last_kind: None,
            undo: None,
            relationships: InForce::default(),
            tree: TreeCheck::default(),
            origin: None,
            signed_roots: std::collections::HashMap::new(),
            conflicts: Vec::new(),
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
        // The previous record is sound now that this one links to it: its leaf and its facts
        // count.
        self.tree
            .confirm()
            .map_err(|(seq, fault)| problem_at(seq, None, fault))?;
        self.relationships.confirm();
        let checkpoint = match parsed.detail.as_deref() {
            Some(Detail::Checkpoint(checkpoint)) => Some(checkpoint),
            _ => None,
        };
        let previous_checkpoint = checkpoint
            .is_some()
            .then(|| self.report.last_checkpoint.clone());
        if let Some(checkpoint) = checkpoint {
            self.checkpoint(&parsed, checkpoint)
                .map_err(|fault| at_line(problem_at(parsed.seq, kind.clone(), fault)))?;
        }
        if let Some(Detail::Restored {
            unverified: Some(range),
        }) = parsed.detail.as_deref()
        {
            self.restored(*range, parsed.seq)
                .map_err(|fault| at_line(problem_at(range.first, None, fault)))?;
        }
        self.witnessed(&parsed)
            .map_err(|fault| at_line(problem_at(parsed.seq, kind.clone(), fault)))?;
        self.advance(parsed, kind, previous_checkpoint);
        Ok(())
    }

    /// The witness facts a record states: the log's origin, a cosignature (which must be of a
    /// checkpoint this log signed), a conflict, an acknowledged rollback.
    fn witnessed(&mut self, parsed: &Parsed) -> Result<(), Fault> {
        match parsed.detail.as_deref() {
            Some(Detail::Started {
                origin: Some(origin),
            }) => self.origin = Some(origin.clone()),
            Some(Detail::Cosigned {
                witness,
                size,
                root,
            }) if self.signed_roots.get(size) != Some(root) => {
                return Err(Fault::CosignedUnknownCheckpoint {
                    witness: witness.clone(),
                    size: *size,
                });
            }
            Some(Detail::WitnessConflict {
                witness,
                witness_size,
                our_size,
            }) => self.conflicts.push(Anomaly::WitnessConflict {
                seq: parsed.seq,
                witness: witness.clone(),
                witness_size: *witness_size,
                our_size: *our_size,
            }),
            Some(Detail::RollbackAcknowledged { lost }) => {
                self.conflicts.clear();
                self.report.rollbacks.push((parsed.seq, *lost));
            }
            _ => {}
        }
        Ok(())
    }

    /// A sound record taken: held until the next one links to it, and the report moved on.
    fn advance(
        &mut self,
        parsed: Parsed,
        kind: Option<Cow<'static, str>>,
        previous_checkpoint: Option<Option<CheckpointSummary>>,
    ) {
        self.tree.hold(parsed.seq, parsed.leaf, parsed.stored);
        self.relationships.hold(parsed.seq, parsed.detail);
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

    /// A restore's unverified range: named in the report; with a trusted key, a fault unless the
    /// investigator accepts unsigned records. It must lie before the record that names it.
    fn restored(&mut self, range: SeqRange, restored_at: u64) -> Result<(), Fault> {
        if range.first == 0 || range.first > range.last || range.last >= restored_at {
            return Err(Fault::Unparseable {
                reason: format!(
                    "log.restored names {range} as unverified, which is not a range before it"
                ),
            });
        }
        if self.options.trusted_key.is_some() && !self.options.allow_unsigned_tail {
            return Err(Fault::RestoredUnverified { range, restored_at });
        }
        self.report
            .unverified
            .push(Unverified { range, restored_at });
        Ok(())
    }

    /// A checkpoint must sign the head just before it, with a valid signature by the trusted key.
    fn checkpoint(
        &mut self,
        parsed: &Parsed,
        checkpoint: &Result<SignedCheckpoint, String>,
    ) -> Result<(), Fault> {
        let signed = checkpoint.as_ref().map_err(|reason| Fault::Unparseable {
            reason: reason.clone(),
        })?;
        let checkpoint = &signed.data;
        let signs_the_head =
            Digest::from_hex(&checkpoint.head).is_ok_and(|head| head == self.report.head);
        if checkpoint.upto != self.report.last_seq || !signs_the_head {
            return Err(Fault::CheckpointHeadMismatch);
        }
        if let Some(note) = &signed.note {
            let body = note.as_ref().map_err(|reason| Fault::BadCheckpointNote {
                reason: reason.clone(),
            })?;
            let rebuilt = self.tree.root();
            let agrees = body.size == checkpoint.upto
                && checkpoint.size == Some(body.size)
                && self.tree.size() == body.size
                && body.root == rebuilt
                && checkpoint.root.as_deref() == Some(body.root.to_base64().as_str());
            if !agrees {
                return Err(Fault::CheckpointTreeMismatch {
                    signed: checkpoint
                        .root
                        .clone()
                        .unwrap_or_else(|| body.root.to_base64()),
                    rebuilt: rebuilt.to_base64(),
                });
            }
            self.signed_roots.insert(body.size, body.root.to_base64());
            if let Some(origin) = &self.origin {
                if body.origin != *origin {
                    return Err(Fault::BadCheckpointNote {
                        reason: format!(
                            "it names the origin {:?}, but the log's server.started names {origin:?}",
                            body.origin
                        ),
                    });
                }
            }
        }
        let signer = signed.signer.as_ref().map_err(|fault| match fault {
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
        self.tree
            .confirm()
            .and_then(|()| self.tree.finish())
            .map_err(|(seq, fault)| problem_at(seq, None, fault))?;
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

pub(super) fn check<I>(
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
            // The record held back is sound unless the problem is that it was altered.
            if problem.fault != Fault::HashMismatch {
                checker.relationships.confirm();
                // Its stored tree hashes were compared when the problem was found, or are wrong.
                let _ = checker.tree.confirm();
            }
            checker.report.problem = Some(problem);
            checker.report.anomalies = checker.relationships.into_anomalies();
            checker.report.tree = checker.tree.summary();
            return Ok(checker.report);
        }
    }
    match checker.finish(acknowledged) {
        Ok(()) => checker.relationships.confirm(),
        Err(problem) => checker.report.problem = Some(problem),
    }
    checker.report.anomalies = checker.relationships.into_anomalies();
    checker.report.anomalies.append(&mut checker.conflicts);
    checker.report.anomalies.sort_by_key(Anomaly::seq);
    checker.report.tree = checker.tree.summary();
    Ok(checker.report)
}
