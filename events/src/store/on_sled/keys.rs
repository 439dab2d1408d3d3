//! The keys of a sled log: a record's key is its seq in big-endian; the legacy head key is read
//! only to adopt a store written before head files.

use crate::record::Digest;
use crate::store::{LogHead, MAX_SEQ};
use crate::Error;

/// The key under which stores written before head files kept the head of their last batch,
/// inside the same atomic batch. Record keys are exactly 8 bytes (the seq, big-endian), so this
/// 5-byte key never collides with one and sorts after every record whose seq is below 2^56. It is
/// read only to adopt such a store ([`Acknowledged::Legacy`]) and no longer written.
pub(super) const LEGACY_HEAD_KEY: &[u8] = b"\xffhead";

pub(super) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(super) fn key_seq(key: &[u8]) -> Result<u64, Error> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Error::Corrupt {
        reason: format!("record key of {} bytes, not 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

pub(super) fn legacy_head(value: &[u8]) -> Result<LogHead, Error> {
    let corrupt = || Error::Corrupt {
        reason: format!("recorded head of {} bytes, not 40", value.len()),
    };
    let seq: [u8; 8] = value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    let hash: [u8; 32] = value
        .get(8..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    Ok(LogHead {
        seq: u64::from_be_bytes(seq),
        hash: Digest(hash),
    })
}

/// The records `from..=to` as stored, in seq order: the one range scan every read goes through.
pub(super) fn records(
    db: &sled::Db,
    from: u64,
    to: u64,
) -> impl Iterator<Item = Result<(u64, sled::IVec), Error>> + '_ {
    let to = to.min(MAX_SEQ);
    let range = (from <= to).then(|| db.range(seq_key(from)..=seq_key(to)));
    range.into_iter().flatten().map(|entry| {
        let (key, value) = entry?;
        Ok((key_seq(&key)?, value))
    })
}
