//! The one error type of the events crate. Messages are lowercase, name what went wrong and never
//! contain a key or a signature.

use std::path::PathBuf;

/// Everything that can go wrong in the events crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A timestamp that is not RFC 3339.
    #[error("not an RFC 3339 time: {text:?}")]
    BadTimestamp {
        /// The text, shortened.
        text: String,
    },
    /// A hash that is not 64 hex characters.
    #[error("not a 64-character hex hash: {text:?}")]
    BadDigest {
        /// The text, shortened.
        text: String,
    },
    /// An event that could not be written as JSON.
    #[error("event could not be encoded: {reason}")]
    Encode {
        /// What serde said.
        reason: String,
    },
    /// An event whose record would exceed the record size limit.
    #[error(
        "{kind} record of {bytes} bytes exceeds the limit of {} bytes",
        crate::record::MAX_RECORD_BYTES
    )]
    RecordTooLarge {
        /// The event kind.
        kind: &'static str,
        /// The encoded size.
        bytes: usize,
    },
    /// Bytes that are not a record.
    #[error("unparseable record: {reason}")]
    Unparseable {
        /// What was wrong.
        reason: String,
    },
    /// The sled store failed.
    #[error("event store failed (another process may hold it open)")]
    Store(#[from] sled::Error),
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The log's stored records do not form a valid chain where the writer needs to continue it.
    #[error("log cannot be continued: {reason}")]
    Corrupt {
        /// What is wrong with the stored log.
        reason: String,
    },
    /// An append was refused because an earlier batch failed; nothing is written on top of it.
    #[error("log writer stopped after a failed write: {reason}")]
    WriterFailed {
        /// Why the batch failed.
        reason: String,
    },
    /// The writer is gone (the journal was closed).
    #[error("log writer is closed")]
    WriterClosed,
    /// The Neuron's key file is unusable.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key).
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {reason}")]
    Random {
        /// What getrandom said.
        reason: String,
    },
}
