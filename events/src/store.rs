//! Where records rest. [`Log`] is the small storage trait the journal writes through and the
//! verifier and projections read through; `SledLog` (feature `store`, in `on_sled`) is its sled
//! 0.34 implementation, and [`MemoryLog`] keeps records in memory for tests and in-process
//! replays.
//!
//! Durability is the store's job: [`Log::append`] returns only when the records survive a crash
//! and a power loss.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::record::Digest;
use crate::tree::{Frontier, Hash, Node, NodeReader, TreeError};
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

/// One record as an append writes it: its seq, its bytes, and the Merkle tree hashes it completes
/// ([`Frontier::append`]: its leaf hash, then the root of every perfect subtree it closes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The record's seq.
    pub seq: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The tree hashes stored with it.
    pub tree: Vec<Hash>,
}

impl Appended {
    /// Records numbered right after the tree `frontier` ends, with the tree hashes each completes;
    /// `frontier` moves on past them.
    pub fn all(records: Vec<StoredRecord>, frontier: &mut Frontier) -> Vec<Self> {
        records
            .into_iter()
            .map(|(seq, bytes)| {
                let tree = frontier.append(crate::tree::leaf_hash(&bytes));
                Self { seq, bytes, tree }
            })
            .collect()
    }
}

/// What others read of a log while a journal owns it: records and stored tree hashes, from any
/// thread. It may see what is applied but not yet durable: callers bound their reads by the
/// journal's durable head.
pub trait LogReader: Send + Sync + 'static {
    /// Calls `visit` with each record with `from <= seq <= to`, in seq order, until it returns
    /// `false`.
    ///
    /// # Errors
    /// The store's error.
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error>;

    /// The stored hashes of `nodes`, in order.
    ///
    /// # Errors
    /// [`Error::TreeMissing`] for a node the store does not hold; the store's error.
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error>;
}

/// A log or its reader as the tree's [`NodeReader`]: a store error becomes the tree's.
pub struct Nodes<'a, R: ?Sized>(pub &'a R);

impl<R: LogReader + ?Sized> NodeReader for Nodes<'_, R> {
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, TreeError> {
        self.0
            .read_nodes(nodes)
            .map_err(|error| TreeError::Missing {
                missing: crate::error::full_message(&error),
            })
    }
}

/// A log as the tree's [`NodeReader`], for its owner (the journal, an import).
pub struct LogNodes<'a>(pub &'a dyn Log);

impl NodeReader for LogNodes<'_> {
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, TreeError> {
        self.0
            .read_nodes(nodes)
            .map_err(|error| TreeError::Missing {
                missing: crate::error::full_message(&error),
            })
    }
}

/// The right edge of a log's stored tree.
///
/// # Errors
/// [`Error::TreeMissing`] when the store lacks a hash of it; the store's error.
pub fn frontier_of(log: &dyn Log) -> Result<Frontier, Error> {
    let size = log.tree_size()?;
    Frontier::read(size, &LogNodes(log)).map_err(|error| Error::TreeMissing {
        reason: error.to_string(),
    })
}

/// Where in a store the hash of `node` is found: the seq of the record whose append completed it,
/// and its position among that record's tree hashes.
///
/// # Errors
/// [`Error::TreeMissing`] for a node no store can hold.
pub fn node_place(node: &Node) -> Result<(u64, usize), Error> {
    crate::tree::stored_position(node)
        .and_then(|(leaf, position)| leaf.checked_add(1).map(|seq| (seq, position)))
        .ok_or_else(|| Error::TreeMissing {
            reason: format!("no record stores level {} node {}", node.level, node.index),
        })
}

/// Picks each node's hash out of the tree hashes stored with the record that completed it;
/// `stored(seq)` reads those (once per record, however many nodes it holds).
///
/// # Errors
/// [`Error::TreeMissing`] when a record has no tree hashes or too few; `stored`'s error.
pub fn pick_nodes(
    nodes: &[Node],
    stored: &mut dyn FnMut(u64) -> Result<Option<Vec<u8>>, Error>,
) -> Result<Vec<Hash>, Error> {
    let mut read: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
    let mut hashes = Vec::with_capacity(nodes.len());
    for node in nodes {
        let (seq, position) = node_place(node)?;
        if let std::collections::btree_map::Entry::Vacant(vacant) = read.entry(seq) {
            vacant.insert(stored(seq)?);
        }
        let hash = read
            .get(&seq)
            .and_then(Option::as_ref)
            .and_then(|value| value.get(position * 32..position * 32 + 32))
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| Error::TreeMissing {
                reason: format!(
                    "record {seq} holds no tree hash at level {position} (level {} node {})",
                    node.level, node.index
                ),
            })?;
        hashes.push(Hash(hash));
    }
    Ok(hashes)
}

/// The tree hashes stored with one record, as bytes: 32 per hash, level by level.
pub fn tree_value(tree: &[Hash]) -> Vec<u8> {
    tree.iter().flat_map(|hash| hash.0).collect()
}

/// What a log knows, from outside its store, about the last record it acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acknowledged {
    /// The head file names this record: the store must hold it.
    Head(LogHead),
    /// A store written before head files existed: the head it recorded inside itself, which a
    /// damaged store loses along with its tail. The next append writes a head file.
    Legacy(LogHead),
    /// The store holds records but its head file is gone: a lost tail could not be detected.
    Missing,
    /// The head file cannot be read as one.
    Damaged {
        /// What is wrong with it.
        reason: String,
    },
    /// The store keeps no evidence (an in-memory log).
    NotKept,
}

