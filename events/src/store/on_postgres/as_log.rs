//! [`PostgresLog`] as the journal's [`Log`]: appends as fenced transactions, reads, the tree.

use std::sync::Arc;

use super::batch::Batch;
use super::connection::{as_i64, as_u64};
use super::error::{commit_within, db_error, postgres_error};
use super::log::PostgresLog;
use super::reader::PostgresReader;
use crate::record::Digest;
use crate::store::{tree_value, Acknowledged, Appended, Log, LogHead, LogReader, StoredRecord};
use crate::tree::{Hash, Node};
use crate::Error;

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
                commit_within(timeout, transaction.commit()).await?;
                Ok(true)
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
