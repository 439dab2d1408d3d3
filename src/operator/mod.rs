//! The operator listener (SPEC §5): health, readiness, Prometheus metrics, the live views, provider
//! management, relationship termination and the audit log, as JSON over HTTP on its own address.
//! It works on the server's shared live state (`server::live`), never on the server.
//!
//! - `listener`: the accept loop and its limits, and the dispatcher every request goes through.
//! - `routes`: the route table, [`ROUTES`], which `openapi.json` is checked against.
//! - `guard`: bearer tokens, and browsers refused (`Origin`, `Host`, content type).
//! - `request`: a request's query and body, read within their limits.
//! - `reads`, `changes`, `export`, `proofs`: the endpoints. Every change is an event, committed before it
//!   is answered; changes are made one at a time so that a check and its event cannot interleave
//!   with another change.
//! - `errors`: the error answers, as JSON with a code.
//! - `openapi`: the description, as this listener serves it.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Bytes;
use tokio::sync::Semaphore;

use neuron_events::store::LogReader;
use neuron_projections::Views;

use crate::config::Config;
use crate::server::live::Live;
use crate::server::metrics::Metrics;

mod changes;
mod errors;
mod export;
mod guard;
mod head;
mod listener;
#[cfg(any(test, feature = "test-support"))]
mod offline;
mod openapi;
mod proofs;
mod reads;
mod request;
mod routes;
#[cfg(test)]
mod tests;

pub use guard::new_token;
pub use openapi::OPENAPI;
pub use routes::{resolve, Endpoint, Resolved, Route, ROUTES};

#[cfg(any(test, feature = "test-support"))]
pub(crate) use listener::answer_offline;
pub(crate) use listener::serve;
use openapi::openapi_document;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The most relationships one page returns.
pub const MAX_PAGE: usize = 1000;
/// A page's size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The longest termination reason or provider name accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// What the operator listener works with: the server's live state, a read-only handle on the log
/// for exports and relationship details, and its own limits.
pub(crate) struct OperatorState {
    pub live: Arc<Live>,
    pub reader: Arc<dyn LogReader>,
    /// blake3 hashes of the accepted bearer tokens; empty means `/v1/*` is open (loopback only).
    pub tokens: Vec<blake3::Hash>,
    pub openapi: Bytes,
    /// The listener's own address.
    pub listen: SocketAddr,
    /// What a request's `Host` may say (DNS rebinding): the listener's address, `localhost` with
    /// its port, and the entries of `admin.allowed_hosts`.
    pub hosts: Vec<String>,
    /// Export streams at once.
    pub exports: Arc<Semaphore>,
    /// `admin.max_exports`, for the answer when all are running.
    pub max_exports: u32,
    /// How long a request's header may take to arrive, and the longest idle keep-alive
    /// (`server.header_timeout_ms`); also how long its body may take.
    pub header_timeout: std::time::Duration,
    /// `websocket.write_timeout_ms`, on every write.
    pub write_timeout: std::time::Duration,
    /// `admin.max_connections`.
    pub max_connections: u32,
    /// `admin.allowed_origins`: the browser pages whose requests are served.
    pub allowed_origins: Vec<String>,
}

impl OperatorState {
    /// The operator listener's state over `live`, listening on `listen` with the limits `config`
    /// sets.
    pub(crate) fn new(
        live: Arc<Live>,
        reader: Arc<dyn LogReader>,
        tokens: Vec<blake3::Hash>,
        listen: SocketAddr,
        config: &Config,
    ) -> Self {
        let admin = &config.admin;
        let hosts = [listen.to_string(), format!("localhost:{}", listen.port())]
            .into_iter()
            .chain(admin.allowed_hosts.iter().cloned())
            .collect();
        Self {
            exports: Arc::new(Semaphore::new(admin.max_exports as usize)),
            max_exports: admin.max_exports,
            header_timeout: std::time::Duration::from_millis(config.server.header_timeout_ms),
            write_timeout: std::time::Duration::from_millis(config.websocket.write_timeout_ms),
            max_connections: admin.max_connections,
            allowed_origins: admin.allowed_origins.clone(),
            live,
            reader,
            openapi: openapi_document(!tokens.is_empty()),
            tokens,
            listen,
            hosts,
        }
    }

    pub(super) fn views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.live.views()
    }

    pub(super) fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.live.metrics()
    }
}
