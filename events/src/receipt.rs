//! Consent receipts (SPEC §3.5): a `c2sp.org/tlog-proof@v1` text proving that one record is in the
//! log, checkable offline by anyone who holds the log's verifier key.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the record's bytes>
//! index <seq - 1>
//! <inclusion proof, one base64 hash a line>
//!
//! <the signed checkpoint, with whatever cosignatures it has>
//! ```
//!
//! [`make`] builds one from stored hashes; [`check`] verifies one against a policy (the log's key,
//! the witnesses trusted and how many must have cosigned) and says what it proves. A receipt
//! proves that the log, as its key signed it at that size, holds that record at that place; with
//! a quorum of independent cosignatures, that the log showed the same tree to those witnesses.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::checkpoint::SignedCheckpoint;
use crate::note::{self, Checkpoint, Note, NoteError, VerifierKey};
use crate::record::Record;
use crate::store::{Appended, LogReader, Nodes};
use crate::tree::{self, Frontier, Hash, Node, NodeReader, TreeError};
use crate::Error;

/// The first line of every receipt.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// The longest receipt read: a record of at most 1 MiB in base64, a proof and a note.
pub const MAX_RECEIPT_BYTES: usize = 2 << 20;
/// How far in the future a cosignature's time may be before it is refused (clocks disagree a
/// little; a witness never signs a time it has not reached).
pub const MAX_FUTURE_SECONDS: u64 = 60;

/// A parsed receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The record's bytes (the `extra` line).
    pub extra: Option<Vec<u8>>,
    /// The record's leaf index: its seq minus one.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

/// Why a receipt proves nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt in the tlog-proof format.
    #[error("not a c2sp.org/tlog-proof@v1 receipt: {0}")]
    Malformed(String),
    /// It carries no record.
    #[error("the receipt carries no record (no extra line)")]
    NoRecord,
    /// Its record is not a Neuron record.
    #[error("the record it carries is not a log record: {0}")]
    NotARecord(String),
    /// The record says another seq than the index the proof is for.
    #[error("the record is seq {seq}, but the proof is for leaf {index} (seq {})", index + 1)]
    WrongIndex {
        /// The record's seq.
        seq: u64,
        /// The proof's leaf index.
        index: u64,
    },
    /// The checkpoint is not signed by the log's key (or is not a checkpoint).
    #[error("the checkpoint is not signed by the log's key: {0}")]
    NotSignedByTheLog(NoteError),
    /// The checkpoint names another log.
    #[error("the checkpoint is of the log {found:?}, not of {expected:?}")]
    OtherLog {
        /// The origin the checkpoint names.
        found: String,
        /// The log key's name.
        expected: String,
    },
    /// The inclusion proof does not lead from the record to the checkpoint's root.
    #[error("the record is not in the tree the checkpoint signs: {0}")]
    NotIncluded(tree::TreeError),
    /// A trusted witness's cosignature does not verify.
    #[error("a cosignature by a trusted witness does not verify: {0}")]
    BadCosignature(NoteError),
    /// A cosignature dated in the future.
    #[error("the cosignature of {witness} is dated {time}, {ahead} s in the future")]
    FutureCosignature {
        /// The witness.
        witness: String,
        /// Its time, seconds since the epoch.
        time: u64,
        /// How far ahead of now.
        ahead: u64,
    },
    /// Fewer trusted witnesses cosigned than the policy requires.
    #[error("{got} of the trusted witnesses cosigned the checkpoint; {needed} are required")]
    Quorum {
        /// Cosignatures that verified.
        got: usize,
        /// Cosignatures required.
        needed: usize,
    },
}

