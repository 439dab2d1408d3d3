//! The records of a source read, parsed and hashed on worker threads, handed back in order to the
//! checker: a checkpoint's signature is checked here too, off the calling thread.

use std::borrow::Cow;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{verify_checkpoint, CheckpointFault};
use crate::event::{
    LogCheckpoint, LogCosigned, LogRestored, LogRollbackAcknowledged, LogWitnessConflict,
    RelationshipEstablished, RelationshipTerminated, SeqRange, ServerStarted,
};
use crate::jsonl::{oversized_reason, Piece};
use crate::note;
use crate::record::Digest;
use crate::store::Log;
use crate::time::Timestamp;
use crate::tree::Hash;
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

pub(super) struct Parsed {
    pub(super) seq: u64,
    pub(super) at: Timestamp,
    pub(super) kind: Cow<'static, str>,
    pub(super) prev: Option<Digest>,
    pub(super) hash: Digest,
    /// The record's Merkle leaf hash.
    pub(super) leaf: Hash,
    /// The tree hashes the store keeps with the record.
    pub(super) stored: Stored,
    /// What the checker needs of the record's data, for the few kinds it reads. Boxed: rare, and
    /// large (entries are moved around in batches of thousands).
    pub(super) detail: Option<Box<Detail>>,
}

/// What a source keeps of the tree for one record.
#[derive(Debug)]
pub(super) enum Stored {
    /// Nothing: an export keeps no tree.
    NotKept,
    /// A store that holds no tree hashes for this record (written before the tree).
    Absent,
    /// The hashes the store holds.
    Hashes(Vec<Hash>),
}

/// The data of a record the checker reads, parsed on the worker thread.
pub(super) enum Detail {
    /// A checkpoint, and whether its signature verified.
    Checkpoint(Box<Result<SignedCheckpoint, String>>),
    /// The server started, under this origin.
    Started { origin: Option<String> },
    /// A relationship established.
    Established {
        relationship_id: String,
        patient_agent_id: String,
        provider_npi: String,
    },
    /// A relationship terminated.
    Terminated { relationship_id: String },
    /// The log was restored from an export, with this range restored unverified.
    Restored { unverified: Option<SeqRange> },
    /// A witness cosigned the checkpoint of this size and root.
    Cosigned {
        witness: String,
        size: u64,
        root: String,
    },
    /// A witness reported a view of the log this log does not extend.
    WitnessConflict {
        witness: String,
        witness_size: u64,
        our_size: u64,
    },
    /// An operator accepted the loss witnesses had seen.
    RollbackAcknowledged { lost: SeqRange },
}

/// A checkpoint's data, whether its signature verified, and (for a checkpoint of the tree) its
/// note checked: signed by the checkpoint's key under the origin it names. Checked on the worker
/// thread.
pub(super) struct SignedCheckpoint {
    pub(super) data: LogCheckpoint,
    pub(super) signer: Result<VerifyingKey, CheckpointFault>,
    /// `None` for a checkpoint written before the tree (no size, root or note).
    pub(super) note: Option<Result<note::Checkpoint, String>>,
}

/// A checkpoint's note, read and verified under the checkpoint's own key and the origin it names.
fn checked_note(checkpoint: &LogCheckpoint) -> Option<Result<note::Checkpoint, String>> {
    if checkpoint.size.is_none() && checkpoint.root.is_none() && checkpoint.note.is_none() {
        return None;
    }
    Some((|| {
        let text = checkpoint
            .note
            .as_deref()
            .ok_or("a checkpoint with a size or root but no note")?;
        let parsed = note::Note::parse(text).map_err(|error| error.to_string())?;
        let body = note::Checkpoint::parse(&parsed.text).map_err(|error| error.to_string())?;
        let key = crate::b64::decode(&checkpoint.key)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .and_then(|bytes| crate::checkpoint::key_from_bytes(&bytes))
            .ok_or("its key is not an Ed25519 key")?;
        let vkey = note::VerifierKey::new(&body.origin, note::ED25519, key)
            .map_err(|error| error.to_string())?;
        note::verify(&parsed, &[vkey]).map_err(|error| match error {
            note::NoteError::Unverified => {
                format!(
                    "the note is not signed by the checkpoint's key under the origin {:?}",
                    body.origin
                )
            }
            other => other.to_string(),
        })?;
        Ok(body)
    })())
}

