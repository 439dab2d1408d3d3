//! The sizes every part of the log agrees on. A leaf: the record format, the JSONL reader and the
//! crate's errors import it, and it imports nothing of the crate.

/// The largest record the log accepts. Records above sled's blob threshold (a quarter of its
/// 512 KiB segment, about 128 KiB) are stored by sled in blob files of their own, which `SledLog`
/// makes durable beside its data file.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Why a line is not a record before anything parses it: longer than any record.
pub fn oversized_reason(length: u64) -> String {
    format!("a line of {length} bytes, longer than the largest record ({MAX_RECORD_BYTES} bytes)")
}
