//! What the database says of the cluster a writer is on: the synchronous commit settings and
//! the standbys streaming from it.

/// What the database says of the cluster a writer is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    /// `synchronous_commit`.
    pub synchronous_commit: String,
    /// `synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// The standbys streaming from this server, as `pg_stat_replication` shows them.
    pub standbys: Vec<Standby>,
}

/// A standby, as `pg_stat_replication` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standby {
    /// `application_name`: the name `synchronous_standby_names` lists.
    pub name: String,
    /// `client_addr`, or `local` for a Unix socket.
    pub address: String,
    /// `state` (`streaming`, `catchup`, …).
    pub state: String,
    /// `sync_state` (`sync`, `quorum`, `potential`, `async`).
    pub sync_state: String,
}

impl Replication {
    /// Whether a commit waits for a synchronous standby.
    pub fn is_synchronous(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && matches!(self.synchronous_commit.as_str(), "on" | "remote_apply")
    }
}
