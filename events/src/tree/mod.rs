//! The log's RFC 6962 Merkle tree (= RFC 9162 §2.1), beside the blake3 chain: leaf `i` is the
//! record with seq `i + 1`, hashed as `SHA-256(0x00 ‖ stored bytes)`, interior nodes as
//! `SHA-256(0x01 ‖ left ‖ right)`. SPEC §3.5.
//!
//! A store keeps the tree as stored hashes: the root of every perfect subtree, written once, when
//! its last leaf is appended ([`Frontier::append`] says which). A [`Node`] names one: `level` (a
//! perfect subtree of `2^level` leaves) and `index` (the `index`-th such subtree from the left).
//! Tree hashes, inclusion proofs and consistency proofs for any size are folded from O(log n)
//! stored hashes, read in one call ([`NodeReader`]), never from records.
//!
//! Everything here is total: sizes, indexes and levels out of range, proofs of the wrong length and
//! a reader that answers with the wrong number of hashes are errors ([`TreeError`]), never a panic.
//!
//! This file holds the nouns; `ranges.rs` RFC 6962's recursion, `proofs.rs` the hashes and proofs
//! made and checked, `frontier.rs` the right edge.

mod frontier;
mod proofs;
mod ranges;

pub use frontier::{stored_position, Frontier};
pub use proofs::{
    prove_consistency, prove_inclusion, tree_hash, verify_consistency, verify_inclusion,
};

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash of the tree.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_base64())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Hash {
    /// The hash of the empty tree: SHA-256 of nothing.
    pub fn empty() -> Self {
        Self(Sha256::digest([]).into())
    }

    /// Standard base64 with padding, as checkpoints and proofs write hashes.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Reads a hash written in standard base64 (canonical, with padding).
    ///
    /// # Errors
    /// [`TreeError::BadHash`] when the text is not the canonical base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, TreeError> {
        use base64::Engine as _;
        let bad = || TreeError::BadHash {
            text: text.chars().take(64).collect(),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad())?;
        let hash = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())?;
        let hash = Self(hash);
        // Only one text per hash: a proof or a note that differs in its encoding is not the same.
        if hash.to_base64() != text {
            return Err(bad());
        }
        Ok(hash)
    }
}

/// The leaf hash of a record's stored bytes.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(bytes);
    Hash(hasher.finalize().into())
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The root of a perfect subtree: leaves `index << level` up to `(index + 1) << level`, excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// The subtree holds `2^level` leaves.
    pub level: u8,
    /// Which one, counting from the left.
    pub index: u64,
}

impl Node {
    /// The leaf whose append completes this subtree, and so stores its hash: its last leaf.
    /// `None` past the largest tree there can be.
    pub fn stored_with(&self) -> Option<u64> {
        let next = self.index.checked_add(1)?;
        if self.level > 63 || next.leading_zeros() < u32::from(self.level) {
            return None;
        }
        Some((next << self.level) - 1)
    }
}

/// What went wrong with the tree: a bad argument, a bad proof, or a store that does not hold what
/// it must.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A leaf index at or beyond the tree's size.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree's size.
        size: u64,
    },
    /// Sizes that no proof can relate: an old size larger than the new one, or an empty tree.
    #[error("no consistency proof from a tree of {old} leaves to one of {new}")]
    SizesOutOfOrder {
        /// The older tree's size.
        old: u64,
        /// The newer tree's size.
        new: u64,
    },
    /// A proof that does not lead to the root it must.
    #[error("the proof does not verify: {reason}")]
    BadProof {
        /// Where it fails.
        reason: &'static str,
    },
    /// A hash that is not the canonical base64 of 32 bytes.
    #[error("not a base64 SHA-256 hash: {text:?}")]
    BadHash {
        /// The text, shortened.
        text: String,
    },
    /// The store did not hold a hash the tree needs, or answered with something else.
    #[error("the stored tree lacks the hash of {missing}")]
    Missing {
        /// What was missing, in words.
        missing: String,
    },
}

/// Reads stored hashes.
pub trait NodeReader {
    /// The hashes of `nodes`, in the same order. A node the store does not hold is an error.
    ///
    /// # Errors
    /// [`TreeError::Missing`], or the store's own error in words.
    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, TreeError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::ranges::split;
    use super::*;
    use std::collections::HashMap;

    /// A tree kept in memory as a store keeps it: each leaf's stored hashes.
    #[derive(Default)]
    pub(crate) struct Stored {
        pub(crate) values: HashMap<u64, Vec<Hash>>,
        pub(crate) frontier: Frontier,
    }

    impl Stored {
        fn with_leaves(count: u64) -> Self {
            let mut stored = Self::default();
            for i in 0..count {
                let leaf = leaf_hash(&i.to_be_bytes());
                let value = stored.frontier.append(leaf);
                stored.values.insert(i, value);
            }
            stored
        }
    }

    impl NodeReader for Stored {
        fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, TreeError> {
            nodes
                .iter()
                .map(|node| {
                    let (leaf, position) = stored_position(node).ok_or(TreeError::Missing {
                        missing: format!("{node:?}"),
                    })?;
                    self.values
                        .get(&leaf)
                        .and_then(|value| value.get(position))
                        .copied()
                        .ok_or(TreeError::Missing {
                            missing: format!("{node:?}"),
                        })
                })
                .collect()
        }
    }

    /// RFC 6962's MTH, straight from its definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Hash::empty(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn stored_hashes_give_the_roots_and_proofs_of_every_size() {
        let stored = Stored::with_leaves(70);
        let leaves: Vec<Hash> = (0..70u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in 0..=70u64 {
            let root = tree_hash(size, &stored).unwrap();
            assert_eq!(root, mth(&leaves[..size as usize]), "size {size}");
            assert_eq!(Frontier::read(size, &stored).unwrap().root(), root);
            for index in 0..size {
                let proof = prove_inclusion(index, size, &stored).unwrap();
                verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
                assert!(
                    verify_inclusion(index, size, &leaves[0], &proof, &root).is_err() || index == 0
                );
            }
            for old in 1..=size {
                let proof = prove_consistency(old, size, &stored).unwrap();
                let old_root = mth(&leaves[..old as usize]);
                verify_consistency(old, size, &proof, &old_root, &root).unwrap();
                if old < size {
                    assert!(
                        verify_consistency(old, size, &proof, &leaves[0], &root).is_err()
                            || old == 1
                    );
                }
            }
        }
    }

    #[test]
    fn out_of_range_arguments_and_short_reads_are_errors() {
        let stored = Stored::with_leaves(5);
        assert!(prove_inclusion(5, 5, &stored).is_err());
        assert!(prove_inclusion(0, 9, &stored).is_err());
        assert!(prove_consistency(0, 5, &stored).is_err());
        assert!(prove_consistency(6, 5, &stored).is_err());
        assert!(tree_hash(6, &stored).is_err());
        assert!(verify_inclusion(u64::MAX, u64::MAX, &Hash::empty(), &[], &Hash::empty()).is_err());
        let huge = Node {
            level: 63,
            index: u64::MAX,
        };
        assert_eq!(stored_position(&huge), None);
        assert!(Hash::from_base64("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU").is_err());
        assert!(Hash::from_base64("ZG9uJ3QgY2FyZSAy").is_err());
    }
}
