//! RFC 6962's recursion as ranges of leaves: the perfect subtrees that cover a range, and the
//! ranges an inclusion or a consistency proof is made of, with their hashes read and folded.

use super::{node_hash, Hash, Node, NodeReader, TreeError};

/// The perfect subtrees covering leaves `lo..hi`, largest first, when `lo` is aligned as the
/// ranges of RFC 6962's recursion are. Their hashes folded from the right give the range's hash.
pub(super) fn cover(mut lo: u64, hi: u64) -> Vec<Node> {
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
pub(super) fn fold(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    )
}

/// The largest power of two smaller than `n` (for `n >= 2`).
pub(super) fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes make the inclusion proof of leaf `index` in the tree of `lo..hi`, in
/// proof order (from the leaf's sibling up).
pub(super) fn inclusion_ranges(index: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
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
pub(super) fn consistency_ranges(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    out: &mut Vec<(u64, u64)>,
) {
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
pub(super) fn range_hashes(
    reader: &dyn NodeReader,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, TreeError> {
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
