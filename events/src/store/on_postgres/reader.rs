//! A reader of a PostgreSQL log on a small pool of connections of its own.

use std::sync::{Condvar, Mutex, PoisonError};

use super::connection::Connection;
use super::location::Location;
use crate::store::LogReader;
use crate::tree::{Hash, Node};
use crate::Error;

/// Connections a reader opens at most: receipts and proofs for many handshakes at once share
/// them, and the database's connection limit is the hospital's.
pub(super) const READER_CONNECTIONS: usize = 4;

/// A reader of a PostgreSQL log on connections of its own (up to [`READER_CONNECTIONS`]), opened
/// as reads need them; a connection that failed a read is closed.
pub(super) struct PostgresReader {
    pub(super) location: Location,
    pub(super) pool: Mutex<Pool>,
    pub(super) returned: Condvar,
}

#[derive(Default)]
pub(super) struct Pool {
    pub(super) idle: Vec<Connection>,
    pub(super) open: usize,
}

impl PostgresReader {
    pub(super) fn new(location: Location) -> Self {
        Self {
            location,
            pool: Mutex::default(),
            returned: Condvar::new(),
        }
    }

    pub(super) fn with<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
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