impl Receipt {
    /// The receipt's text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            text.push_str(&hash.to_base64());
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Reads a receipt.
    ///
    /// # Errors
    /// [`ReceiptError::Malformed`], saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, ReceiptError> {
        let malformed = |reason: &str| ReceiptError::Malformed(reason.to_string());
        if text.len() > MAX_RECEIPT_BYTES {
            return Err(malformed("longer than any receipt"));
        }
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| malformed("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(malformed("its first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next();
        let extra = match line.and_then(|line| line.strip_prefix("extra ")) {
            Some(encoded) => {
                let bytes = STANDARD
                    .decode(encoded)
                    .map_err(|_| malformed("its extra line is not standard base64"))?;
                line = lines.next();
                Some(bytes)
            }
            None => None,
        };
        let index = line
            .and_then(|line| line.strip_prefix("index "))
            .filter(|digits| {
                !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (*digits == "0" || !digits.starts_with('0'))
            })
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or_else(|| malformed("no index line (a decimal without leading zeros)"))?;
        let proof: Vec<Hash> = lines
            .map(|line| {
                Hash::from_base64(line)
                    .map_err(|_| malformed("a proof line is not a base64 SHA-256 hash"))
            })
            .collect::<Result<_, _>>()?;
        if proof.len() > 63 {
            return Err(malformed("a proof longer than any tree's"));
        }
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

/// The receipt of record `seq` under `checkpoint` (whose tree must hold it), from the hashes and
/// records `reader` holds.
///
/// # Errors
/// The store's error, or [`Error::TreeMissing`] when the record or a hash is missing.
pub fn make(
    reader: &dyn LogReader,
    seq: u64,
    checkpoint: &SignedCheckpoint,
) -> Result<Receipt, Error> {
    let mut bytes = None;
    reader.scan_while(seq, seq, &mut |_, stored| {
        bytes = Some(stored.to_vec());
        false
    })?;
    let bytes = bytes.ok_or_else(|| Error::TreeMissing {
        reason: format!("record {seq} is not in the store"),
    })?;
    let index = seq.checked_sub(1).ok_or_else(|| Error::TreeMissing {
        reason: "there is no record 0".into(),
    })?;
    let proof = tree::prove_inclusion(index, checkpoint.size, &Nodes(reader)).map_err(|error| {
        Error::TreeMissing {
            reason: error.to_string(),
        }
    })?;
    Ok(Receipt {
        extra: Some(bytes),
        index,
        proof,
        checkpoint: checkpoint.note.clone(),
    })
}

/// What a batch that ended with a checkpoint knows of the tree: its edge before the batch, and
/// the hashes each of the batch's records completes. Enough to prove any record of the batch
/// under that checkpoint without reading the store: a proof's hashes left of the batch are roots
/// of the edge's perfect subtrees, the others are stored by the batch's own records. The journal
/// hands it to the callers of the batch ([`crate::Committed::evidence`]); a receipt made from it
/// is the one [`make`] makes from the store.
#[derive(Debug)]
pub struct BatchEvidence {
    start: Frontier,
    appended: Vec<Appended>,
    checkpoint: Arc<SignedCheckpoint>,
}

impl BatchEvidence {
    /// The evidence of a batch of records `appended` numbered right after the tree `start` ends,
    /// whose last checkpoint is `checkpoint`.
    pub fn new(
        start: Frontier,
        appended: Vec<Appended>,
        checkpoint: Arc<SignedCheckpoint>,
    ) -> Self {
        Self {
            start,
            appended,
            checkpoint,
        }
    }

    /// The checkpoint the batch ended with.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// The receipt of record `seq` under the batch's checkpoint; `None` when the record is not in
    /// the batch or not under the checkpoint.
    ///
    /// # Errors
    /// [`Error::TreeMissing`] when a hash of the proof is neither on the edge nor stored by the
    /// batch (the caller then makes the receipt from the store).
    pub fn receipt(&self, seq: u64) -> Option<Result<Receipt, Error>> {
        let index = seq.checked_sub(1)?;
        let position = usize::try_from(index.checked_sub(self.start.size())?).ok()?;
        let record = self.appended.get(position)?;
        if seq > self.checkpoint.size {
            return None;
        }
        Some(
            tree::prove_inclusion(index, self.checkpoint.size, self)
                .map(|proof| Receipt {
                    extra: Some(record.bytes.clone()),
                    index,
                    proof,
                    checkpoint: self.checkpoint.note.clone(),
                })
                .map_err(|error| Error::TreeMissing {
                    reason: error.to_string(),
                }),
        )
    }
}

impl NodeReader for BatchEvidence {
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, TreeError> {
        nodes
            .iter()
            .map(|node| {
                let stored_by_batch = node
                    .stored_with()
                    .and_then(|leaf| leaf.checked_sub(self.start.size()))
                    .and_then(|position| usize::try_from(position).ok())
                    .and_then(|position| self.appended.get(position))
                    .and_then(|record| record.tree.get(usize::from(node.level)));
                stored_by_batch
                    .copied()
                    .or_else(|| self.start.edge_node(node))
                    .ok_or_else(|| TreeError::Missing {
                        missing: format!(
                            "node {}/{}: neither on the edge before the batch nor stored by it",
                            node.level, node.index
                        ),
                    })
            })
            .collect()
    }
}

/// Whom a receipt's checker trusts.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The log's verifier key (its name is the log's origin).
    pub log: VerifierKey,
    /// The witnesses trusted (cosignature/v1 keys).
    pub witnesses: Vec<VerifierKey>,
    /// How many of them must have cosigned.
    pub quorum: usize,
    /// The time now, seconds since the epoch: a cosignature dated after it (and a minute's grace)
    /// is refused.
    pub now: u64,
}

/// What a receipt that checks out proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    /// The record it carries, decoded.
    pub record: Record,
    /// The checkpoint's tree.
    pub checkpoint: Checkpoint,
    /// The trusted witnesses that cosigned, with their times.
    pub cosigned: Vec<(String, u64)>,
}

