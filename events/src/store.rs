//! Where records rest. [`Log`] is the small storage trait the journal writes through and the
//! verifier and projections read through; `SledLog` (feature `store`, in `on_sled`) is its sled
//! 0.34 implementation, and [`MemoryLog`] keeps records in memory for tests and in-process
//! replays.
//!
//! Durability is the store's job: [`Log::append`] returns only when the records survive a crash
//! and a power loss.

use std::collections::BTreeMap;

use crate::evidence::Acknowledged;
use crate::record::Digest;
use crate::Error;

/// The position of a log's last record: its seq and the hash of its bytes. An empty log has seq 0
/// and the genesis hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    /// The last seq, 0 when empty.
    pub seq: u64,
    /// The hash of the last record's bytes, [`Digest::GENESIS`] when empty.
    pub hash: Digest,
}

impl LogHead {
    /// The head of an empty log.
    pub const EMPTY: LogHead = LogHead {
        seq: 0,
        hash: Digest::GENESIS,
    };
}

/// One stored record: the seq it is filed under and its bytes.
pub type StoredRecord = (u64, Vec<u8>);

/// An append-only store of records, keyed by seq.
pub trait Log: Send + Sync + 'static {
    /// Appends records, already chained and numbered right after the head, as one atomic batch,
    /// and returns only once they are durable.
    ///
    /// # Errors
    /// The store's error; then none of the batch may be assumed written.
    fn append(&mut self, records: &[StoredRecord]) -> Result<(), Error>;

    /// The records with `from <= seq <= to`, in seq order.
    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_>;

    /// Calls `visit` with each record with `from <= seq <= to`, in seq order, without copying it
    /// out of the store where the store allows.
    ///
    /// # Errors
    /// The store's error.
    fn scan(&self, from: u64, to: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<(), Error> {
        for record in self.read(from, to) {
            let (seq, bytes) = record?;
            visit(seq, &bytes);
        }
        Ok(())
    }

    /// The last record's seq and hash, recovered from the last stored record.
    ///
    /// # Errors
    /// The store's error.
    fn head(&self) -> Result<LogHead, Error>;

    /// The highest seq a record is filed under, 0 when empty. Unlike [`Log::head`] it does not read
    /// the record, so it still answers when the last record is damaged.
    ///
    /// # Errors
    /// The store's error.
    fn last_key(&self) -> Result<u64, Error> {
        Ok(self.head()?.seq)
    }

    /// What the log knows, from outside its store, about the last record it acknowledged
    /// ([`crate::evidence`]). Opening and verification check the store against it.
    fn acknowledged(&self) -> Acknowledged {
        Acknowledged::NotKept
    }

    /// Makes the evidence of the acknowledged head durable. The journal calls it after a batch
    /// that holds a checkpoint.
    ///
    /// # Errors
    /// The store's error.
    fn sync_evidence(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Makes everything durable before the log is let go: the journal calls it when it closes.
    ///
    /// # Errors
    /// The store's error.
    fn close(&mut self) -> Result<(), Error> {
        self.sync_evidence()
    }

    /// Gives the store up after a failed append: nothing more may reach the disk from this
    /// process, not even what the store would write when it is dropped (fail-stop, SPEC §3.4).
    fn abandon(&mut self) {}
}

/// The highest seq a sled log files: keys above it would sort past the legacy head key.
pub const MAX_SEQ: u64 = (1 << 56) - 1;

#[cfg(feature = "store")]
mod on_sled;
#[cfg(feature = "store")]
pub use on_sled::{AppendStep, Durability, SledLog, SledReader};

/// Records kept in memory: for tests, benchmarks, and replays of an imported export. Clones share
/// the same records, so a test can keep a handle while a journal owns another.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    records: std::sync::Arc<std::sync::Mutex<BTreeMap<u64, Vec<u8>>>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (every change is one
        // call), so a poisoned lock still guards consistent records.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }

    /// Every record's bytes, in seq order.
    pub fn all_bytes(&self) -> Vec<Vec<u8>> {
        self.records().values().cloned().collect()
    }
}

impl Log for MemoryLog {
    fn append(&mut self, records: &[StoredRecord]) -> Result<(), Error> {
        self.records().extend(records.iter().cloned());
        Ok(())
    }

    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_> {
        if from > to {
            return Box::new(std::iter::empty());
        }
        let selected: Vec<StoredRecord> = self
            .records()
            .range(from..=to)
            .map(|(seq, bytes)| (*seq, bytes.clone()))
            .collect();
        Box::new(selected.into_iter().map(Ok))
    }

    fn head(&self) -> Result<LogHead, Error> {
        Ok(match self.records().last_key_value() {
            None => LogHead::EMPTY,
            Some((seq, bytes)) => LogHead {
                seq: *seq,
                hash: Digest::of(bytes),
            },
        })
    }
}
