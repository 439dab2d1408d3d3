//! Tampering with a sled log on purpose, bypassing the chain: only for tests (feature
//! `test-support`), never in a server.

use super::keys::seq_key;
use super::log::SledLog;
use super::tree_blocks::{runs, scan_tree, tree_key};
use crate::store::MAX_SEQ;
use crate::tree::Hash;
use crate::Error;

impl SledLog {
    /// Overwrites or removes raw entries, bypassing the chain: only for tests that tamper with a
    /// log on purpose.
    pub fn tamper(&self, seq: u64, bytes: Option<&[u8]>) -> Result<(), Error> {
        match bytes {
            Some(bytes) => self.db.insert(seq_key(seq), bytes)?,
            None => self.db.remove(seq_key(seq))?,
        };
        self.db.flush()?;
        Ok(())
    }

    /// Overwrites or removes the tree hashes stored with record `seq`: only for tests.
    pub fn tamper_tree(&self, seq: u64, hashes: Option<&[u8]>) -> Result<(), Error> {
        // Every stored entry read, the one changed, and the runs written again.
        let mut entries = std::collections::BTreeMap::new();
        scan_tree(&self.db, 1, MAX_SEQ, &mut |at, stored| {
            entries.insert(at, stored.to_vec());
        })?;
        match hashes {
            Some(hashes) => entries.insert(seq, hashes.to_vec()),
            None => entries.remove(&seq),
        };
        for key in self.db.range(tree_key(0)..=tree_key(u64::MAX)).keys() {
            self.db.remove(key?)?;
        }
        let entries: Vec<(u64, Vec<Hash>)> = entries
            .into_iter()
            .map(|(at, stored)| {
                let hashes = stored
                    .chunks_exact(32)
                    .filter_map(|chunk| <[u8; 32]>::try_from(chunk).ok().map(Hash))
                    .collect();
                (at, hashes)
            })
            .collect();
        for (first, value) in runs(entries.iter().map(|(at, hashes)| (*at, hashes.as_slice()))) {
            self.db.insert(tree_key(first), value)?;
        }
        self.db.flush()?;
        Ok(())
    }
}
