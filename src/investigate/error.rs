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
    #[error("{path}: the store's files are damaged (run neuron verify, and rebuild the data directory from an export with neuron restore)")]
    Damaged {
        /// The store.
        path: PathBuf,
        /// What the store said.
        #[source]
        source: neuron_events::Error,
    },
    /// The store could not be opened or read.
    #[error("{path}: cannot read the log")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: ReadFailure,
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
    #[error("writing the output")]
    Output {
        /// What failed.
        #[source]
        source: std::io::Error,
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

/// What an investigation met beneath a log it could not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFailure {
    /// The file system refused.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The log's reader failed.
    #[error(transparent)]
    Log(#[from] neuron_events::Error),
    /// The private copy investigators read a store from could not be made.
    #[error("making a private copy of the store in {place}")]
    Copy {
        /// Where the copy was to be.
        place: PathBuf,
        /// Why it could not be.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_unreadable_log_carries_what_failed_beneath_it() {
        let error = InvestigateError::Unreadable {
            path: PathBuf::from("data/log"),
            source: ReadFailure::Copy {
                place: PathBuf::from("/tmp"),
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            },
        };
        let copy = error.source().expect("the copy's failure");
        assert!(copy.source().is_some(), "and the file system's beneath it");
        assert_eq!(
            neuron_events::full_message(&error),
            format!(
                "data/log: cannot read the log: making a private copy of the store in /tmp: {}",
                std::io::Error::from(std::io::ErrorKind::StorageFull)
            )
        );
    }

    #[test]
    fn an_output_that_cannot_be_written_says_why() {
        let error = InvestigateError::Output {
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        };
        assert_eq!(
            neuron_events::full_message(&error),
            format!(
                "writing the output: {}",
                std::io::Error::from(std::io::ErrorKind::BrokenPipe)
            )
        );
    }
}
