//! [`SledLog`] as the journal's [`Log`]: appends, reads, the tree, the evidence.

use std::sync::Arc;

use super::keys::{key_seq, records, seq_key};
use super::log::{AppendStep, Durability, SledLog};
use super::reader::{read_nodes, SledReader};
use super::tree_blocks::{runs, scan_tree, tree_key, walk_block, TREE_PREFIX};
use crate::record::Digest;
use crate::store::{Acknowledged, Appended, Log, LogHead, LogReader, StoredRecord, MAX_SEQ};
use crate::tree::{Hash, Node};
use crate::Error;

impl Log for SledLog {
    fn append(&mut self, records: &[Appended]) -> Result<(), Error> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for appended in records {
            batch.insert(&seq_key(appended.seq), appended.bytes.as_slice());
        }
        let runs = runs(
            records
                .iter()
                .map(|appended| (appended.seq, appended.tree.as_slice())),
        );
        for (first, value) in &runs {
            batch.insert(&tree_key(*first), value.as_slice());
        }
        self.db.apply_batch(batch)?;
        self.injected(AppendStep::Apply)?;
        self.db.flush()?;
        self.injected(AppendStep::Flush)?;
        if self.durability == Durability::PowerLoss {
            self.sync_files()?;
        }
        self.injected(AppendStep::Sync)?;
        let head = LogHead {
            seq: last.seq,
            hash: Digest::of(&last.bytes),
        };
        self.injected(AppendStep::Evidence)?;
        self.write_evidence(head)?;
        self.count_down_fault();
        Ok(())
    }

    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_> {
        Box::new(
            records(&self.db, from, to)
                .map(|entry| entry.map(|(seq, value)| (seq, value.to_vec()))),
        )
    }

    fn scan(&self, from: u64, to: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<(), Error> {
        for entry in records(&self.db, from, to) {
            let (seq, value) = entry?;
            visit(seq, &value);
        }
        Ok(())
    }

    fn head(&self) -> Result<LogHead, Error> {
        match self.db.get_lt([TREE_PREFIX])? {
            None => Ok(LogHead::EMPTY),
            Some((key, value)) => Ok(LogHead {
                seq: key_seq(&key)?,
                hash: Digest::of(&value),
            }),
        }
    }

    fn last_key(&self) -> Result<u64, Error> {
        match self.db.get_lt([TREE_PREFIX])? {
            None => Ok(0),
            Some((key, _)) => key_seq(&key),
        }
    }

    fn tree_size(&self) -> Result<u64, Error> {
        let last_block = self
            .db
            .range(tree_key(0)..=tree_key(MAX_SEQ))
            .next_back()
            .transpose()?;
        let Some((key, value)) = last_block else {
            return Ok(0);
        };
        let first = key_seq(key.get(1..).unwrap_or_default())?;
        let mut last = first.saturating_sub(1);
        walk_block(first, &value, &mut |seq, _| {
            last = seq;
            true
        })?;
        Ok(last)
    }

    fn scan_tree(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), Error> {
        scan_tree(&self.db, from, to, visit)
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        read_nodes(&self.db, nodes)
    }

    fn add_tree(&mut self, first_seq: u64, tree: &[Vec<Hash>]) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for (first, value) in runs((first_seq..).zip(tree.iter().map(Vec::as_slice))) {
            batch.insert(&tree_key(first), value);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        if self.durability == Durability::PowerLoss {
            self.sync_files()?;
        }
        Ok(())
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(SledReader {
            db: self.db.clone(),
        })
    }

    fn acknowledged(&self) -> Acknowledged {
        self.acknowledged.clone()
    }

    fn sync_evidence(&mut self) -> Result<(), Error> {
        match &self.head_file {
            Some(file) => file.sync(),
            None => Ok(()),
        }
    }

    fn abandon(&mut self) {
        // sled flushes whatever it still holds in memory when its last handle is dropped: a
        // handle that is never dropped keeps that from happening. The process exits soon after.
        std::mem::forget(self.db.clone());
    }
}
