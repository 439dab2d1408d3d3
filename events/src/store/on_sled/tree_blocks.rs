//! Where a sled log keeps its Merkle tree: each record's tree hashes in blocks of
//! [`TREE_BLOCK`] records under keys that sort after every record.

use super::keys::key_seq;
use crate::store::MAX_SEQ;
use crate::tree::Hash;
use crate::Error;

/// The first byte of a tree key: `0xfe` ‖ the 8-byte big-endian seq of the first record whose
/// hashes its value holds. The value holds, for each of a run of consecutive records in turn, one
/// byte (how many tree hashes it has; 0 for none stored) and then those hashes. A run never
/// crosses a block of [`TREE_BLOCK`] records (seqs `16k + 1 ..= 16k + 16`), so that a record's
/// hashes are under the last key at or before it in its own block: one seek. Each batch writes
/// runs of its own records and never rewrites one (a partly filled block written again by every
/// small batch cost more than the records themselves), and a large batch's runs are whole blocks
/// (a key per record halved the rate of large batches). Stores written with one key per whole
/// block read the same way. Record keys begin with `0x00` (seqs below 2^56), so every tree key
/// sorts after every record and before the legacy head key.
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

/// Calls `visit` with the seq and stored hashes of each record of the run that starts at `first`
/// that has hashes stored, until it returns `false`; returns how many entries it walked.
///
/// # Errors
/// [`Error::TreeMissing`] for a value that is not a run of counted hashes.
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
                "the tree hashes stored from record {first} on are damaged at record {seq}"
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

/// The tree hashes stored with record `seq`: in the last run that starts at or before it within
/// its block.
pub(super) fn stored_at(db: &sled::Db, seq: u64) -> Result<Option<Vec<u8>>, Error> {
    let Some((key, value)) = db
        .range(tree_key(block_of(seq))..=tree_key(seq))
        .next_back()
        .transpose()?
    else {
        return Ok(None);
    };
    let first = key_seq(key.get(1..).unwrap_or_default())?;
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

/// The runs a batch's tree hashes are written as: consecutive records within one block share a
/// key, and nothing already stored is read or written again.
pub(super) fn runs<'a>(entries: impl Iterator<Item = (u64, &'a [Hash])>) -> Vec<(u64, Vec<u8>)> {
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = None;
    for (seq, hashes) in entries {
        let continues = next == Some(seq) && block_of(seq) != seq;
        if !continues {
            runs.push((seq, Vec::new()));
        }
        if let Some((_, value)) = runs.last_mut() {
            value.push(u8::try_from(hashes.len()).unwrap_or(u8::MAX));
            for hash in hashes.iter().take(usize::from(u8::MAX)) {
                value.extend_from_slice(&hash.0);
            }
        }
        next = Some(seq + 1);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(seq: u64) -> Vec<Hash> {
        (0..=seq.trailing_zeros())
            .map(|level| Hash([(seq as u8) ^ (level as u8); 32]))
            .collect()
    }

    fn db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    fn write(db: &sled::Db, seqs: std::ops::RangeInclusive<u64>) {
        let entries: Vec<(u64, Vec<Hash>)> = seqs.map(|seq| (seq, hashes(seq))).collect();
        for (first, value) in runs(entries.iter().map(|(seq, h)| (*seq, h.as_slice()))) {
            assert!(
                db.insert(tree_key(first), value).unwrap().is_none(),
                "{first} rewritten"
            );
        }
    }

    fn flat(seq: u64) -> Vec<u8> {
        hashes(seq).iter().flat_map(|hash| hash.0).collect()
    }

    #[test]
    fn a_batch_writes_runs_of_its_own_records_within_blocks_and_rewrites_nothing() {
        let db = db();
        // Single records, a run ending mid-block, then one across three blocks.
        write(&db, 1..=1);
        write(&db, 2..=2);
        write(&db, 3..=7);
        write(&db, 8..=40);
        let keys: Vec<u64> = db
            .range(tree_key(0)..=tree_key(MAX_SEQ))
            .keys()
            .map(|key| key_seq(&key.unwrap()[1..]).unwrap())
            .collect();
        assert_eq!(keys, vec![1, 2, 3, 8, 17, 33]);
        for seq in 1..=40 {
            assert_eq!(
                stored_at(&db, seq).unwrap(),
                Some(flat(seq)),
                "record {seq}"
            );
        }
        assert_eq!(stored_at(&db, 41).unwrap(), None);
        let mut scanned = Vec::new();
        scan_tree(&db, 5, 20, &mut |seq, stored| {
            assert_eq!(stored, flat(seq));
            scanned.push(seq);
        })
        .unwrap();
        assert_eq!(scanned, (5..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_store_written_a_key_per_whole_block_reads_the_same() {
        // The layout before runs: one key per block of sixteen, rewritten as it filled, with an
        // empty entry for a record without hashes (17 here).
        let db = db();
        let mut first = Vec::new();
        for seq in 1..=16 {
            first.push(hashes(seq).len() as u8);
            first.extend(flat(seq));
        }
        db.insert(tree_key(1), first).unwrap();
        let mut second = vec![0u8];
        for seq in 18..=20 {
            second.push(hashes(seq).len() as u8);
            second.extend(flat(seq));
        }
        db.insert(tree_key(17), second).unwrap();
        // A later batch under this build adds a run after them.
        write(&db, 21..=22);
        for seq in (1..=16).chain(18..=22) {
            assert_eq!(
                stored_at(&db, seq).unwrap(),
                Some(flat(seq)),
                "record {seq}"
            );
        }
        assert_eq!(stored_at(&db, 17).unwrap(), None);
        let mut scanned = Vec::new();
        scan_tree(&db, 15, 22, &mut |seq, _| scanned.push(seq)).unwrap();
        assert_eq!(scanned, vec![15, 16, 18, 19, 20, 21, 22]);
    }
}
