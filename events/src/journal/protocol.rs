//! What callers and the writer say to each other: the writer's tuning, what a caller learns of
//! its records, what the observer is shown, the status anyone may read, and the requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::checkpoint::SignedCheckpoint;
use crate::event::Event;
use crate::receipt::BatchEvidence;
use crate::record::{Digest, Record};
use crate::store::LogHead;
use crate::time::Timestamp;
use crate::Error;

/// Tuning of the writer.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// A `log.checkpoint` is appended whenever the next seq is a multiple of this (SPEC §3.2).
    pub checkpoint_every: u64,
    /// How many requests may wait for the writer before callers wait to hand theirs over.
    pub queue_capacity: usize,
    /// The most events one batch takes (a caller's events are never split). Small enough that a
    /// burst (ten thousand connections closing at once) is written in many batches rather than
    /// one: sled copies the leaf it changes on every insert and frees the copies only when the
    /// batch is applied, so a batch of thousands held tens of MiB at once, which the allocator
    /// then kept (`scripts/load.sh queue`: 93–118 MiB at the drain's peak with 8,192, 70–79 with
    /// 256). Large enough for a batch of 256 callers of one event (the bench's most appenders)
    /// and for the server at c = 128 (a few events each).
    pub max_batch_events: usize,
    /// The log's C2SP origin: the first line of every checkpoint and its key name (SPEC §3.5).
    pub origin: String,
}

/// The origin of the built-in demo configuration's log (`http://localhost:3000`, organization
/// 1245319599): what tests and tools use when they do not name one.
pub const DEMO_ORIGIN: &str = "localhost/neuron/1245319599";

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            queue_capacity: 65_536,
            max_batch_events: 256,
            origin: DEMO_ORIGIN.to_string(),
        }
    }
}

/// What a caller learns when its event is durable.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The record's seq.
    pub seq: u64,
    /// The hash of the record's bytes: the head of the chain right after it.
    pub hash: Digest,
    /// The time stamped on the record.
    pub at: Timestamp,
    /// When the batch ended with a signed checkpoint: what proves the record under it (its
    /// receipt) without reading the store. Shared by every caller of the batch.
    pub evidence: Option<Arc<BatchEvidence>>,
}

/// What one durable batch cost, for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct BatchReport {
    /// Records written, checkpoints included.
    pub records: usize,
    /// Requests acknowledged.
    pub requests: usize,
    /// Time from taking the batch to its being durable.
    pub commit_time: Duration,
}

/// Sees every committed batch, in order, before any of its callers is acknowledged. The live server
/// applies records to its views here, so a view never shows a record that is not durable and every
/// caller sees its own record in the views once `append` returns.
pub trait CommitObserver: Send + 'static {
    /// Called with the records of one durable batch, in seq order.
    fn committed(&mut self, records: &[Record], report: &BatchReport);
}

impl<F: FnMut(&[Record], &BatchReport) + Send + 'static> CommitObserver for F {
    fn committed(&mut self, records: &[Record], report: &BatchReport) {
        self(records, report);
    }
}

/// The writer's state as others may read it at any moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalStatus {
    /// The durable head.
    pub head: LogHead,
    /// The seq of the last `log.checkpoint` written by this writer, if any.
    pub last_checkpoint: Option<u64>,
    /// The latest checkpoint signed as a note (by this writer, or found in the log at start):
    /// every record up to its size is durable.
    pub checkpoint: Option<Arc<SignedCheckpoint>>,
    /// Why the writer stopped writing, once a batch has failed.
    pub failed: Option<String>,
    /// Why the writer signs no more checkpoints, once told to hold ([`super::Journal::hold_signing`]).
    pub signing_held: Option<String>,
}

/// What a [`super::Journal`] hands the writer.
pub(super) enum Request {
    Append {
        events: Vec<Event>,
        reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
    },
    HoldSigning {
        reason: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}
