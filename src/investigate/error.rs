//! Why an investigation could not be made: each failure named, with what to do about it.

use std::path::PathBuf;

/// Why a log could not be read at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    /// Nothing at the path.
    #[error("{path}: no such file or directory")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A directory that holds no log.
    #[error("{path}: not a data directory, a sled log or a JSONL export")]
    NotALog {
        /// The path.
        path: PathBuf,
    },
    /// A running server holds the store.
    #[error("{path}: a running server holds this log; read its export (GET /v1/audit/export) or stop the server")]
    Locked {
        /// The store.
        path: PathBuf,
    },
    /// The store's files are damaged beyond what its own recovery reads back.
    #[error("{path}: the store's files are damaged ({reason}); run neuron verify, and rebuild the data directory from an export with neuron restore")]
    Damaged {
        /// The store.
        path: PathBuf,
        /// What the store said.
        reason: String,
    },
    /// The store could not be opened or read.
    #[error("{path}: cannot read the log ({reason})")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A line of an export, or a record of a store, that is not a record.
    #[error("{path}: {undecodable}; run neuron verify to see what else is wrong")]
    Undecodable {
        /// The log.
        path: PathBuf,
        /// Where, and why.
        undecodable: neuron_events::export::Undecodable,
    },
    /// The output could not be written (a closed pipe, a full disk).
    #[error("writing the output: {reason}")]
    Output {
        /// What failed.
        reason: String,
    },
    /// A trusted key or an expected head that is not one.
    #[error("{what}: {reason}")]
    BadArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
