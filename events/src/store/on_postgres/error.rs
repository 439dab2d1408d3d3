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

/// Waits for a commit at most `timeout` (the synchronous standbys confirm it): bounded, so that a
/// cluster that lost its quorum stops the server instead of hanging it. A commit that fails or
/// does not come back has an unknown outcome ([`Error::CommitUnknown`]).
pub(super) async fn commit_within(
    timeout: std::time::Duration,
    commit: impl std::future::Future<Output = Result<(), tokio_postgres::Error>>,
) -> Result<(), Error> {
    match tokio::time::timeout(timeout, commit).await {
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
}
