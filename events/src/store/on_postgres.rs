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

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio_postgres::{Client, GenericClient, NoTls};

use crate::record::Digest;
use crate::store::Acknowledged;
use crate::tree::{Hash, Node};
use crate::Error;

use super::{pick_nodes, tree_value, Appended, Log, LogHead, LogReader, StoredRecord};

/// The schema every Neuron log in a database shares. Created if missing by a writer.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS neuron_writers (
    log text PRIMARY KEY,
    origin text,
    epoch bigint NOT NULL,
    head_seq bigint NOT NULL,
    head_hash bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS neuron_records (
    log text NOT NULL,
    seq bigint NOT NULL,
    bytes bytea NOT NULL,
    tree bytea,
    PRIMARY KEY (log, seq)
);
";

/// Records read from the database at once.
const READ_CHUNK: u64 = 8192;

/// Where a log lives: a PostgreSQL URL and the log's name in that database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The connection URL, without the `log` parameter.
    pub url: String,
    /// The log's name.
    pub log: String,
}

impl Location {
    /// Reads `postgres://…[?…&log=NAME]` (the log `main` when not named).
    ///
    /// # Errors
    /// [`Error::Postgres`] for a URL that is not a PostgreSQL one.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(postgres_error(
                "read the URL",
                "it is not a postgres:// URL",
            ));
        }
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let mut log = "main".to_string();
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| match pair.strip_prefix("log=") {
                Some(name) => {
                    log = name.to_string();
                    false
                }
                None => true,
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        if log.is_empty()
            || !log
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(postgres_error("read the URL", "its log= names no log"));
        }
        Ok(Self { url, log })
    }

    /// The URL with its password left out, for messages.
    pub fn describe(&self) -> String {
        let shown = match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user, host)) => {
                    let user = user.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}@{host}")
                }
                None => self.url.clone(),
            },
            None => self.url.clone(),
        };
        format!("{shown} (log {})", self.log)
    }
}

fn postgres_error(action: &'static str, reason: impl Into<String>) -> Error {
    Error::Postgres {
        action,
        reason: reason.into(),
    }
}

/// An error from the database, in words.
fn db_error(action: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |error| {
        let reason = match error.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => match std::error::Error::source(&error) {
                Some(source) => format!("{error}: {source}"),
                None => error.to_string(),
            },
        };
        postgres_error(action, reason)
    }
}

/// The runtime every PostgreSQL connection of the process is driven on: one worker thread, made
/// at the first connection and kept for the life of the process. Its callers block on it from
/// plain threads (the journal's writer, blocking tasks, the command line), never from a task.
fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
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
struct Connection {
    client: Client,
    runtime: &'static tokio::runtime::Runtime,
}

impl Connection {
    fn open(location: &Location, read_only: bool) -> Result<Self, Error> {
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

    fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// Records `from..=to`, in chunks, to `visit` until it returns `false`.
    fn scan_while(
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

    fn read_nodes(&self, log: &str, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        let mut seqs = Vec::with_capacity(nodes.len());
        for node in nodes {
            seqs.push(as_i64(super::node_place(node)?.0)?);
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

fn as_i64(value: u64) -> Result<i64, Error> {
    i64::try_from(value)
        .map_err(|_| postgres_error("number", format!("{value} is beyond a bigint")))
}

fn as_u64(value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        reason: format!("a negative seq ({value}) in the database"),
    })
}

fn digest_of(bytes: &[u8]) -> Result<Digest, Error> {
    <[u8; 32]>::try_from(bytes)
        .map(Digest)
        .map_err(|_| Error::Corrupt {
            reason: format!("a head hash of {} bytes in neuron_writers", bytes.len()),
        })
}

/// One batch's writes: the writer row moved from the head this writer holds, then the records.
struct Batch<'a> {
    log: &'a str,
    epoch: i64,
    head: LogHead,
    new_head: LogHead,
    seqs: &'a [i64],
    bytes: &'a [&'a [u8]],
    trees: &'a [Vec<u8>],
}

impl Batch<'_> {
    /// Writes the batch; `false` when the writer row was not where this writer left it (fenced).
    async fn run(&self, client: &impl GenericClient) -> Result<bool, Error> {
        let moved = client
            .execute(
                "UPDATE neuron_writers SET head_seq = $5, head_hash = $6 WHERE log = $1 AND epoch = $2 AND head_seq = $3 AND head_hash = $4",
                &[
                    &self.log,
                    &self.epoch,
                    &as_i64(self.head.seq)?,
                    &self.head.hash.0.as_slice(),
                    &as_i64(self.new_head.seq)?,
                    &self.new_head.hash.0.as_slice(),
                ],
            )
            .await
            .map_err(db_error("move the writer row on"))?;
        if moved == 0 {
            return Ok(false);
        }
        client
            .execute(
                "INSERT INTO neuron_records (log, seq, bytes, tree) SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[])",
                &[&self.log, &self.seqs, &self.bytes, &self.trees],
            )
            .await
            .map_err(db_error("insert the batch's records into"))?;
        Ok(true)
    }
}

