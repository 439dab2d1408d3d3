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

/// The perfect subtrees covering leaves `lo..hi`, largest first, when `lo` is aligned as the
/// ranges of RFC 6962's recursion are. Their hashes folded from the right give the range's hash.
fn cover(mut lo: u64, hi: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    while lo < hi {
        let mut level = 0u8;
        while level < 63 {
            let width = 1u64 << (level + 1);
            if !lo.is_multiple_of(width) || hi - lo < width {
                break;
            }
            level += 1;
        }
        nodes.push(Node {
            level,
            index: lo >> level,
        });
        lo += 1u64 << level;
    }
    nodes
}

/// Folds the hashes of a range's perfect subtrees (largest first) into the range's hash.
fn fold(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    )
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes make the inclusion proof of leaf `index` in the tree of `lo..hi`, in
/// proof order (from the leaf's sibling up).
fn inclusion_ranges(index: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    if hi - lo <= 1 {
        return;
    }
    let k = split(hi - lo);
    if index < lo + k {
        inclusion_ranges(index, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        inclusion_ranges(index, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// The ranges whose hashes make the consistency proof from the first `m` leaves of `lo..hi` (RFC
/// 6962 SUBPROOF), in proof order.
fn consistency_ranges(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push((lo, hi));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        consistency_ranges(m, lo, lo + k, complete, out);
        out.push((lo + k, hi));
    } else {
        consistency_ranges(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

/// Reads the hashes of `ranges` in one call and folds each.
fn range_hashes(reader: &dyn NodeReader, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, TreeError> {
    let covers: Vec<Vec<Node>> = ranges.iter().map(|&(lo, hi)| cover(lo, hi)).collect();
    let wanted: Vec<Node> = covers.iter().flatten().copied().collect();
    let read = reader.read_nodes(&wanted)?;
    if read.len() != wanted.len() {
        return Err(TreeError::Missing {
            missing: format!("{} of {} hashes asked for", wanted.len(), read.len()),
        });
    }
    let mut hashes = read.as_slice();
    let mut out = Vec::with_capacity(ranges.len());
    for cover in &covers {
        let (these, rest) = hashes.split_at(cover.len());
        hashes = rest;
        out.push(fold(these).ok_or(TreeError::Missing {
            missing: "an empty range".into(),
        })?);
    }
    Ok(out)
}

/// The root of the tree of the first `size` leaves.
///
/// # Errors
/// The reader's error.
pub fn tree_hash(size: u64, reader: &dyn NodeReader) -> Result<Hash, TreeError> {
    if size == 0 {
        return Ok(Hash::empty());
    }
    Ok(range_hashes(reader, &[(0, size)])?
        .pop()
        .unwrap_or_else(Hash::empty))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1).
///
/// # Errors
/// [`TreeError::IndexOutOfRange`], or the reader's error.
pub fn prove_inclusion(
    index: u64,
    size: u64,
    reader: &dyn NodeReader,
) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut ranges = Vec::new();
    inclusion_ranges(index, 0, size, &mut ranges);
    range_hashes(reader, &ranges)
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` (RFC 6962 §2.1.2).
///
/// # Errors
/// [`TreeError::SizesOutOfOrder`] unless `0 < old <= new`, or the reader's error.
pub fn prove_consistency(
    old: u64,
    new: u64,
    reader: &dyn NodeReader,
) -> Result<Vec<Hash>, TreeError> {
    if old == 0 || old > new {
        return Err(TreeError::SizesOutOfOrder { old, new });
    }
    if old == new {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    consistency_ranges(old, 0, new, true, &mut ranges);
    range_hashes(reader, &ranges)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`TreeError::IndexOutOfRange`] or [`TreeError::BadProof`].
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(TreeError::BadProof {
                reason: "longer than the path from the leaf to the root",
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(TreeError::BadProof {
            reason: "shorter than the path from the leaf to the root",
        });
    }
    if r != *root {
        return Err(TreeError::BadProof {
            reason: "it leads to another root",
        });
    }
    Ok(())
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root` (RFC 9162 §2.1.4.2). An empty old tree proves nothing and is
/// refused, as is a proof for equal sizes that is not empty.
///
/// # Errors
/// [`TreeError::SizesOutOfOrder`] or [`TreeError::BadProof`].
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), TreeError> {
    if old == 0 || old > new {
        return Err(TreeError::SizesOutOfOrder { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(TreeError::BadProof {
                reason: "equal sizes need an empty proof",
            });
        }
        if old_root != new_root {
            return Err(TreeError::BadProof {
                reason: "equal sizes with different roots",
            });
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(TreeError::BadProof {
            reason: "empty proof for different sizes",
        });
    };
    let mut fn_ = old - 1;
    let mut sn = new - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(TreeError::BadProof {
                reason: "longer than the path between the two trees",
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(TreeError::BadProof {
            reason: "shorter than the path between the two trees",
        });
    }
    if fr != *old_root {
        return Err(TreeError::BadProof {
            reason: "it does not lead to the old root",
        });
    }
    if sr != *new_root {
        return Err(TreeError::BadProof {
            reason: "it does not lead to the new root",
        });
    }
    Ok(())
}

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

#[cfg(test)]
pub(crate) mod tests {
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