impl Acknowledged {
    /// The head the store must hold, when the evidence names one.
    pub fn head(&self) -> Option<LogHead> {
        match self {
            Self::Head(head) | Self::Legacy(head) => Some(*head),
            Self::Missing | Self::Damaged { .. } | Self::NotKept => None,
        }
    }
}

/// An append-only store of records, keyed by seq, with the Merkle tree's stored hashes beside
/// them (ARCHITECTURE.md, "The `Log` seam").
pub trait Log: Send + Sync + 'static {
    /// Appends records, already chained and numbered right after the head, with their tree
    /// hashes, as one atomic batch, and returns only once they are durable.
    ///
    /// # Errors
    /// The store's error; then none of the batch may be assumed written.
    fn append(&mut self, batch: &[Appended]) -> Result<(), Error>;

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

    /// How many leaves the stored tree holds: the seq of the last record stored with tree hashes.
    ///
    /// # Errors
    /// The store's error.
    fn tree_size(&self) -> Result<u64, Error>;

    /// The stored hashes of `nodes`, in order.
    ///
    /// # Errors
    /// [`Error::TreeMissing`] for a node the store does not hold; the store's error.
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error>;

    /// Calls `visit` with the tree hashes stored with each record `from..=to` that has them
    /// (its leaf, then the root of each perfect subtree it completes), in seq order: how
    /// verification reads them all, in one pass.
    ///
    /// # Errors
    /// [`Error::TreeMissing`] for stored hashes that are damaged; the store's error.
    fn scan_tree(&self, from: u64, to: u64, visit: &mut dyn FnMut(u64, &[u8]))
        -> Result<(), Error>;

    /// Stores the tree hashes of records already stored (`tree[i]` for seq `first_seq + i`),
    /// durably: a store written before the tree gets its tree once, at a server's start.
    ///
    /// # Errors
    /// The store's error.
    fn add_tree(&mut self, first_seq: u64, tree: &[Vec<Hash>]) -> Result<(), Error>;

    /// A reader others may use while this log is owned by a journal.
    fn reader(&self) -> Arc<dyn LogReader>;

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
#[cfg(feature = "store")]
mod on_postgres;
#[cfg(feature = "store")]
pub use on_postgres::{Location as PostgresLocation, PostgresLog, Replication, Standby};

/// Records kept in memory: for tests, benchmarks, and replays of an imported export. Clones share
/// the same records, so a test can keep a handle while a journal owns another.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    inner: Arc<std::sync::Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    records: BTreeMap<u64, Vec<u8>>,
    tree: BTreeMap<u64, Vec<u8>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic while holding the lock cannot leave the maps half-updated (every change is one
        // call), so a poisoned lock still guards consistent records.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The records `from..=to`, copied out from under the lock (none when `from > to`).
    fn records_in(&self, from: u64, to: u64) -> Vec<StoredRecord> {
        if from > to {
            return Vec::new();
        }
        self.inner()
            .records
            .range(from..=to)
            .map(|(seq, bytes)| (*seq, bytes.clone()))
            .collect()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.inner().records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.inner().records.is_empty()
    }

    /// Every record's bytes, in seq order.
    pub fn all_bytes(&self) -> Vec<Vec<u8>> {
        self.inner().records.values().cloned().collect()
    }

    /// Appends records numbered from 1, with their tree: for tests that build a log by hand.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn from_records(records: Vec<StoredRecord>) -> Result<Self, Error> {
        let mut log = Self::new();
        log.append(&Appended::all(records, &mut Frontier::default()))?;
        Ok(log)
    }
}

impl LogReader for MemoryLog {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        for (seq, bytes) in self.records_in(from, to) {
            if !visit(seq, &bytes) {
                break;
            }
        }
        Ok(())
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        let inner = self.inner();
        pick_nodes(nodes, &mut |seq| Ok(inner.tree.get(&seq).cloned()))
    }
}

impl Log for MemoryLog {
    fn append(&mut self, batch: &[Appended]) -> Result<(), Error> {
        let mut inner = self.inner();
        for appended in batch {
            inner.records.insert(appended.seq, appended.bytes.clone());
            inner.tree.insert(appended.seq, tree_value(&appended.tree));
        }
        Ok(())
    }

    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_> {
        Box::new(self.records_in(from, to).into_iter().map(Ok))
    }

    fn head(&self) -> Result<LogHead, Error> {
        Ok(match self.inner().records.last_key_value() {
            None => LogHead::EMPTY,
            Some((seq, bytes)) => LogHead {
                seq: *seq,
                hash: Digest::of(bytes),
            },
        })
    }

    fn tree_size(&self) -> Result<u64, Error> {
        Ok(self
            .inner()
            .tree
            .last_key_value()
            .map_or(0, |(seq, _)| *seq))
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        LogReader::read_nodes(self, nodes)
    }

    fn scan_tree(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), Error> {
        if from > to {
            return Ok(());
        }
        for (seq, hashes) in self.inner().tree.range(from..=to) {
            visit(*seq, hashes);
        }
        Ok(())
    }

    fn add_tree(&mut self, first_seq: u64, tree: &[Vec<Hash>]) -> Result<(), Error> {
        let mut inner = self.inner();
        for (seq, hashes) in (first_seq..).zip(tree) {
            inner.tree.insert(seq, tree_value(hashes));
        }
        Ok(())
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(self.clone())
    }
}