/// The columns a Neuron log's tables have, in order.
const SHAPE: [(&str, &str); 9] = [
    ("neuron_records", "log text"),
    ("neuron_records", "seq bigint"),
    ("neuron_records", "bytes bytea"),
    ("neuron_records", "tree bytea"),
    ("neuron_writers", "log text"),
    ("neuron_writers", "origin text"),
    ("neuron_writers", "epoch bigint"),
    ("neuron_writers", "head_seq bigint"),
    ("neuron_writers", "head_hash bytea"),
];

/// Whether [`check_shape`] accepts a table that is not there yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    Allowed,
    Refused,
}

/// Refuses tables named like the Neuron's whose columns are not a Neuron log's: another
/// application's data is never read as records, nor written to.
async fn check_shape(client: &impl GenericClient, missing: Missing) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text || ' ' || data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name IN ('neuron_records', 'neuron_writers') ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .map_err(db_error("read the columns of the Neuron's tables in"))?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let table: String = row.try_get(0).map_err(db_error("read the columns of"))?;
        let column: String = row.try_get(1).map_err(db_error("read the columns of"))?;
        found.push((table, column));
    }
    let expected: Vec<(String, String)> = SHAPE
        .iter()
        .map(|(table, column)| ((*table).to_string(), (*column).to_string()))
        .collect();
    let table_fits = |table: &str| {
        let columns = |list: &[(String, String)]| {
            list.iter()
                .filter(|(name, _)| name == table)
                .map(|(_, column)| column.clone())
                .collect::<Vec<_>>()
        };
        let present = columns(&found);
        present == columns(&expected) || (present.is_empty() && missing == Missing::Allowed)
    };
    if table_fits("neuron_records") && table_fits("neuron_writers") {
        return Ok(());
    }
    let shown = |table: &str| {
        found
            .iter()
            .filter(|(name, _)| name == table)
            .map(|(_, column)| column.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(postgres_error(
        "use",
        format!(
            "this database's neuron_records ({}) and neuron_writers ({}) are not a Neuron log's tables",
            shown("neuron_records"),
            shown("neuron_writers")
        ),
    ))
}

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

/// A log in PostgreSQL, as its writer holds it (or as an investigator reads it).
pub struct PostgresLog {
    connection: Connection,
    location: Location,
    /// The epoch this writer took the log over with; `None` for a reader.
    epoch: Option<i64>,
    /// The head this writer holds: what the writer row must still say at the next batch.
    head: LogHead,
    acknowledged: Acknowledged,
    commit_timeout: Duration,
    abandoned: bool,
    /// A restore's transaction is open: appends go into it, uncommitted.
    restoring: bool,
}

impl PostgresLog {
    /// Connects to the database a writer will take the log over in; nothing is read or written
    /// yet, so that the cluster's replication can be checked first ([`PostgresLog::replication`]).
    ///
    /// # Errors
    /// [`Error::Postgres`] when the database cannot be reached.
    pub fn connect(location: &Location, commit_timeout: Duration) -> Result<Self, Error> {
        Ok(Self {
            connection: Connection::open(location, false)?,
            location: location.clone(),
            epoch: None,
            head: LogHead::EMPTY,
            acknowledged: Acknowledged::NotKept,
            commit_timeout,
            abandoned: false,
            restoring: false,
        })
    }

    /// Takes the log over as its writer: creates the tables and the log if missing (its origin
    /// recorded then), refuses a log whose recorded origin is another, and increments the epoch,
    /// which fences any earlier writer at its next batch. One transaction, bounded by the commit
    /// timeout: a refused log is left as it was.
    ///
    /// # Errors
    /// [`Error::Postgres`] naming what could not be done, [`Error::OriginChanged`] for a log name
    /// another origin holds.
    pub fn take_over(&mut self, origin: Option<&str>) -> Result<(), Error> {
        self.ensure_schema()?;
        let (log, timeout) = (&self.location.log, self.commit_timeout);
        let client = &mut self.connection.client;
        let (epoch, head) = self.connection.runtime.block_on(async {
            let work = async {
                let transaction = client
                    .transaction()
                    .await
                    .map_err(db_error("begin taking the log over in"))?;
                transaction
                    .execute(
                        "INSERT INTO neuron_writers (log, origin, epoch, head_seq, head_hash) VALUES ($1, $2, 0, 0, $3) ON CONFLICT (log) DO NOTHING",
                        &[log, &origin, &Digest::GENESIS.0.as_slice()],
                    )
                    .await
                    .map_err(db_error("create the log in"))?;
                let row = transaction
                    .query_one(
                        "SELECT origin FROM neuron_writers WHERE log = $1 FOR UPDATE",
                        &[log],
                    )
                    .await
                    .map_err(db_error("take the log over in"))?;
                let recorded: Option<String> =
                    row.try_get(0).map_err(db_error("take the log over in"))?;
                if let (Some(recorded), Some(origin)) = (recorded.as_deref(), origin) {
                    if recorded != origin {
                        return Err(Error::OriginChanged {
                            log: recorded.to_string(),
                            configured: origin.to_string(),
                        });
                    }
                }
                let row = transaction
                    .query_one(
                        "UPDATE neuron_writers SET epoch = epoch + 1, origin = coalesce(origin, $2) WHERE log = $1 RETURNING epoch, head_seq, head_hash",
                        &[log, &origin],
                    )
                    .await
                    .map_err(db_error("take the log over in"))?;
                let epoch: i64 = row.try_get(0).map_err(db_error("take the log over in"))?;
                let seq: i64 = row.try_get(1).map_err(db_error("take the log over in"))?;
                let hash: &[u8] = row.try_get(2).map_err(db_error("take the log over in"))?;
                let head = LogHead {
                    seq: as_u64(seq)?,
                    hash: digest_of(hash)?,
                };
                transaction
                    .commit()
                    .await
                    .map_err(db_error("commit taking the log over in"))?;
                Ok::<_, Error>((epoch, head))
            };
            tokio::time::timeout(timeout, work).await.map_err(|_| {
                postgres_error(
                    "take the log over in",
                    format!(
                        "no answer within {} ms (storage.postgres.commit_timeout_ms): is a synchronous standby up?",
                        timeout.as_millis()
                    ),
                )
            })?
        })?;
        self.epoch = Some(epoch);
        self.head = head;
        self.acknowledged = Acknowledged::Head(head);
        Ok(())
    }

    /// Creates the tables when missing, and refuses tables of those names that are not a Neuron
    /// log's.
    fn ensure_schema(&self) -> Result<(), Error> {
        self.connection.block_on(async {
            let client = &self.connection.client;
            // Another application's tables of those names are refused before anything is
            // created beside them.
            check_shape(client, Missing::Allowed).await?;
            client
                .batch_execute(SCHEMA)
                .await
                .map_err(db_error("create the Neuron's tables in"))?;
            check_shape(client, Missing::Refused).await
        })
    }

    /// Opens the log to read it, in one read-only, repeatable-read transaction (a standby will do):
    /// the head and every record read belong to one snapshot.
    ///
    /// # Errors
    /// [`Error::Postgres`] when the database cannot be reached or holds no Neuron log of that
    /// name.
    pub fn open_reader(location: &Location) -> Result<Self, Error> {
        let connection = Connection::open(location, true)?;
        let head = connection.block_on(async {
            let client = &connection.client;
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .map_err(db_error("begin a read-only transaction on"))?;
            let exists = client
                .query_one("SELECT to_regclass('neuron_writers') IS NOT NULL AND to_regclass('neuron_records') IS NOT NULL", &[])
                .await
                .map_err(db_error("look for a Neuron log in"))?;
            let exists: bool = exists.try_get(0).map_err(db_error("look for a Neuron log in"))?;
            if !exists {
                return Err(postgres_error(
                    "read",
                    "this database holds no Neuron log (no neuron_writers and neuron_records tables)",
                ));
            }
            check_shape(client, Missing::Refused).await?;
            let row = client
                .query_opt(
                    "SELECT head_seq, head_hash FROM neuron_writers WHERE log = $1",
                    &[&location.log],
                )
                .await
                .map_err(db_error("read the log's head from"))?
                .ok_or_else(|| {
                    postgres_error(
                        "read",
                        format!("this database holds no log named {:?}", location.log),
                    )
                })?;
            let seq: i64 = row.try_get(0).map_err(db_error("read the log's head from"))?;
            let hash: &[u8] = row.try_get(1).map_err(db_error("read the log's head from"))?;
            Ok::<_, Error>(LogHead {
                seq: as_u64(seq)?,
                hash: digest_of(hash)?,
            })
        })?;
        Ok(Self {
            connection,
            location: location.clone(),
            epoch: None,
            head,
            acknowledged: Acknowledged::Head(head),
            commit_timeout: Duration::from_secs(10),
            abandoned: false,
            restoring: false,
        })
    }

    /// Begins a restore into a new log: one transaction, held open until
    /// [`PostgresLog::commit_restore`], in which the log is created (or an empty one taken over)
    /// and every append is written. A restore that stops midway commits nothing: the database
    /// rolls the transaction back.
    ///
    /// # Errors
    /// [`Error::Postgres`], naming a log that already holds records.
    pub fn begin_restore(location: &Location, commit_timeout: Duration) -> Result<Self, Error> {
        let mut log = Self::connect(location, commit_timeout)?;
        log.ensure_schema()?;
        let epoch = log.connection.block_on(async {
            let client = &log.connection.client;
            client
                .batch_execute("BEGIN")
                .await
                .map_err(db_error("begin a restore in"))?;
            client
                .execute(
                    "INSERT INTO neuron_writers (log, origin, epoch, head_seq, head_hash) VALUES ($1, NULL, 0, 0, $2) ON CONFLICT (log) DO NOTHING",
                    &[&location.log, &Digest::GENESIS.0.as_slice()],
                )
                .await
                .map_err(db_error("create the log in"))?;
            let row = client
                .query_one(
                    "UPDATE neuron_writers SET epoch = epoch + 1 WHERE log = $1 RETURNING epoch, head_seq",
                    &[&location.log],
                )
                .await
                .map_err(db_error("take the log over in"))?;
            let epoch: i64 = row.try_get(0).map_err(db_error("take the log over in"))?;
            let seq: i64 = row.try_get(1).map_err(db_error("take the log over in"))?;
            let stored = client
                .query_one(
                    "SELECT count(*) FROM neuron_records WHERE log = $1",
                    &[&location.log],
                )
                .await
                .map_err(db_error("count the records in"))?;
            let stored: i64 = stored.try_get(0).map_err(db_error("count the records in"))?;
            if seq > 0 || stored > 0 {
                return Err(postgres_error(
                    "restore into",
                    format!(
                        "the log {:?} already holds {} records: restore into a new log (another log= name)",
                        location.log,
                        seq.max(stored)
                    ),
                ));
            }
            Ok(epoch)
        })?;
        log.epoch = Some(epoch);
        log.acknowledged = Acknowledged::Head(LogHead::EMPTY);
        log.restoring = true;
        Ok(log)
    }

    /// Commits a restore begun with [`PostgresLog::begin_restore`].
    ///
    /// # Errors
    /// [`Error::CommitUnknown`] when the commit does not come back.
    pub fn commit_restore(&mut self) -> Result<(), Error> {
        if !self.restoring {
            return Err(postgres_error("commit", "no restore is under way"));
        }
        let timeout = self.commit_timeout;
        let client = &self.connection.client;
        self.connection.runtime.block_on(async {
            match tokio::time::timeout(timeout, client.batch_execute("COMMIT")).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(Error::CommitUnknown {
                    reason: db_error("commit")(error).to_string(),
                }),
                Err(_) => Err(Error::CommitUnknown {
                    reason: format!(
                        "no synchronous standby confirmed the commit within {} ms",
                        timeout.as_millis()
                    ),
                }),
            }
        })?;
        self.restoring = false;
        Ok(())
    }

    /// How many records the log holds, read before taking it over: 0 in a database that holds
    /// no Neuron tables yet.
    ///
    /// # Errors
    /// [`Error::Postgres`] when it cannot be read.
    pub fn stored_records(&self) -> Result<u64, Error> {
        self.connection.block_on(async {
            let client = &self.connection.client;
            let exists = client
                .query_one("SELECT to_regclass('neuron_records') IS NOT NULL", &[])
                .await
                .and_then(|row| row.try_get::<_, bool>(0))
                .map_err(db_error("look for a Neuron log in"))?;
            if !exists {
                return Ok(0);
            }
            check_shape(client, Missing::Allowed).await?;
            let count = client
                .query_one(
                    "SELECT coalesce(max(seq), 0) FROM neuron_records WHERE log = $1",
                    &[&self.location.log],
                )
                .await
                .and_then(|row| row.try_get::<_, i64>(0))
                .map_err(db_error("read the last seq from"))?;
            as_u64(count)
        })
    }

    /// Where the log is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The epoch this writer holds.
    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// What the server it is on says of replication.
    ///
    /// # Errors
    /// [`Error::Postgres`] when the settings cannot be read.
    pub fn replication(&self) -> Result<Replication, Error> {
        self.connection.block_on(async {
            let client = &self.connection.client;
            let setting = |name: &'static str| async move {
                client
                    .query_one(&format!("SHOW {name}"), &[])
                    .await
                    .and_then(|row| row.try_get::<_, String>(0))
                    .map_err(db_error("read the replication settings of"))
            };
            let synchronous_commit = setting("synchronous_commit").await?;
            let synchronous_standby_names = setting("synchronous_standby_names").await?;
            let rows = client
                .query(
                    "SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local'), coalesce(state, ''), coalesce(sync_state, '') FROM pg_stat_replication ORDER BY application_name",
                    &[],
                )
                .await
                .map_err(db_error("read pg_stat_replication on"))?;
            let mut standbys = Vec::new();
            for row in rows {
                let field = |index| row.try_get::<_, String>(index).unwrap_or_default();
                standbys.push(Standby {
                    name: field(0),
                    address: field(1),
                    state: field(2),
                    sync_state: field(3),
                });
            }
            Ok(Replication {
                synchronous_commit,
                synchronous_standby_names,
                standbys,
            })
        })
    }

    /// The epoch the writer row holds now (after this writer was fenced, the one that took over).
    fn current_epoch(&self) -> Option<i64> {
        self.connection
            .block_on(self.connection.client.query_one(
                "SELECT epoch FROM neuron_writers WHERE log = $1",
                &[&self.location.log],
            ))
            .ok()
            .and_then(|row| row.try_get(0).ok())
    }
}

