//! Why a server could not start or stop cleanly.

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The event log failed.
    #[error("event log")]
    Log(#[from] neuron_events::Error),
    /// A file or socket operation failed.
    #[error("{action}")]
    Io {
        /// What was being done.
        action: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The configuration cannot be served.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store is damaged or lost records it acknowledged: nothing is written on top of it.
    #[error("refusing the log at {place} (run `neuron verify` on it and rebuild it from an export with `neuron restore`)")]
    StoreRefused {
        /// Where the log is: its folder, or its database and name.
        place: String,
        /// What is wrong with it.
        #[source]
        source: neuron_events::Error,
    },
    /// The stored log does not form a chain the server may continue.
    #[error("the log is damaged at seq {seq}: {reason}; run `neuron verify` on the data directory and rebuild it from an export with `neuron restore`")]
    Damaged {
        /// The first seq at fault.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The PostgreSQL cluster does not replicate commits synchronously, and
    /// `storage.postgres.require_sync_standbys` asks that it does.
    #[error("{reason}: an acknowledged handshake could be lost with the primary; configure synchronous_standby_names (SPEC 3.6, docs/replication.md) or set storage.postgres.require_sync_standbys = false to accept that")]
    Unreplicated {
        /// What the database said.
        reason: String,
    },
    /// The data directory holds the Neuron's key but no log: the log was lost (or the server
    /// points at the wrong place).
    #[error("{key} exists but the log at {place} is empty: the log was lost or is somewhere else. Restore it from an export (`neuron restore EXPORT --data-dir … --key {key}`), point storage at it, or start an empty log with `neuron serve --new-log` (recorded in the log)")]
    LogMissing {
        /// Where the log was looked for.
        place: String,
        /// The key file found.
        key: String,
    },
    /// The log holds records but the Neuron's key is gone.
    #[error("the log at {place} holds {records} records but {key} is missing: restore the key from your backups, or make a new one with `neuron serve --new-key` (recorded in the log; what the old key signed stays checkable against it only)")]
    KeyMissing {
        /// Where the log is.
        place: String,
        /// How many records it holds.
        records: u64,
        /// The key file looked for.
        key: String,
    },
    /// A witness reported a view of the log this log does not extend, and no operator has
    /// accepted the loss.
    #[error("{reason}; if the loss is known and accepted, start with `neuron serve --acknowledge-rollback` (it is recorded in the log for good)")]
    RolledBack {
        /// What the witness saw.
        reason: String,
    },
    /// A write to the log failed: the server stopped at once without recording anything more
    /// (fail-stop, SPEC §3.4).
    #[error(
        "the event log could not be written ({reason}); stopped at once, recording nothing more"
    )]
    LogFailed {
        /// The cause, as the operating system gave it.
        reason: String,
    },
}

pub(super) fn io_error(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let action = action.into();
    move |source| ServerError::Io { action, source }
}
