//! The two tables every Neuron log in a database shares, and the check that tables named like them
//! are a Neuron log's before anything reads or writes them.

use tokio_postgres::GenericClient;

use crate::Error;

use super::error::{db_error, postgres_error};

/// The schema every Neuron log in a database shares. Created if missing by a writer.
pub(super) const SCHEMA: &str = "
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

/// The columns a Neuron log's tables have, in order.
pub(super) const SHAPE: [(&str, &str); 9] = [
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
pub(super) enum Missing {
    Allowed,
    Refused,
}

/// Refuses tables named like the Neuron's whose columns are not a Neuron log's: another
/// application's data is never read as records, nor written to.
pub(super) async fn check_shape(
    client: &impl GenericClient,
    missing: Missing,
) -> Result<(), Error> {
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
