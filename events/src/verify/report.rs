//! What a verification found: the [`Report`], the [`Fault`] at the first problem, the anchors and
//! ranges it names.

use serde::Serialize;

pub use crate::event::SeqRange;
use crate::record::Digest;
use crate::store::Acknowledged;
use crate::time::Timestamp;

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
    /// Records a restore wrote without a trusted checkpoint over them (`log.restored`'s
    /// `unverified`): whatever signed the log since, nothing vouches for them.
    RestoredUnverified {
        /// The records.
        range: SeqRange,
        /// The `log.restored` record that names them.
        restored_at: u64,
    },
    /// A checkpoint whose tree size or root is not the tree the records before it give: it signs
    /// another log than this one.
    CheckpointTreeMismatch {
        /// The root it signs, standard base64.
        signed: String,
        /// The root the records give.
        rebuilt: String,
    },
    /// A checkpoint whose note is malformed, not signed by its key, or names another log.
    BadCheckpointNote {
        /// What is wrong with it.
        reason: String,
    },
    /// The store's Merkle tree hashes for this record differ from those its records give: proofs
    /// served from the store would be wrong.
    StoredTreeMismatch,
    /// The store keeps tree hashes for some records and not these.
    TreeIncomplete {
        /// The records without them.
        range: SeqRange,
    },
    /// A `log.cosigned` naming a tree size and root no checkpoint of this log signed.
    CosignedUnknownCheckpoint {
        /// The witness.
        witness: String,
        /// The size it names.
        size: u64,
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
            Self::RestoredUnverified { range, restored_at } => format!(
                "{range} restored unverified (log.restored at seq {restored_at}): no trusted checkpoint vouches for them"
            ),
            Self::CheckpointTreeMismatch { signed, rebuilt } => format!(
                "checkpoint signs the tree root {signed}, but the records before it give {rebuilt}"
            ),
            Self::BadCheckpointNote { reason } => format!("checkpoint note: {reason}"),
            Self::StoredTreeMismatch => {
                "the store's Merkle tree hashes for this record differ from those its bytes give"
                    .into()
            }
            Self::TreeIncomplete { range } => {
                format!("the store keeps no Merkle tree hashes for {range}, though it does for others")
            }
            Self::CosignedUnknownCheckpoint { witness, size } => format!(
                "records a cosignature by {witness} of a tree of {size} records that no checkpoint of this log signs"
            ),
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
    /// Ranges a restore wrote without a trusted checkpoint over them, as `log.restored` records
    /// name them: accepted only without a trusted key or with an unsigned tail allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<Unverified>,
    /// Losses operators acknowledged (`log.rollback_acknowledged`): the tree sizes witnesses had
    /// seen beyond the log, with the record that accepts them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<(u64, SeqRange)>,
    /// The Merkle tree rebuilt from the sound records.
    pub tree: TreeSummary,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// What the records say that breaks a promise the log's writer makes, though the chain holds:
    /// found in the sound part of the log, in log order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Anomaly>,
}

/// Records a restore wrote without a trusted checkpoint over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Unverified {
    /// The records.
    pub range: SeqRange,
    /// The `log.restored` record that names them.
    pub restored_at: u64,
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} restored without a trusted checkpoint (log.restored at seq {})",
            self.range, self.restored_at
        )
    }
}

/// Something the records say that breaks a promise of the Neuron's, in a chain that may be intact:
/// a log written by a server with a bug, which an auditor needs named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "anomaly", rename_all = "snake_case")]
pub enum Anomaly {
    /// A witness reported a view of the log that the log does not extend (rolled back or
    /// forked), and no operator acknowledged the loss.
    WitnessConflict {
        /// The `log.witness_conflict` record.
        seq: u64,
        /// The witness.
        witness: String,
        /// The tree size it had cosigned.
        witness_size: u64,
        /// The size the log offered it.
        our_size: u64,
    },
    /// A relationship established while another was in force for the same (patient, provider)
    /// (SPEC §2.3 step 4: at most one).
    TwoActiveRelationships {
        /// The record that established the second one.
        seq: u64,
        /// The second one.
        relationship_id: String,
        /// The patient.
        patient_agent_id: String,
        /// The provider.
        provider_npi: String,
        /// The one in force when it was established.
        in_force: String,
        /// The record that established that one.
        in_force_seq: u64,
    },
}

impl Anomaly {
    /// The record it is found at.
    pub fn seq(&self) -> u64 {
        match self {
            Self::TwoActiveRelationships { seq, .. } | Self::WitnessConflict { seq, .. } => *seq,
        }
    }

    /// A sentence for people (the caller escapes it for a terminal).
    pub fn describe(&self) -> String {
        match self {
            Self::WitnessConflict {
                witness,
                witness_size,
                our_size,
                ..
            } => format!(
                "witness {witness} had cosigned a tree of {witness_size} records this log (at {our_size}) does not extend: rolled back or forked, and not acknowledged"
            ),
            Self::TwoActiveRelationships {
                relationship_id,
                patient_agent_id,
                provider_npi,
                in_force,
                in_force_seq,
                ..
            } => format!(
                "relationship {relationship_id} established for patient {patient_agent_id} with provider {provider_npi} while {in_force} (seq {in_force_seq}) was active: two active relationships for one pair"
            ),
        }
    }
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
            unverified: Vec::new(),
            anomalies: Vec::new(),
            rollbacks: Vec::new(),
            tree: TreeSummary {
                size: 0,
                root: crate::tree::Hash::empty().to_base64(),
                stored: StoredTree::NotStored,
            },
            problem: Some(Problem {
                seq: 1,
                line: None,
                kind: None,
                fault: Fault::StoreDamaged { reason },
            }),
        }
    }
}

/// What a verification found of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeSummary {
    /// Leaves: the sound records.
    pub size: u64,
    /// The root over them, standard base64.
    pub root: String,
    /// Whether the source's own tree was compared.
    pub stored: StoredTree,
}

/// Whether a source keeps the tree, and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredTree {
    /// An export: no tree but the one rebuilt.
    NotKept,
    /// A store written before the tree: none kept (the server adds it at its next start).
    NotStored,
    /// The store's tree hashes, every one equal to the rebuilt tree's.
    Checked,
}
