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
        crate::limits::MAX_RECORD_BYTES
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
    /// A line of an export longer than the largest record: not a record, and never held whole.
    #[error("line {line}: {}", crate::limits::oversized_reason(*length))]
    LineTooLong {
        /// The line's number.
        line: u64,
        /// Its length in bytes.
        length: u64,
    },
    /// The sled store failed; its message carries the operating system's cause.
    #[cfg(feature = "store")]
    #[error("event store failed: {}", sled_cause(.0))]
    Store(sled::Error),
    /// sled could not recover the store: its files are damaged.
    #[error("the store's files are damaged and sled cannot recover them ({reason})")]
    Unrecoverable {
        /// The store's directory.
        path: PathBuf,
        /// What sled said.
        reason: String,
    },
    /// Another process holds the store open (a running server holds its log locked).
    #[error("{path} is in use by another process (a running server holds its log locked)")]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The store lacks records its head file says were acknowledged: it was truncated or damaged.
    #[error("records {first}..{last} acknowledged but absent: the store lost them")]
    AcknowledgedButAbsent {
        /// The first missing seq.
        first: u64,
        /// The last acknowledged seq.
        last: u64,
    },
    /// The evidence of the acknowledged head is missing or unreadable, so a lost tail could not be
    /// told from a shorter log.
    #[error("head evidence: {reason}")]
    HeadEvidence {
        /// What is wrong.
        reason: String,
    },
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
    /// The store lacks a Merkle tree hash it must hold, or holds one of the wrong size.
    #[error("the stored Merkle tree is incomplete: {reason}")]
    TreeMissing {
        /// What is missing.
        reason: String,
    },
    /// The configured origin is not the one the log's checkpoints were signed under.
    #[error("the log's checkpoints name the origin {log:?}, but audit.origin is {configured:?}: a log's origin is fixed once it exists (set audit.origin to {log:?})")]
    OriginChanged {
        /// The origin the log's latest checkpoint names.
        log: String,
        /// The origin configured now.
        configured: String,
    },
    /// The writer signs no checkpoint while a witness's view of the log stands against it.
    #[error("no checkpoint is signed: {reason}")]
    SigningHeld {
        /// Why.
        reason: String,
    },
    /// The PostgreSQL store failed, or was not what a Neuron log needs.
    #[error("postgres: could not {action}: {reason}")]
    Postgres {
        /// What the store was doing ("connect to", "read records from", …), followed by the
        /// database or log in the message.
        action: &'static str,
        /// What the database said, or what was wrong.
        reason: String,
    },
    /// A commit whose outcome is unknown (an error or lost connection during COMMIT, or no quorum
    /// within the commit timeout): the writer stops; the next start reads the head back.
    #[error("the outcome of a commit is unknown ({reason}); the writer stops and the next start reads the head back")]
    CommitUnknown {
        /// What happened.
        reason: String,
    },
    /// Another writer took the log over: this one stops for good.
    #[error("fenced: another writer took the log over (epoch {}, this writer held epoch {ours})", .epoch.map_or_else(|| "unknown".to_string(), |epoch| epoch.to_string()))]
    Fenced {
        /// The epoch the writer row holds now, when it could be read.
        epoch: Option<i64>,
        /// The epoch this writer held.
        ours: i64,
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

/// An error's message followed by those of its sources (`write /data/log/db: File too large (os
/// error 27)`): the whole cause, for a log line or a failure reason.
pub fn full_message(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl Error {
    /// Whether this says that a store's files are damaged (as opposed to unreachable, locked or
    /// failing to be written).
    pub fn is_damage(&self) -> bool {
        match self {
            Self::Unrecoverable { .. } => true,
            #[cfg(feature = "store")]
            Self::Store(sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)) => true,
            // A read past the end of a file that sled believes longer: the file was cut.
            #[cfg(feature = "store")]
            Self::Store(sled::Error::Io(error)) => {
                error.kind() == std::io::ErrorKind::UnexpectedEof
            }
            _ => false,
        }
    }
}

#[cfg(feature = "store")]
impl From<sled::Error> for Error {
    fn from(error: sled::Error) -> Self {
        Self::Store(error)
    }
}

/// sled's error in words: an I/O error as the operating system words it (`File too large (os
/// error 27)`). sled keeps the first I/O error it met and hands out copies whose message is that
/// error's debug form (`Os { code: 27, kind: FileTooLarge, .. }`): the code is read back from it.
#[cfg(feature = "store")]
fn sled_cause(error: &sled::Error) -> String {
    let io = match error {
        sled::Error::Io(io) => io,
        sled::Error::Corruption { at: Some(at), .. } => return format!("corrupted data at {at:?}"),
        sled::Error::Corruption { at: None, .. } => return "corrupted data".into(),
        other => return other.to_string(),
    };
    if io.raw_os_error().is_some() {
        return io.to_string();
    }
    let text = io.to_string();
    let code = text
        .strip_prefix("Os { code: ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|code| code.parse::<i32>().ok());
    match code {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => text,
    }
}