/// Checks a receipt against `policy`.
///
/// # Errors
/// The first [`ReceiptError`] found.
pub fn check(receipt: &Receipt, policy: &Policy) -> Result<Proven, ReceiptError> {
    let extra = receipt.extra.as_deref().ok_or(ReceiptError::NoRecord)?;
    let record =
        Record::decode(extra).map_err(|error| ReceiptError::NotARecord(error.to_string()))?;
    if record.seq.checked_sub(1) != Some(receipt.index) {
        return Err(ReceiptError::WrongIndex {
            seq: record.seq,
            index: receipt.index,
        });
    }
    let note = Note::parse(&receipt.checkpoint)
        .map_err(|error| ReceiptError::Malformed(format!("its checkpoint: {error}")))?;
    note::verify(&note, std::slice::from_ref(&policy.log))
        .map_err(ReceiptError::NotSignedByTheLog)?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(ReceiptError::NotSignedByTheLog)?;
    if checkpoint.origin != policy.log.name {
        return Err(ReceiptError::OtherLog {
            found: checkpoint.origin,
            expected: policy.log.name.clone(),
        });
    }
    tree::verify_inclusion(
        receipt.index,
        checkpoint.size,
        &tree::leaf_hash(extra),
        &receipt.proof,
        &checkpoint.root,
    )
    .map_err(ReceiptError::NotIncluded)?;
    let cosigned = cosigners(&note, policy)?;
    if cosigned.len() < policy.quorum {
        return Err(ReceiptError::Quorum {
            got: cosigned.len(),
            needed: policy.quorum,
        });
    }
    Ok(Proven {
        record,
        checkpoint,
        cosigned,
    })
}

/// The trusted witnesses whose cosignatures on `note` verify. Lines of unknown keys are ignored;
/// a line of a trusted key that does not verify, or is dated in the future, refuses the receipt.
fn cosigners(note: &Note, policy: &Policy) -> Result<Vec<(String, u64)>, ReceiptError> {
    let mut cosigned: Vec<(String, u64)> = Vec::new();
    for line in &note.signatures {
        let Some(witness) = policy.witnesses.iter().find(|key| key.claims(line)) else {
            continue;
        };
        let time = witness
            .verify_line(&note.text, line)
            .map_err(ReceiptError::BadCosignature)?
            .unwrap_or_default();
        if time > policy.now + MAX_FUTURE_SECONDS {
            return Err(ReceiptError::FutureCosignature {
                witness: witness.name.clone(),
                time,
                ahead: time - policy.now,
            });
        }
        if !cosigned.iter().any(|(name, _)| *name == witness.name) {
            cosigned.push((witness.name.clone(), time));
        }
    }
    Ok(cosigned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Stored;

    /// A batch of `len` records after `before` records, its checkpoint signing `covered` of the
    /// batch: the evidence, and the store holding every record.
    fn batch(before: u64, len: u64, covered: u64) -> (BatchEvidence, Stored) {
        let mut store = Stored::default();
        let mut start = Frontier::default();
        let mut appended = Vec::new();
        for index in 0..before + len {
            if index == before {
                start = store.frontier.clone();
            }
            let bytes = format!("record {}", index + 1).into_bytes();
            let tree = store.frontier.append(tree::leaf_hash(&bytes));
            store.values.insert(index, tree.clone());
            if index >= before {
                appended.push(Appended {
                    seq: index + 1,
                    bytes,
                    tree,
                });
            }
        }
        let size = before + covered;
        let checkpoint = SignedCheckpoint {
            seq: before + len,
            size,
            root: tree::tree_hash(size, &store).unwrap(),
            note: format!("a note signing {size} leaves"),
        };
        (
            BatchEvidence::new(start, appended, Arc::new(checkpoint)),
            store,
        )
    }

    #[test]
    fn a_batch_proves_each_of_its_records_as_the_store_does_without_reading_it() {
        for before in 0..=40 {
            for len in 1..=40 {
                // The checkpoint is the batch's last record: it signs the records before it.
                let covered = len - 1;
                let (evidence, store) = batch(before, len, covered);
                for seq in 1..=before + len {
                    let made = evidence.receipt(seq);
                    if seq <= before || seq > before + covered {
                        assert!(made.is_none(), "seq {seq} after {before}, batch of {len}");
                        continue;
                    }
                    let receipt = made.unwrap().unwrap();
                    let index = seq - 1;
                    let size = before + covered;
                    let from_store = tree::prove_inclusion(index, size, &store).unwrap();
                    assert_eq!(
                        receipt.proof, from_store,
                        "seq {seq} after {before}, batch of {len}"
                    );
                    assert_eq!(receipt.index, index);
                    assert_eq!(receipt.extra, Some(format!("record {seq}").into_bytes()));
                    assert_eq!(receipt.checkpoint, evidence.checkpoint().note);
                    let leaf = tree::leaf_hash(receipt.extra.as_deref().unwrap());
                    tree::verify_inclusion(
                        index,
                        size,
                        &leaf,
                        &receipt.proof,
                        &evidence.checkpoint().root,
                    )
                    .unwrap();
                }
            }
        }
    }

    #[test]
    fn a_hash_neither_on_the_edge_nor_in_the_batch_is_missing_not_guessed() {
        let (evidence, _) = batch(5, 3, 3);
        // Leaf 2's own hash lies inside the edge's subtree of four: the batch does not hold it.
        assert!(evidence.read_nodes(&[Node { level: 0, index: 2 }]).is_err());
        assert!(evidence.read_nodes(&[Node { level: 2, index: 0 }]).is_ok());
    }
}
