//! The `log.*` kinds of SPEC §3.3 and §3.5: what the log records about itself (checkpoints,
//! restores, witnesses' cosignatures and conflicts, an acknowledged rollback) and the seq range
//! they name.

use serde::{Deserialize, Serialize};

/// `log.checkpoint`: the Neuron's signature over the chain head at `upto`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheckpoint {
    /// The last seq covered; always the record just before the checkpoint.
    pub upto: u64,
    /// The chain head (hex) at `upto`.
    pub head: String,
    /// The signer's Ed25519 public key, base64url.
    pub key: String,
    /// The Ed25519 signature over `neuron-checkpoint-v1\n{upto}\n{head}`, base64url.
    pub sig: String,
    /// The Merkle tree's size this checkpoint signs (SPEC §3.5): `upto` records. Absent in
    /// checkpoints written before the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The tree's root at that size, standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The C2SP checkpoint `{origin}\n{size}\n{root}\n`, signed as a note by the same key under
    /// the log's origin: what receipts carry and witnesses cosign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A range of seqs, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// `log.restored`: this log was rebuilt from an export by `neuron restore`. Written by the restore
/// right after the export's last record, so that a restore is always visible in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRestored {
    /// blake3 hex of the export's bytes, as the restore read them.
    pub from: String,
    /// How many records the export held.
    pub records: u64,
    /// The key the export's checkpoints had to be signed by, base64url.
    pub trusted_key: String,
    /// The records no checkpoint of that key covered, restored only because the operator accepted
    /// an unsigned tail: no later checkpoint vouches for them, and verification keeps naming them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<SeqRange>,
}

/// `log.cosigned`: a witness cosigned one of this log's checkpoints (SPEC §3.5), so the log carries
/// its own witness evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCosigned {
    /// The witness's name (its key name).
    pub witness: String,
    /// The tree size it cosigned.
    pub size: u64,
    /// The root it cosigned, standard base64.
    pub root: String,
    /// Its signature line, as the witness sent it (`— <name> <base64>`).
    pub cosignature: String,
}

/// `log.witness_conflict`: a witness holds a view of this log that this log does not extend: a
/// larger tree, or another root for a size. The log was rolled back or forked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogWitnessConflict {
    /// The witness.
    pub witness: String,
    /// The tree size the witness last cosigned.
    pub witness_size: u64,
    /// The tree size this log offered it.
    pub our_size: u64,
    /// What the witness answered, in words.
    pub detail: String,
}

/// `log.rollback_acknowledged`: an operator accepted that this log lost what witnesses had seen
/// beyond it (`neuron serve --acknowledge-rollback`). The loss stays in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRollbackAcknowledged {
    /// The tree sizes witnesses had cosigned beyond this log's: leaves `first..=last` (1-based,
    /// as seqs) of the lost branch.
    pub lost: SeqRange,
    /// Who acknowledged it.
    pub by: String,
}
