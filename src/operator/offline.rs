//! The operator listener's state without a server: its views and a log of records, and a journal
//! whose every write fails, as on a full disk. Requests are then answered as the listener would
//! ([`super::answer_offline`]) while nothing they do changes what the next one sees: the unit
//! tests and the admin fuzz target work on it.

use std::sync::Arc;

use neuron_events::store::{Appended, LogReader, StoredRecord};
use neuron_events::tree::{Hash, Node};
use neuron_events::{
    BatchReport, Clock, Journal, JournalOptions, Log, LogHead, MemoryLog, NeuronKey, Record,
};
use neuron_projections::Views;

use super::OperatorState;
use crate::server::live::Live;

/// A log that serves the records it holds and refuses every write.
struct Unwritable(MemoryLog);

impl Log for Unwritable {
    fn append(&mut self, _: &[Appended]) -> Result<(), neuron_events::Error> {
        Err(Self::full())
    }

    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, neuron_events::Error>> + '_> {
        self.0.read(from, to)
    }

    fn head(&self) -> Result<LogHead, neuron_events::Error> {
        self.0.head()
    }

    fn tree_size(&self) -> Result<u64, neuron_events::Error> {
        self.0.tree_size()
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, neuron_events::Error> {
        Log::read_nodes(&self.0, nodes)
    }

    fn scan_tree(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), neuron_events::Error> {
        self.0.scan_tree(from, to, visit)
    }

    fn add_tree(&mut self, _: u64, _: &[Vec<Hash>]) -> Result<(), neuron_events::Error> {
        Err(Self::full())
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        self.0.reader()
    }
}

impl Unwritable {
    fn full() -> neuron_events::Error {
        neuron_events::Error::Corrupt {
            reason: "this log takes no writes (the disk is full)".into(),
        }
    }
}

impl OperatorState {
    /// The state over `views` and the records of `log`, as a listener on 127.0.0.1:3001 with no
    /// tokens and the default configuration, stamping `clock`'s time. Must be called inside a
    /// Tokio runtime. The stop signals are never given (their sender is leaked, one per state).
    ///
    /// # Errors
    /// When the journal's writer thread cannot be started.
    pub(crate) fn offline(
        views: Views,
        log: MemoryLog,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, neuron_events::Error> {
        let journal = Journal::start(
            Box::new(Unwritable(log.clone())),
            Arc::new(NeuronKey::from_seed([7; 32])),
            clock.clone(),
            JournalOptions::default(),
            Box::new(|_: &[Record], _: &BatchReport| {}),
        )?;
        let reader = log.reader();
        let live = Live::offline(journal, reader, views, clock);
        Ok(OperatorState::new(
            Arc::new(live),
            Arc::new(log),
            Vec::new(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 3001)),
            &crate::config::Config::default(),
        ))
    }
}
