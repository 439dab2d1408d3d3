//! Relationship ids as the view holds them: a canonical UUID in 16 bytes, any other id as text in
//! the view's arena, and the hashes and prefixes the indexes and the paging order use.

use std::hash::{BuildHasher, RandomState};

use super::texts::TextRef;

/// A relationship id, held in 16 bytes when it is a canonical (lowercase, hyphenated) UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Id {
    /// A canonical UUID's bytes.
    Uuid([u8; 16]),
    /// Any other text, in the view's text arena.
    Text(TextRef),
}

pub(super) const UUID_LEN: usize = 36;
pub(super) const HYPHENS: [usize; 4] = [8, 13, 18, 23];
pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";

pub(super) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != UUID_LEN {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut digits = [0u8; 32];
    let mut count = 0;
    for (at, &c) in bytes.iter().enumerate() {
        if HYPHENS.contains(&at) {
            if c != b'-' {
                return None;
            }
        } else {
            digits[count] = nibble(c)?;
            count += 1;
        }
    }
    let mut uuid = [0u8; 16];
    for (byte, pair) in uuid.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Some(uuid)
}

pub(super) fn write_uuid(uuid: &[u8; 16]) -> [u8; UUID_LEN] {
    let mut text = [b'-'; UUID_LEN];
    let mut at = 0;
    for (index, byte) in uuid.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    text
}

pub(super) fn format_uuid(uuid: &[u8; 16]) -> String {
    write_uuid(uuid)
        .iter()
        .map(|&byte| char::from(byte))
        .collect()
}

/// The first 16 bytes of an id, zero-padded: ids order as their prefixes do, ties aside (a
/// strictly smaller prefix means a strictly smaller id).
pub(super) fn prefix_of(id: &str) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    let take = id.len().min(16);
    prefix[..take].copy_from_slice(&id.as_bytes()[..take]);
    prefix
}

/// The hash an id is indexed by: of its bytes when a UUID (found without formatting it), of its
/// text otherwise.
pub(super) fn id_hash(hasher: &RandomState, id: &str) -> u64 {
    match parse_uuid(id) {
        Some(uuid) => uuid_hash(hasher, &uuid),
        None => text_id_hash(hasher, id),
    }
}

pub(super) fn uuid_hash(hasher: &RandomState, uuid: &[u8; 16]) -> u64 {
    hasher.hash_one((0u8, uuid))
}

pub(super) fn text_id_hash(hasher: &RandomState, id: &str) -> u64 {
    hasher.hash_one((1u8, id))
}
