//! [`SledReader`]: reads a sled log while its writer appends.

use super::keys::records;
use super::tree_blocks::stored_at;
use crate::store::{pick_nodes, LogReader};
use crate::tree::{Hash, Node};
use crate::Error;

/// A read-only handle on a [`SledLog`] that others may hold while a journal owns the log: the
/// live server streams its log to operators through one. It sees whatever sled has applied,
/// which may run ahead of what is durable: callers bound their reads by the journal's durable
/// head.
#[derive(Clone)]
pub struct SledReader {
    pub(super) db: sled::Db,
}

pub(super) fn read_nodes(db: &sled::Db, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
    pick_nodes(nodes, &mut |seq| stored_at(db, seq))
}

impl LogReader for SledReader {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        for entry in records(&self.db, from, to) {
            let (seq, value) = entry?;
            if !visit(seq, &value) {
                break;
            }
        }
        Ok(())
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        read_nodes(&self.db, nodes)
    }
}
