//! [`PostgresLog`]: a log taken over by a writer (fenced by its epoch), opened by a reader, or
//! filled by a restore, and what it says of itself.

use std::time::Duration;

use super::connection::{as_u64, digest_of, Connection};
use super::error::{commit_within, db_error, postgres_error};
use super::location::Location;
use super::replication::{Replication, Standby};
use super::schema::{check_shape, Missing, SCHEMA};
use crate::record::Digest;
use crate::store::{Acknowledged, LogHead};
use crate::Error;

/// A log in PostgreSQL, as its writer holds it (or as an investigator reads it).
pub struct PostgresLog {
    pub(super) connection: Connection,
    pub(super) location: Location,
    /// The epoch this writer took the log over with; `None` for a reader.
    pub(super) epoch: Option<i64>,
    /// The head this writer holds: what the writer row must still say at the next batch.
    pub(super) head: LogHead,
    pub(super) acknowledged: Acknowledged,
    pub(super) commit_timeout: Duration,
    pub(super) abandoned: bool,
    /// A restore's transaction is open: appends go into it, uncommitted.
    pub(super) restoring: bool,
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
    pub(super) fn ensure_schema(&self) -> Result<(), Error> {
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
        self.connection
            .runtime
            .block_on(commit_within(timeout, client.batch_execute("COMMIT")))?;
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
    pub(super) fn current_epoch(&self) -> Option<i64> {
        self.connection
            .block_on(self.connection.client.query_one(
                "SELECT epoch FROM neuron_writers WHERE log = $1",
                &[&self.location.log],
            ))
            .ok()
            .and_then(|row| row.try_get(0).ok())
    }
}