impl LogReader for PostgresLog {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        self.connection
            .scan_while(&self.location.log, from, to, visit)
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        self.connection.read_nodes(&self.location.log, nodes)
    }
}

impl Log for PostgresLog {
    fn append(&mut self, batch: &[Appended]) -> Result<(), Error> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        if self.abandoned {
            return Err(postgres_error(
                "write to",
                "the log was given up after a failed write",
            ));
        }
        let Some(epoch) = self.epoch else {
            return Err(postgres_error(
                "write to",
                "the log is open for reading only",
            ));
        };
        let new_head = LogHead {
            seq: last.seq,
            hash: Digest::of(&last.bytes),
        };
        let seqs: Vec<i64> = batch
            .iter()
            .map(|appended| as_i64(appended.seq))
            .collect::<Result<_, _>>()?;
        let bytes: Vec<&[u8]> = batch
            .iter()
            .map(|appended| appended.bytes.as_slice())
            .collect();
        let trees: Vec<Vec<u8>> = batch
            .iter()
            .map(|appended| tree_value(&appended.tree))
            .collect();
        let (log, head, timeout) = (&self.location.log, self.head, self.commit_timeout);
        let write = Batch {
            log,
            epoch,
            head,
            new_head,
            seqs: &seqs,
            bytes: &bytes,
            trees: &trees,
        };
        let client = &mut self.connection.client;
        let outcome = if self.restoring {
            // Inside the restore's transaction: committed, or rolled back, as a whole.
            self.connection.runtime.block_on(write.run(&*client))
        } else {
            self.connection.runtime.block_on(async {
                let transaction = client
                    .transaction()
                    .await
                    .map_err(db_error("begin a batch on"))?;
                if !write.run(&transaction).await? {
                    return Ok(false);
                }
                // The commit waits for the synchronous standbys: bounded, so that a cluster that
                // lost its quorum stops the server instead of hanging it.
                match tokio::time::timeout(timeout, transaction.commit()).await {
                    Ok(Ok(())) => Ok(true),
                    Ok(Err(error)) => Err(Error::CommitUnknown {
                        reason: db_error("commit")(error).to_string(),
                    }),
                    Err(_) => Err(Error::CommitUnknown {
                        reason: format!(
                            "no synchronous standby confirmed the commit within {} ms",
                            timeout.as_millis()
                        ),
                    }),
                }
            })
        };
        match outcome {
            Ok(true) => {
                self.head = new_head;
                self.acknowledged = Acknowledged::Head(new_head);
                Ok(())
            }
            Ok(false) => Err(Error::Fenced {
                epoch: self.current_epoch(),
                ours: epoch,
            }),
            Err(error) => Err(error),
        }
    }

    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_> {
        let mut records = Vec::new();
        let read = self
            .connection
            .scan_while(&self.location.log, from, to, &mut |seq, bytes| {
                records.push((seq, bytes.to_vec()));
                true
            });
        match read {
            Ok(()) => Box::new(records.into_iter().map(Ok)),
            Err(error) => Box::new(
                records
                    .into_iter()
                    .map(Ok)
                    .chain(std::iter::once(Err(error))),
            ),
        }
    }

    fn scan(&self, from: u64, to: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<(), Error> {
        self.connection
            .scan_while(&self.location.log, from, to, &mut |seq, bytes| {
                visit(seq, bytes);
                true
            })
    }

    fn head(&self) -> Result<LogHead, Error> {
        let row = self
            .connection
            .block_on(self.connection.client.query_opt(
                "SELECT seq, bytes FROM neuron_records WHERE log = $1 ORDER BY seq DESC LIMIT 1",
                &[&self.location.log],
            ))
            .map_err(db_error("read the last record from"))?;
        match row {
            None => Ok(LogHead::EMPTY),
            Some(row) => {
                let seq: i64 = row
                    .try_get(0)
                    .map_err(db_error("read the last record from"))?;
                let bytes: &[u8] = row
                    .try_get(1)
                    .map_err(db_error("read the last record from"))?;
                Ok(LogHead {
                    seq: as_u64(seq)?,
                    hash: Digest::of(bytes),
                })
            }
        }
    }

    fn last_key(&self) -> Result<u64, Error> {
        let row = self
            .connection
            .block_on(self.connection.client.query_one(
                "SELECT coalesce(max(seq), 0) FROM neuron_records WHERE log = $1",
                &[&self.location.log],
            ))
            .map_err(db_error("read the last seq from"))?;
        as_u64(row.try_get(0).map_err(db_error("read the last seq from"))?)
    }

    fn tree_size(&self) -> Result<u64, Error> {
        let row = self
            .connection
            .block_on(self.connection.client.query_one(
                "SELECT coalesce(max(seq), 0) FROM neuron_records WHERE log = $1 AND tree IS NOT NULL",
                &[&self.location.log],
            ))
            .map_err(db_error("read the tree's size from"))?;
        as_u64(
            row.try_get(0)
                .map_err(db_error("read the tree's size from"))?,
        )
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        self.connection.read_nodes(&self.location.log, nodes)
    }

    fn scan_tree(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), Error> {
        let (from, to) = (
            as_i64(from.min(i64::MAX as u64))?,
            as_i64(to.min(i64::MAX as u64))?,
        );
        let rows = self
            .connection
            .block_on(self.connection.client.query(
                "SELECT seq, tree FROM neuron_records WHERE log = $1 AND seq >= $2 AND seq <= $3 AND tree IS NOT NULL ORDER BY seq",
                &[&self.location.log, &from, &to],
            ))
            .map_err(db_error("read tree hashes from"))?;
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(db_error("read tree hashes from"))?;
            let tree: &[u8] = row.try_get(1).map_err(db_error("read tree hashes from"))?;
            visit(as_u64(seq)?, tree);
        }
        Ok(())
    }

    fn add_tree(&mut self, first_seq: u64, tree: &[Vec<Hash>]) -> Result<(), Error> {
        let seqs: Vec<i64> = (first_seq..)
            .take(tree.len())
            .map(as_i64)
            .collect::<Result<_, _>>()?;
        let values: Vec<Vec<u8>> = tree.iter().map(|hashes| tree_value(hashes)).collect();
        self.connection
            .block_on(self.connection.client.execute(
                "UPDATE neuron_records AS r SET tree = t.tree FROM unnest($2::bigint[], $3::bytea[]) AS t(seq, tree) WHERE r.log = $1 AND r.seq = t.seq",
                &[&self.location.log, &seqs, &values],
            ))
            .map_err(db_error("store the tree in"))?;
        Ok(())
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(PostgresReader::new(self.location.clone()))
    }

    fn acknowledged(&self) -> Acknowledged {
        self.acknowledged.clone()
    }

    fn abandon(&mut self) {
        // Nothing is buffered on this side: a transaction either committed or did not. A writer
        // that gave up writes nothing more.
        self.abandoned = true;
    }
}

