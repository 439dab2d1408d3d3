//! The Merkle tree rebuilt from the records as they are checked: the root each checkpoint must
//! sign, and the tree hashes a store keeps compared with the ones its records give. A record's
//! leaf counts only once the record is known sound (the checker holds it until the next record
//! links to it), so the tree always holds exactly the sound records before the one being checked.

use crate::tree::{Frontier, Hash};

use super::parse::Stored;
use super::report::{Fault, SeqRange, StoredTree, TreeSummary};

/// The tree being rebuilt.
#[derive(Default)]
pub(super) struct TreeCheck {
    frontier: Frontier,
    held: Option<(u64, Hash, Stored)>,
    /// The first record a store kept no tree hashes for.
    first_absent: Option<u64>,
    /// Whether a store kept tree hashes for some record.
    any_stored: bool,
    /// Whether the source is an export.
    not_kept: bool,
}

impl TreeCheck {
    /// Holds record `seq`'s leaf until [`TreeCheck::confirm`].
    pub(super) fn hold(&mut self, seq: u64, leaf: Hash, stored: Stored) {
        self.held = Some((seq, leaf, stored));
    }

    /// Puts the held leaf in the tree: its record is sound. The store's hashes for it must be the
    /// rebuilt tree's.
    ///
    /// # Errors
    /// The seq and fault where the store's tree differs.
    pub(super) fn confirm(&mut self) -> Result<(), (u64, Fault)> {
        let Some((seq, leaf, stored)) = self.held.take() else {
            return Ok(());
        };
        let rebuilt = self.frontier.append(leaf);
        match stored {
            Stored::NotKept => self.not_kept = true,
            Stored::Absent => {
                self.first_absent.get_or_insert(seq);
            }
            Stored::Hashes(hashes) => {
                self.any_stored = true;
                if hashes != rebuilt {
                    return Err((seq, Fault::StoredTreeMismatch));
                }
            }
        }
        Ok(())
    }

    /// The root over the confirmed records.
    pub(super) fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// How many records are confirmed.
    pub(super) fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// After the last record: a store keeps the tree for every record or for none.
    ///
    /// # Errors
    /// The seq and fault of the first record without its tree hashes, in a store that keeps them
    /// for others.
    pub(super) fn finish(&self) -> Result<(), (u64, Fault)> {
        match self.first_absent {
            Some(first) if self.any_stored => Err((
                first,
                Fault::TreeIncomplete {
                    range: SeqRange {
                        first,
                        last: self.frontier.size(),
                    },
                },
            )),
            _ => Ok(()),
        }
    }

    /// What was found.
    pub(super) fn summary(&self) -> TreeSummary {
        TreeSummary {
            size: self.frontier.size(),
            root: self.frontier.root().to_base64(),
            stored: if self.not_kept {
                StoredTree::NotKept
            } else if self.any_stored || self.frontier.size() == 0 {
                StoredTree::Checked
            } else {
                StoredTree::NotStored
            },
        }
    }
}
