//! The PostgreSQL store behind [`PostgresLog`] (SPEC §3.6): the log on the replicated database
//! hospital IT already runs, a primary with synchronous standbys, so that an acknowledged batch is
//! flushed on two machines.
//!
//! Two tables, shared by the logs of one database:
//!
//! - `neuron_writers (log, origin, epoch, head_seq, head_hash)`: one row per log, the writer's
//!   fencing token and the head evidence. A writer takes a log over by incrementing `epoch`.
//! - `neuron_records (log, seq, bytes, tree)`: each record's exact stored bytes and the Merkle tree
//!   hashes it completes, primary key (`log`, `seq`).
//!
//! Every batch is one transaction: the writer row moves from the head this writer holds to the new
//! one, conditionally on (`epoch`, `head_seq`, `head_hash`) being what this writer holds; then the
//! records are inserted. No row moved: another writer took over, and this one is fenced (it stops
//! for good, naming the epoch that took over). Any error or lost connection during COMMIT, or a
//! COMMIT that no quorum confirms within `commit_timeout`, leaves the outcome unknown: this writer
//! stops; the next start reads the head back. The chain itself (`seq`, `prev`) is a second fence:
//! two writers can never both extend one head.
//!
//! Blocking calls on a runtime of its own: the journal's writer thread, blocking threads and the
//! command line call it, never an async task.
//!
//! - `location.rs`: where a log lives (URL and log name); `error.rs`: its errors.
//! - `connection.rs`: one connection on the store's own runtime, the shared reads, the type
//!   conversions; `schema.rs`: the tables and the check of their shape.
//! - `log.rs`: [`PostgresLog`] taken over, opened to read, or restored into; `as_log.rs`: it as
//!   the journal's `Log`; `batch.rs`: one batch's fenced transaction.
//! - `reader.rs`: a reader on a small pool of its own connections; `replication.rs`: what the
//!   cluster says of its standbys.

mod as_log;
mod batch;
mod connection;
mod error;
mod location;
mod log;
mod reader;
mod replication;
mod schema;

pub use location::Location;
pub use log::PostgresLog;
pub use replication::{Replication, Standby};