/// Connections a reader opens at most: receipts and proofs for many handshakes at once share
/// them, and the database's connection limit is the hospital's.
const READER_CONNECTIONS: usize = 4;

/// A reader of a PostgreSQL log on connections of its own (up to [`READER_CONNECTIONS`]), opened
/// as reads need them; a connection that failed a read is closed.
struct PostgresReader {
    location: Location,
    pool: Mutex<Pool>,
    returned: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Connection>,
    open: usize,
}

impl PostgresReader {
    fn new(location: Location) -> Self {
        Self {
            location,
            pool: Mutex::default(),
            returned: Condvar::new(),
        }
    }

    fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let connection = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(connection) = pool.idle.pop() {
                    break Some(connection);
                }
                if pool.open < READER_CONNECTIONS {
                    pool.open += 1;
                    break None;
                }
                pool = self
                    .returned
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let connection = match connection {
            Some(connection) => Ok(connection),
            None => Connection::open(&self.location, true),
        };
        let outcome = connection.map(|connection| (work(&connection), connection));
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = match outcome {
            Ok((Ok(value), connection)) => {
                pool.idle.push(connection);
                Ok(value)
            }
            Ok((Err(error), _)) | Err(error) => {
                pool.open -= 1;
                Err(error)
            }
        };
        self.returned.notify_one();
        outcome
    }
}

impl LogReader for PostgresReader {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        self.with(|connection| connection.scan_while(&self.location.log, from, to, visit))
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        self.with(|connection| connection.read_nodes(&self.location.log, nodes))
    }
}
