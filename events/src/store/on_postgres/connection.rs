//! One connection to the database, on a runtime of its own so that blocking callers can use it,
//! with the reads every PostgreSQL log shares, and the conversions between the database's types and
//! the log's.

use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::error::{db_error, postgres_error};
use super::location::Location;
use crate::record::Digest;
use crate::store::pick_nodes;
use crate::tree::{Hash, Node};
use crate::Error;

/// Records read from the database at once.
pub(super) const READ_CHUNK: u64 = 8192;

/// The runtime every PostgreSQL connection of the process is driven on: one worker thread, made
/// at the first connection and kept for the life of the process. Its callers block on it from
/// plain threads (the journal's writer, blocking tasks, the command line), never from a task.
pub(super) fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("neuron-postgres")
                .enable_all()
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|reason| postgres_error("start a runtime for", reason.clone()))
}

/// A connection to the database.
pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) runtime: &'static tokio::runtime::Runtime,
}

impl Connection {
    pub(super) fn open(location: &Location, read_only: bool) -> Result<Self, Error> {
        let runtime = runtime()?;
        let mut config: tokio_postgres::Config =
            location.url.parse().map_err(db_error("read the URL"))?;
        // Named in pg_stat_activity, so that an operator tells the writer from its readers.
        if config.get_application_name().is_none() {
            let role = if read_only { "reader" } else { "writer" };
            config.application_name(format!("neuron {role} (log {})", location.log));
        }
        let client = runtime.block_on(async {
            let (client, connection) =
                tokio::time::timeout(Duration::from_secs(10), config.connect(NoTls))
                    .await
                    .map_err(|_| postgres_error("connect to", "no answer within 10 s"))?
                    .map_err(db_error("connect to"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            if read_only {
                client
                    .batch_execute("SET default_transaction_read_only = on")
                    .await
                    .map_err(db_error("start a read-only session on"))?;
            }
            Ok::<_, Error>(client)
        })?;
        Ok(Self { client, runtime })
    }

    pub(super) fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// Records `from..=to`, in chunks, to `visit` until it returns `false`.
    pub(super) fn scan_while(
        &self,
        log: &str,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        // Chunks of at most READ_CHUNK records, each starting after the last one read: a chunk
        // that comes back short was the last.
        let to = as_i64(to.min(i64::MAX as u64))?;
        let mut next = as_i64(from.min(i64::MAX as u64))?;
        let chunk = i64::try_from(READ_CHUNK).unwrap_or(i64::MAX);
        while next <= to {
            let rows = self
                .block_on(self.client.query(
                    "SELECT seq, bytes FROM neuron_records WHERE log = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                    &[&log, &next, &to, &chunk],
                ))
                .map_err(db_error("read records from"))?;
            for row in &rows {
                let seq: i64 = row.try_get(0).map_err(db_error("read records from"))?;
                let bytes: &[u8] = row.try_get(1).map_err(db_error("read records from"))?;
                if !visit(as_u64(seq)?, bytes) {
                    return Ok(());
                }
                next = seq.saturating_add(1);
            }
            if rows.len() < READ_CHUNK as usize || next == i64::MAX {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn read_nodes(&self, log: &str, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        let mut seqs = Vec::with_capacity(nodes.len());
        for node in nodes {
            seqs.push(as_i64(crate::store::node_place(node)?.0)?);
        }
        let rows = self
            .block_on(self.client.query(
                "SELECT seq, tree FROM neuron_records WHERE log = $1 AND seq = ANY($2)",
                &[&log, &seqs],
            ))
            .map_err(db_error("read tree hashes from"))?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(db_error("read tree hashes from"))?;
            let tree: Option<Vec<u8>> =
                row.try_get(1).map_err(db_error("read tree hashes from"))?;
            found.insert(as_u64(seq)?, tree);
        }
        pick_nodes(nodes, &mut |seq| Ok(found.get(&seq).cloned().flatten()))
    }
}

pub(super) fn as_i64(value: u64) -> Result<i64, Error> {
    i64::try_from(value)
        .map_err(|_| postgres_error("number", format!("{value} is beyond a bigint")))
}

pub(super) fn as_u64(value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        reason: format!("a negative seq ({value}) in the database"),
    })
}

pub(super) fn digest_of(bytes: &[u8]) -> Result<Digest, Error> {
    <[u8; 32]>::try_from(bytes)
        .map(Digest)
        .map_err(|_| Error::Corrupt {
            reason: format!("a head hash of {} bytes in neuron_writers", bytes.len()),
        })
}
