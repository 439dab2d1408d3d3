//! Where the writer resumes a store: its head checked against what it acknowledged, the tree
//! completed for records stored before the tree existed, the latest signed checkpoint checked
//! against the stored tree and the configured origin, and the last record's time.

use crate::checkpoint::SignedCheckpoint;
use crate::store::{frontier_of, Log, LogHead, LogNodes};
use crate::time::Timestamp;
use crate::tree::Frontier;
use crate::Error;

/// What the writer continues from.
pub(super) struct Resumed {
    pub(super) head: LogHead,
    /// The right edge of the stored tree, at `head`.
    pub(super) frontier: Frontier,
    /// The latest checkpoint the log holds as a signed note.
    pub(super) checkpoint: Option<SignedCheckpoint>,
    /// The last record's time: a clock behind it is recorded before the next record.
    pub(super) last_at: Option<Timestamp>,
}

/// Reads and checks where `log` stands before anything is written on it.
///
/// # Errors
/// As [`crate::evidence::check`] when the store lacks a record it acknowledged or its evidence is
/// gone; [`Error::TreeMissing`], [`Error::Corrupt`] or [`Error::OriginChanged`] when the stored
/// tree or the latest checkpoint does not hold; the store's error when it cannot be read.
pub(super) fn resume(log: &mut dyn Log, origin: &str) -> Result<Resumed, Error> {
    let head = crate::evidence::check(log)?;
    let frontier = complete_tree(log, head)?;
    let checkpoint = latest_checkpoint(log, head, origin)?;
    let last_at = match log.read(head.seq, head.seq).next() {
        Some(Ok((_, bytes))) => crate::record::Envelope::time_of(&bytes),
        _ => None,
    };
    Ok(Resumed {
        head,
        frontier,
        checkpoint,
        last_at,
    })
}

/// The frontier of the store's tree at `head`, after adding the tree hashes of records stored
/// before the tree existed (a store written by an earlier version): computed from their bytes
/// and stored once, durably.
fn complete_tree(log: &mut dyn Log, head: LogHead) -> Result<Frontier, Error> {
    const CHUNK: u64 = 10_000;
    let size = log.tree_size()?;
    if size > head.seq {
        return Err(Error::TreeMissing {
            reason: format!(
                "the tree holds {size} leaves but the log {} records",
                head.seq
            ),
        });
    }
    let mut frontier = frontier_of(log)?;
    let mut next = size + 1;
    while next <= head.seq {
        let last = (next + CHUNK - 1).min(head.seq);
        let mut tree = Vec::new();
        for record in log.read(next, last) {
            let (seq, bytes) = record?;
            if seq != next + tree.len() as u64 {
                return Err(Error::Corrupt {
                    reason: format!(
                        "record {} is missing from the store",
                        next + tree.len() as u64
                    ),
                });
            }
            tree.push(frontier.append(crate::tree::leaf_hash(&bytes)));
        }
        log.add_tree(next, &tree)?;
        next = last + 1;
    }
    Ok(frontier)
}

/// The log's latest checkpoint that carries a note, found from the end, after checking that the
/// stored tree still has the root it signed and that it names this log's origin: the journal
/// never signs a checkpoint inconsistent with one the log already holds (SPEC §3.5).
fn latest_checkpoint(
    log: &dyn Log,
    head: LogHead,
    origin: &str,
) -> Result<Option<SignedCheckpoint>, Error> {
    const CHUNK: u64 = 1024;
    let mut last = head.seq;
    while last > 0 {
        let first = last.saturating_sub(CHUNK - 1).max(1);
        let mut found = None;
        log.scan(first, last, &mut |seq, bytes| {
            if let Ok(parts) = crate::record::parts(bytes) {
                if parts.kind == "log.checkpoint" {
                    if let Ok(data) = serde_json::from_slice(parts.data) {
                        if let Some(signed) = SignedCheckpoint::of(seq, &data) {
                            found = Some(signed);
                        }
                    }
                }
            }
        })?;
        if let Some(signed) = found {
            check_checkpoint(log, &signed, origin)?;
            return Ok(Some(signed));
        }
        last = first - 1;
    }
    Ok(None)
}

fn check_checkpoint(log: &dyn Log, signed: &SignedCheckpoint, origin: &str) -> Result<(), Error> {
    let body = crate::note::Note::parse(&signed.note)
        .ok()
        .and_then(|note| crate::note::Checkpoint::parse(&note.text).ok());
    let signed_origin = body.map(|body| body.origin).unwrap_or_default();
    if signed_origin != origin {
        return Err(Error::OriginChanged {
            log: signed_origin,
            configured: origin.to_string(),
        });
    }
    let root = crate::tree::tree_hash(signed.size, &LogNodes(log)).map_err(|error| {
        Error::TreeMissing {
            reason: error.to_string(),
        }
    })?;
    if root != signed.root {
        return Err(Error::Corrupt {
            reason: format!(
                "the checkpoint at seq {} signed the tree of {} records with root {}, but the stored tree has root {root}: the log was rewritten, and no checkpoint consistent with both can be signed",
                signed.seq, signed.size, signed.root
            ),
        });
    }
    Ok(())
}
