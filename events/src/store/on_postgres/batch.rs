//! One batch's writes in one transaction: the writer row moved from the head this writer holds
//! (the fence), then the records.

use tokio_postgres::GenericClient;

use super::connection::as_i64;
use super::error::db_error;
use crate::store::LogHead;
use crate::Error;

/// One batch's writes: the writer row moved from the head this writer holds, then the records.
pub(super) struct Batch<'a> {
    pub(super) log: &'a str,
    pub(super) epoch: i64,
    pub(super) head: LogHead,
    pub(super) new_head: LogHead,
    pub(super) seqs: &'a [i64],
    pub(super) bytes: &'a [&'a [u8]],
    pub(super) trees: &'a [Vec<u8>],
}

impl Batch<'_> {
    /// Writes the batch; `false` when the writer row was not where this writer left it (fenced).
    pub(super) async fn run(&self, client: &impl GenericClient) -> Result<bool, Error> {
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
