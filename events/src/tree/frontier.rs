//! The right edge of a tree: what appending needs, read once, then kept.

use super::ranges::{cover, fold};
use super::{node_hash, Hash, Node, NodeReader, TreeError};

/// The right edge of a tree: the roots of its perfect subtrees, largest first. Enough to append
/// leaves and to compute the root, without reading anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    edge: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, read from the store.
    ///
    /// # Errors
    /// The reader's error.
    pub fn read(size: u64, reader: &dyn NodeReader) -> Result<Self, TreeError> {
        let nodes = cover(0, size);
        let hashes = reader.read_nodes(&nodes)?;
        if hashes.len() != nodes.len() {
            return Err(TreeError::Missing {
                missing: format!("the right edge of a tree of {size} leaves"),
            });
        }
        Ok(Self {
            size,
            edge: nodes.iter().map(|node| node.level).zip(hashes).collect(),
        })
    }

    /// How many leaves the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.edge.iter().map(|(_, hash)| *hash).collect();
        fold(&hashes).unwrap_or_else(Hash::empty)
    }

    /// The hash of `node` when it is one of the edge's perfect subtrees.
    pub fn edge_node(&self, node: &Node) -> Option<Hash> {
        let mut start = 0u64;
        for &(level, hash) in &self.edge {
            if level == node.level && start >> level == node.index {
                return Some(hash);
            }
            start += 1u64 << level;
        }
        None
    }

    /// Appends a leaf: the hashes the store keeps for it, the leaf's first, then the root of each
    /// perfect subtree it completes, level by level (the value a store files under the leaf).
    pub fn append(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut stored = vec![leaf];
        let mut level = 0u8;
        let mut hash = leaf;
        while let Some(&(last_level, last)) = self.edge.last() {
            if last_level != level {
                break;
            }
            self.edge.pop();
            hash = node_hash(&last, &hash);
            level += 1;
            stored.push(hash);
        }
        self.edge.push((level, hash));
        self.size += 1;
        stored
    }
}

/// Where the hash of `node` stands in the stored value of the leaf that completed it: at its level.
/// `None` for a node no leaf stores (beyond the largest tree).
pub fn stored_position(node: &Node) -> Option<(u64, usize)> {
    let leaf = node.stored_with()?;
    Some((leaf, usize::from(node.level)))
}
