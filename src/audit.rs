//! The log's evidence as it is served (SPEC §3.5): the latest signed checkpoint, consistency proofs
//! between two tree sizes, and inclusion proofs of one record as tlog-proofs. The operator API and
//! the public listener both answer from here; neither reveals more than its route says (the public
//! routes never a record).
//!
//! Proofs are folded from the store's stored hashes on a blocking thread, and only for trees the
//! log holds durably.

use std::sync::Arc;

use neuron_events::checkpoint::SignedCheckpoint;
use neuron_events::event::{EventData, LogCheckpoint};
use neuron_events::receipt::Receipt;
use neuron_events::store::{LogReader, Nodes};
use neuron_events::tree;

use crate::server::live::Live;

/// Why a proof was not given.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProofError {
    /// A parameter out of range: 400 naming it.
    #[error("{reason}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing of the kind exists (no checkpoint yet, none of that size).
    #[error("{0}")]
    NotFound(String),
    /// The store could not give what the proof needs.
    #[error("the log could not be read: {0}")]
    Unreadable(String),
}

fn bad(name: &'static str, reason: String) -> ProofError {
    ProofError::BadParameter { name, reason }
}

/// The checkpoint to serve, as its note: with witnesses configured, the latest *witnessed* one
/// (cosigned by a quorum, the cosignatures in the note) once there is one; the latest signed
/// otherwise.
///
/// # Errors
/// [`ProofError::NotFound`] before the log's first checkpoint.
pub(crate) fn served_checkpoint(live: &Live) -> Result<String, ProofError> {
    if let Some((_, note)) = live.witness_board().witnessed() {
        return Ok(note.clone());
    }
    latest_checkpoint(live).map(|checkpoint| checkpoint.note.clone())
}

/// The latest signed checkpoint.
///
/// # Errors
/// [`ProofError::NotFound`] before the log's first checkpoint.
pub(crate) fn latest_checkpoint(live: &Live) -> Result<Arc<SignedCheckpoint>, ProofError> {
    live.journal
        .status()
        .checkpoint
        .ok_or_else(|| ProofError::NotFound("the log has no signed checkpoint yet".into()))
}

/// The size of the tree the log holds durably.
fn durable_size(live: &Live) -> u64 {
    live.journal.status().head.seq
}

/// Runs `work` on a blocking thread with the log's reader.
async fn with_reader<T: Send + 'static>(
    live: &Live,
    work: impl FnOnce(&dyn LogReader) -> Result<T, ProofError> + Send + 'static,
) -> Result<T, ProofError> {
    let reader = live.reader.clone();
    tokio::task::spawn_blocking(move || work(reader.as_ref()))
        .await
        .map_err(|error| ProofError::Unreadable(error.to_string()))?
}

/// The consistency proof from the tree of `from` records to the tree of `to` records: base64
/// hashes, one a line (RFC 6962 §2.1.2).
///
/// # Errors
/// [`ProofError::BadParameter`] unless `1 <= from <= to <=` the durable size.
pub(crate) async fn consistency(live: &Live, from: u64, to: u64) -> Result<String, ProofError> {
    let size = durable_size(live);
    if to > size {
        return Err(bad(
            "to",
            format!("to is {to}, but the log holds a tree of {size} records"),
        ));
    }
    if from == 0 || from > to {
        return Err(bad(
            "from",
            format!("from must be at least 1 and at most to ({to}), not {from}"),
        ));
    }
    let proof = with_reader(live, move |reader| {
        tree::prove_consistency(from, to, &Nodes(reader))
            .map_err(|error| ProofError::Unreadable(error.to_string()))
    })
    .await?;
    Ok(proof
        .iter()
        .map(|hash| format!("{}\n", hash.to_base64()))
        .collect())
}

/// The tlog-proof of record `seq` under the checkpoint of `size` records (the latest checkpoint
/// when not given): a receipt an operator can hand to a patient or an auditor.
///
/// # Errors
/// [`ProofError::BadParameter`] for a seq or size out of range, [`ProofError::NotFound`] when no
/// checkpoint signs the tree of that size.
pub(crate) async fn inclusion(
    live: &Live,
    seq: u64,
    size: Option<u64>,
) -> Result<String, ProofError> {
    let latest = latest_checkpoint(live)?;
    let durable = durable_size(live);
    let size = size.unwrap_or(latest.size);
    if size == 0 || size > durable {
        return Err(bad(
            "size",
            format!("size must be from 1 to {durable} (the log's records), not {size}"),
        ));
    }
    if seq == 0 || seq > size {
        return Err(bad(
            "seq",
            format!("seq must be from 1 to the tree's size ({size}), not {seq}"),
        ));
    }
    let latest_size = latest.size;
    let receipt = with_reader(live, move |reader| {
        // The checkpoint of a tree of `size` records is the record right after them.
        let checkpoint = if size == latest_size {
            (*latest).clone()
        } else {
            checkpoint_at(reader, size)?
        };
        neuron_events::receipt::make(reader, seq, &checkpoint)
            .map_err(|error| ProofError::Unreadable(neuron_events::full_message(&error)))
    })
    .await?;
    Ok(Receipt::to_text(&receipt))
}

/// The checkpoint that signs the tree of `size` records: record `size + 1`, if it is one.
fn checkpoint_at(reader: &dyn LogReader, size: u64) -> Result<SignedCheckpoint, ProofError> {
    let seq = size + 1;
    let mut found = None;
    reader
        .scan_while(seq, seq, &mut |_, bytes| {
            found = neuron_events::Record::decode(bytes).ok();
            false
        })
        .map_err(|error| ProofError::Unreadable(neuron_events::full_message(&error)))?;
    let signed = found.and_then(|record| match &record.event {
        EventData::LogCheckpoint(checkpoint) => signed_at(seq, checkpoint, size),
        _ => None,
    });
    signed.ok_or_else(|| {
        ProofError::NotFound(format!(
            "no checkpoint signs the tree of {size} records (record {seq} is not its checkpoint): ask for the size of a checkpoint, or leave size out for the latest"
        ))
    })
}

fn signed_at(seq: u64, checkpoint: &LogCheckpoint, size: u64) -> Option<SignedCheckpoint> {
    SignedCheckpoint::of(seq, checkpoint).filter(|signed| signed.size == size)
}
