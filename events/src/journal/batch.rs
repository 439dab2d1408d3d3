//! One group commit as it is built: records numbered, chained, stamped and put in the tree, with
//! what they need of a checkpoint; a request that fails is taken back whole.

use std::sync::Arc;

use crate::checkpoint::SignedCheckpoint;
use crate::event::{Event, EventData};
use crate::record::{encode, Digest, Record};
use crate::store::{Appended, LogHead};
use crate::time::Timestamp;
use crate::tree::Frontier;
use crate::Error;

/// The records of one group commit as they are built: numbered, chained, in the tree, with what
/// they need of a checkpoint. A request that fails is taken back whole ([`Batch::rollback`]).
pub(super) struct Batch {
    /// The tree before the batch, to rebuild the frontier after a rollback.
    pub(super) start: Frontier,
    pub(super) head: LogHead,
    pub(super) frontier: Frontier,
    pub(super) appended: Vec<Appended>,
    pub(super) records: Vec<Record>,
    /// The seq of the last checkpoint in the batch.
    pub(super) last_checkpoint: Option<u64>,
    /// The last checkpoint in the batch, as a signed note.
    pub(super) checkpoint: Option<Arc<SignedCheckpoint>>,
    /// Whether a `connection.handshake_completed` follows the batch's last checkpoint.
    pub(super) completed_since_checkpoint: bool,
    /// Whether the last record (in the batch, or before it) is a checkpoint: a periodic one is
    /// then not needed.
    pub(super) ends_with_checkpoint: bool,
    /// The time of the last record (in the batch, or before it).
    pub(super) last_at: Option<Timestamp>,
}

/// Where a batch stood before a request, to take the request back.
pub(super) struct Mark {
    len: usize,
    head: LogHead,
    last_checkpoint: Option<u64>,
    checkpoint: Option<Arc<SignedCheckpoint>>,
    completed_since_checkpoint: bool,
    ends_with_checkpoint: bool,
    last_at: Option<Timestamp>,
}

impl Batch {
    pub(super) fn new(
        head: LogHead,
        frontier: Frontier,
        ends_with_checkpoint: bool,
        last_at: Option<Timestamp>,
    ) -> Self {
        Self {
            start: frontier.clone(),
            head,
            frontier,
            appended: Vec::new(),
            records: Vec::new(),
            last_checkpoint: None,
            checkpoint: None,
            completed_since_checkpoint: false,
            ends_with_checkpoint,
            last_at,
        }
    }

    /// Numbers, chains and stamps `event`, puts it in the tree, and returns its position.
    pub(super) fn push(&mut self, event: Event, at: Timestamp) -> Result<usize, Error> {
        let seq = self.head.seq + 1;
        let bytes = encode(seq, at, &event, &self.head.hash)?;
        let hash = Digest::of(&bytes);
        let tree = self.frontier.append(crate::tree::leaf_hash(&bytes));
        if matches!(event.data, EventData::HandshakeCompleted(_)) {
            self.completed_since_checkpoint = true;
        }
        self.ends_with_checkpoint = matches!(event.data, EventData::LogCheckpoint(_));
        self.last_at = Some(at);
        self.records.push(Record {
            seq,
            at,
            session: event.session,
            event: event.data,
            prev: self.head.hash,
            hash,
        });
        self.appended.push(Appended { seq, bytes, tree });
        self.head = LogHead { seq, hash };
        Ok(self.records.len() - 1)
    }

    pub(super) fn mark(&self) -> Mark {
        Mark {
            len: self.records.len(),
            head: self.head,
            last_checkpoint: self.last_checkpoint,
            checkpoint: self.checkpoint.clone(),
            completed_since_checkpoint: self.completed_since_checkpoint,
            ends_with_checkpoint: self.ends_with_checkpoint,
            last_at: self.last_at,
        }
    }

    pub(super) fn rollback(&mut self, mark: Mark) {
        self.records.truncate(mark.len);
        self.appended.truncate(mark.len);
        self.head = mark.head;
        self.last_checkpoint = mark.last_checkpoint;
        self.checkpoint = mark.checkpoint;
        self.completed_since_checkpoint = mark.completed_since_checkpoint;
        self.ends_with_checkpoint = mark.ends_with_checkpoint;
        self.last_at = mark.last_at;
        // Rare (an event that cannot be a record): the tree's edge is rebuilt from the leaves kept.
        let mut frontier = self.start.clone();
        for appended in &self.appended {
            if let Some(leaf) = appended.tree.first() {
                frontier.append(*leaf);
            }
        }
        self.frontier = frontier;
    }
}
