//! The errors a PostgreSQL log gives, naming what it was doing.

use crate::Error;

pub(super) fn postgres_error(action: &'static str, reason: impl Into<String>) -> Error {
    Error::Postgres {
        action,
        reason: reason.into(),
    }
}

/// An error from the database, in words.
pub(super) fn db_error(action: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
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