/// The parts of a record verification needs, read from its bytes ([`crate::record::parts`]), and
/// its hash; a checkpoint's signature is checked here too, on the worker thread.
fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let parts = crate::record::parts(bytes).map_err(|error| match error {
        Error::Unparseable { reason } => reason,
        other => other.to_string(),
    })?;
    let detail = match parts.kind.as_ref() {
        "log.checkpoint" => Some(Detail::Checkpoint(Box::new(
            serde_json::from_slice::<LogCheckpoint>(parts.data)
                .map(|data| SignedCheckpoint {
                    signer: verify_checkpoint(&data),
                    note: checked_note(&data),
                    data,
                })
                .map_err(|error| format!("bad data for log.checkpoint: {error}")),
        ))),
        "server.started" => serde_json::from_slice::<ServerStarted>(parts.data)
            .ok()
            .map(|started| Detail::Started {
                origin: started.origin,
            }),
        // The relationships' data is read only to find two in force for one pair; data that does
        // not parse establishes nothing (replay reads it the same way).
        "consent.relationship_established" => {
            serde_json::from_slice::<RelationshipEstablished>(parts.data)
                .ok()
                .map(|established| Detail::Established {
                    relationship_id: established.relationship_id,
                    patient_agent_id: established.patient_agent_id,
                    provider_npi: established.provider_npi,
                })
        }
        "termination.relationship_terminated" => {
            serde_json::from_slice::<RelationshipTerminated>(parts.data)
                .ok()
                .map(|terminated| Detail::Terminated {
                    relationship_id: terminated.relationship_id,
                })
        }
        // A `log.restored` whose data does not parse could hide an unverified range: it is not a
        // record the checker can accept.
        "log.restored" => Some(
            serde_json::from_slice::<LogRestored>(parts.data)
                .map(|restored| Detail::Restored {
                    unverified: restored.unverified,
                })
                .map_err(|error| format!("bad data for log.restored: {error}"))?,
        ),
        "log.cosigned" => Some(
            serde_json::from_slice::<LogCosigned>(parts.data)
                .map(|cosigned| Detail::Cosigned {
                    witness: cosigned.witness,
                    size: cosigned.size,
                    root: cosigned.root,
                })
                .map_err(|error| format!("bad data for log.cosigned: {error}"))?,
        ),
        "log.witness_conflict" => Some(
            serde_json::from_slice::<LogWitnessConflict>(parts.data)
                .map(|conflict| Detail::WitnessConflict {
                    witness: conflict.witness,
                    witness_size: conflict.witness_size,
                    our_size: conflict.our_size,
                })
                .map_err(|error| format!("bad data for log.witness_conflict: {error}"))?,
        ),
        "log.rollback_acknowledged" => Some(
            serde_json::from_slice::<LogRollbackAcknowledged>(parts.data)
                .map(|acknowledged| Detail::RollbackAcknowledged {
                    lost: acknowledged.lost,
                })
                .map_err(|error| format!("bad data for log.rollback_acknowledged: {error}"))?,
        ),
        _ => None,
    };
    Ok(Parsed {
        seq: parts.seq,
        at: parts.at,
        kind: parts.kind,
        prev: parts.prev,
        hash: Digest::of(bytes),
        leaf: crate::tree::leaf_hash(bytes),
        stored: Stored::NotKept,
        detail: detail.map(Box::new),
    })
}

/// Where a parsed record stood in its source; its bytes stay with the worker that parsed them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Position {
    pub(super) key: Option<u64>,
    pub(super) line: Option<u64>,
    pub(super) complete: bool,
    /// A line longer than any record: never a torn tail, whatever its end.
    pub(super) oversized: bool,
}

pub(super) type ParsedEntry = (Position, Result<Parsed, String>);

/// Records (or seqs of a store) handed to a parsing worker at once.
pub(super) const BATCH: usize = 4096;

/// What a parsing worker is handed.
pub(super) enum Work {
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

pub(super) fn perform(work: Work, log: Option<&dyn Log>) -> Result<Vec<ParsedEntry>, Error> {
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
                // The stored tree hashes of the same range, in one pass, merged in by seq; a
                // record without them (or with too few) is one the store's tree lacks.
                for (_, record) in &mut parsed {
                    if let Ok(record) = record {
                        record.stored = Stored::Absent;
                    }
                }
                let mut records = parsed.iter_mut().peekable();
                let stored = log.scan_tree(from, to, &mut |seq, hashes| {
                    while let Some((position, record)) =
                        records.next_if(|(position, _)| position.key.is_some_and(|key| key <= seq))
                    {
                        if let (Some(key), Ok(record)) = (position.key, record) {
                            if key == seq {
                                record.stored = stored_hashes(seq, hashes);
                            }
                        }
                    }
                });
                match stored {
                    Ok(()) | Err(Error::TreeMissing { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(parsed)
        }
        Work::Failed(error) => Err(error),
    }
}

/// Record `seq`'s stored tree hashes, as the tree expects them: its leaf, then the root of each
/// perfect subtree it completes; too few is none.
fn stored_hashes(seq: u64, stored: &[u8]) -> Stored {
    let count = seq.trailing_zeros().min(63) as usize + 1;
    match stored.get(..count * 32) {
        Some(bytes) => Stored::Hashes(
            bytes
                .chunks_exact(32)
                .filter_map(|chunk| <[u8; 32]>::try_from(chunk).ok().map(Hash))
                .collect(),
        ),
        None => Stored::Absent,
    }
}

/// Entries in batches; a read error ends them, after the entries read before it.
pub(super) fn batches<I>(mut entries: I) -> impl Iterator<Item = Work>
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
