//! Tree hashes and proofs made from stored hashes, and proofs checked (RFC 9162 §2.1.3, §2.1.4).

use super::ranges::{consistency_ranges, inclusion_ranges, range_hashes};
use super::{node_hash, Hash, NodeReader, TreeError};

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
