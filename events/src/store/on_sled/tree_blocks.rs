//! Where a sled log keeps its Merkle tree: each record's tree hashes in blocks of
//! [`TREE_BLOCK`] records under keys that sort after every record.

use super::keys::key_seq;
use crate::store::MAX_SEQ;
use crate::Error;

/// The first byte of a tree key: `0xfe` ‖ the 8-byte big-endian seq of the first record of a
/// block of [`TREE_BLOCK`] records (seqs `16k + 1 ..= 16k + 16`). The value holds, for each record
/// of the block in turn, one byte (how many tree hashes it has; 0 for none stored) and then those
/// hashes. A key per block, not per record: a sled key costs about as much as a record, and a key
/// per record halved the rate of large batches; blocks at fixed places let a read go straight to
/// its key. Record keys begin with `0x00` (seqs below 2^56), so every tree key sorts after every
/// record and before the legacy head key.
pub(super) const TREE_PREFIX: u8 = 0xfe;

/// Records per tree block.
pub(super) const TREE_BLOCK: u64 = 16;

pub(super) fn tree_key(seq: u64) -> [u8; 9] {
    let mut key = [TREE_PREFIX; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The first seq of the block that holds record `seq`'s tree hashes.
pub(super) fn block_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / TREE_BLOCK * TREE_BLOCK + 1
}

/// Calls `visit` with the seq and stored hashes of each record of the block that starts at
/// `first` that has hashes stored, until it returns `false`; returns how many entries the block
/// holds.
///
/// # Errors
/// [`Error::TreeMissing`] for a block that is not a run of counted hashes.
pub(super) fn walk_block(
    first: u64,
    value: &[u8],
    visit: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<u64, Error> {
    let (mut seq, mut rest) = (first, value);
    while let Some((&count, after)) = rest.split_first() {
        let length = usize::from(count) * 32;
        let hashes = after.get(..length).ok_or_else(|| Error::TreeMissing {
            reason: format!(
                "the tree hashes stored for records {first}..{} are damaged at record {seq}",
                first + TREE_BLOCK - 1
            ),
        })?;
        if count > 0 && !visit(seq, hashes) {
            return Ok(seq - first + 1);
        }
        rest = &after[length..];
        seq += 1;
    }
    Ok(seq - first)
}

/// Adds record `seq`'s hashes to its block's value, which holds the entries before it (records
/// without stored hashes in between get empty entries).
pub(super) fn push_entry(
    first: u64,
    value: &mut Vec<u8>,
    seq: u64,
    hashes: &[u8],
) -> Result<(), Error> {
    let held = walk_block(first, value, &mut |_, _| true)?;
    for _ in first + held..seq {
        value.push(0);
    }
    value.push(u8::try_from(hashes.len() / 32).unwrap_or(u8::MAX));
    value.extend_from_slice(hashes);
    Ok(())
}

/// The tree hashes stored with record `seq`.
pub(super) fn stored_at(db: &sled::Db, seq: u64) -> Result<Option<Vec<u8>>, Error> {
    let first = block_of(seq);
    let Some(value) = db.get(tree_key(first))? else {
        return Ok(None);
    };
    let mut found = None;
    walk_block(first, &value, &mut |at, hashes| {
        if at == seq {
            found = Some(hashes.to_vec());
        }
        at < seq
    })?;
    Ok(found)
}

/// Calls `visit` with the stored tree hashes of every record `from..=to` that has them, in order.
pub(super) fn scan_tree(
    db: &sled::Db,
    from: u64,
    to: u64,
    visit: &mut dyn FnMut(u64, &[u8]),
) -> Result<(), Error> {
    for entry in db.range(tree_key(block_of(from))..=tree_key(to.min(MAX_SEQ))) {
        let (key, value) = entry?;
        let first = key_seq(key.get(1..).unwrap_or_default())?;
        walk_block(first, &value, &mut |seq, hashes| {
            if seq >= from && seq <= to {
                visit(seq, hashes);
            }
            seq < to
        })?;
    }
    Ok(())
}

/// The blocks a run of records' tree hashes go into, each whole: the block the log's tree ends
/// in is read back (or taken from `tail`, the value this writer wrote last) and extended.
pub(super) fn tree_blocks<'a>(
    db: &sled::Db,
    tail: Option<(u64, Vec<u8>)>,
    entries: impl Iterator<Item = (u64, &'a [u8])>,
) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let mut tail = tail;
    let mut blocks: Vec<(u64, Vec<u8>)> = Vec::new();
    for (seq, hashes) in entries {
        let first = block_of(seq);
        if blocks.last().is_none_or(|(open, _)| *open != first) {
            let value = match tail.take() {
                Some((cached, value)) if cached == first => value,
                _ => db
                    .get(tree_key(first))?
                    .map(|value| value.to_vec())
                    .unwrap_or_default(),
            };
            blocks.push((first, value));
        }
        if let Some((open, value)) = blocks.last_mut() {
            push_entry(*open, value, seq, hashes)?;
        }
    }
    Ok(blocks)
}
