//! Where a log lives: a PostgreSQL URL and the log's name in that database.

use super::error::postgres_error;
use crate::Error;

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
