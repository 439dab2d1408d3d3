//! The server (SPEC §2, §3.4, §5, §7), one room per concern:
//!
//! - `gateway`: the public listener: admission at the connection level (connection limit,
//!   slots, the FIFO queue), the upgrade exchange, refusals.
//! - [`http`]: the one HTTP exchange of the handshake port, pure.
//! - `session`: one handshake session over its WebSocket, driving the pure
//!   [`neuron_handshake::machine::step`], event first.
//! - `live`: the shared live state sessions and the operator API work on.
//! - [`metrics`]: the counters and histograms behind `/metrics`, fed from committed records.
//! - `pairs`: one completing decision at a time per (patient, provider).
//! - `refusals`: connections turned away before a session exists, summarised.
//! - [`timed`]: sockets whose writes time out.
//! - `start`: the stored log checked and folded, providers reconciled, listeners bound.
//!
//! As a library it offers [`Server::start`], [`Server::stop`] and [`Server::active_sessions`];
//! `neuron serve` calls [`run`].
//!
//! Invariant: no frame is sent, no socket closed and no HTTP answer given before the event that
//! describes it is committed; every session ends with one terminal record, whatever its client
//! does, and a stop ends within `server.shutdown_grace_ms`.

pub(crate) mod accept;
mod error;
mod gateway;
mod head_reads;
pub mod http;
pub(crate) mod live;
pub mod metrics;
mod options;
mod pairs;
mod refusals;
mod rewind;
mod routes;
mod session;
mod start;
pub mod timed;
pub mod witness_board;
pub mod witnesses;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use neuron_events::event::*;
use neuron_events::store::LogReader;
use neuron_events::{Clock, Event};
use neuron_projections::Views;

use crate::config::Config;
use crate::ids::IdSource;
use crate::operator::{self, OperatorState};
pub use error::ServerError;
pub use live::ActiveSession;
use live::{Live, StopPhase, StopSignal};
pub use options::{Options, StartOver};

/// The live state the listeners share, built over the journal and views just opened, with the
/// signals that stop them in phases; also the operator API's own stop signal.
fn live(
    serving: start::Serving,
    reader: Arc<dyn LogReader>,
    ids: Arc<dyn IdSource>,
    clock: Arc<dyn Clock>,
) -> (Arc<Live>, StopSignal) {
    let (signal, stop) = StopSignal::new();
    let live = Arc::new(Live {
        journal: serving.journal,
        reader,
        witnesses: Arc::default(),
        views: serving.views,
        metrics: serving.metrics,
        changes: tokio::sync::RwLock::new(()),
        pairs: Default::default(),
        ids,
        clock,
        stop,
    });
    (live, signal)
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    live: Arc<Live>,
    gateway: Arc<gateway::Gateway>,
    refusals: Arc<refusals::Refusals>,
    signal: StopSignal,
    serving: tokio::task::JoinHandle<()>,
    summaries: tokio::task::JoinHandle<()>,
    admin_serving: tokio::task::JoinHandle<()>,
    witnesses: Arc<witnesses::Witnesses>,
    witnessing: tokio::task::JoinHandle<()>,
    /// `server.shutdown_grace_ms`.
    grace: Duration,
}

impl Server {
    /// Opens the log in `storage.data_dir`, checks it and rebuilds the views, records the start
    /// and the configured providers, binds both listeners and starts serving.
    ///
    /// # Errors
    /// [`ServerError`] when the data directory, the key, the log or a listener cannot be used.
    pub async fn start(config: Config, options: Options) -> Result<Self, ServerError> {
        let checked = config.validate()?;
        let data_dir = config.storage.data_dir.clone();
        // Opening a log and folding it into the views read the store (and a database) with
        // blocking calls: off the runtime's threads.
        let (opened, clock) = (config.clone(), options.clock.clone());
        let (key, start_over) = (options.key, options.start_over);
        let (public_key, decision, reader, serving) = tokio::task::spawn_blocking(move || {
            let store = start::open_store(&opened, key, start_over)?;
            start::write_vkey(&opened.storage.data_dir, &store.key, &opened.origin())?;
            let public_key = store.key.public_b64();
            let reader = store.reader.clone();
            let decision = store.decision.clone();
            let serving = start::journal_over(store, clock, &opened)?;
            Ok::<_, ServerError>((public_key, decision, reader, serving))
        })
        .await
        .map_err(|error| ServerError::Io {
            action: "open the log".into(),
            source: std::io::Error::other(error.to_string()),
        })??;
        let startup = {
            let views = serving.views.read();
            let views = views.unwrap_or_else(std::sync::PoisonError::into_inner);
            start::startup_events(&config, public_key, decision, &views)
        };
        // Bound before anything is recorded: a start that cannot listen (a port in use) writes
        // nothing, rather than a `server.started` that looks like a crash.
        let budget = start::connection_budget(&config);
        let listeners = start::bind_both(&checked, &data_dir).await?;
        serving.journal.append_all(startup).await?;
        start::settle_conflicts(&serving, options.acknowledge_rollback).await?;
        let (live, signal) = live(serving, reader.clone(), options.ids, options.clock);
        let witnesses = Arc::new(witnesses::Witnesses::new(live.clone(), &config.audit));
        if witnesses.any() {
            // Before a handshake is served: a log rolled back since a witness last saw it is
            // refused now, not after the first interval.
            if let Some(reason) = witnesses.round().await {
                return Err(ServerError::RolledBack { reason });
            }
        }
        let witnessing = tokio::spawn(witnesses.clone().run());
        let refusals = Arc::new(refusals::Refusals::default());
        let gateway = Arc::new(gateway::Gateway::new(
            live.clone(),
            &config,
            budget,
            refusals.clone(),
        ));
        let (addr, admin_addr) = (listeners.public_addr, listeners.admin_addr);
        let serving = tokio::spawn(gateway.clone().serve(listeners.public));
        let summaries = tokio::spawn(refusals::summarize(live.clone(), refusals.clone()));
        let admin_state = Arc::new(OperatorState::new(
            live.clone(),
            reader,
            checked.admin_tokens,
            admin_addr,
            &config,
        ));
        let admin_serving = tokio::spawn(operator::serve(listeners.admin, admin_state));
        info!(%addr, max_connections = budget, "listening for handshakes");
        info!(addr = %admin_addr, "operator API listening");
        Ok(Self {
            addr,
            admin_addr,
            live,
            gateway,
            refusals,
            signal,
            serving,
            summaries,
            admin_serving,
            witnesses,
            witnessing,
            grace: Duration::from_millis(config.server.shutdown_grace_ms),
        })
    }

    /// The address the public listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the operator listener is bound to.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The live sessions: queued or in a handshake.
    pub fn active_sessions(&self) -> Vec<ActiveSession> {
        self.live.active_sessions()
    }

    /// A copy of the live views.
    pub fn views(&self) -> Views {
        self.live.views().clone()
    }

    /// Connections open on the public listener now, queued ones included.
    pub fn open_connections(&self) -> usize {
        self.gateway.open_connections()
    }

    /// Resolves with the cause once a write to the log has failed: the server must then stop at
    /// once ([`Server::fail_stop`]).
    pub async fn failed(&self) -> String {
        self.live.journal.failed().await
    }

    /// Stops at once after a failed write: both listeners close, nothing more is recorded (the
    /// journal refuses every append), and sessions still running end with `SERVER_ERROR` when
    /// they next try to record. Returns the error to exit with.
    pub fn fail_stop(self, reason: String) -> ServerError {
        tracing::error!(%reason, "the event log could not be written: stopping at once, recording nothing more (fail-stop)");
        self.serving.abort();
        self.summaries.abort();
        self.admin_serving.abort();
        self.witnessing.abort();
        // Nothing more can be recorded: the log is as good as closed, and the operator's
        // connections finish what they are answering (`/ready` says why) and close.
        self.signal.advance(StopPhase::Closed);
        ServerError::LogFailed { reason }
    }

    /// Stops gracefully within `server.shutdown_grace_ms` (SPEC §2.6): records why, stops
    /// accepting, answers every queued connection 503, closes every live session with 1001,
    /// cuts off whatever still waits on a client when the grace is over, then records the last
    /// refusal summaries and a final signed checkpoint and closes the log. The operator listener
    /// answers `/ready` 503 from the first step and closes last.
    ///
    /// # Errors
    /// [`ServerError::Log`] when the closing records cannot be written.
    pub async fn stop(self, reason: &str) -> Result<(), ServerError> {
        let deadline = tokio::time::Instant::now() + self.grace;
        let stopping = self
            .live
            .journal
            .append(Event::global(EventData::ServerStopping(ServerStopping {
                reason: reason.into(),
            })))
            .await;
        // Queued connections first (each gets 503 and its record), then live sessions (1001),
        // so that the closing records come in a fixed order.
        self.signal.advance(StopPhase::Draining);
        let _ = self.serving.await;
        let waiting = self.gateway.waiting();
        waiting.close();
        let _ = tokio::time::timeout_at(deadline, waiting.wait()).await;
        self.signal.advance(StopPhase::Stopping);
        let tasks = self.gateway.tasks();
        tasks.close();
        if tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_err()
        {
            warn!(
                open = tasks.len(),
                "connections still open at the end of the grace period: cut off"
            );
            self.signal.advance(StopPhase::Cut);
            // Every wait on a client ends at the cut; what remains is committing records.
            let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
        }
        {
            // Cut under the change lock: an operator change in flight commits first (the final
            // checkpoint covers it), any later one sees the cut and is refused.
            let _no_more_changes = self.live.changes.write().await;
            self.signal.advance(StopPhase::Cut);
        }
        self.summaries.abort();
        self.witnessing.abort();
        let closed = async {
            stopping?;
            for summary in self.refusals.take() {
                self.live.journal.append(summary).await?;
            }
            final_checkpoint(&self.live).await?;
            if self.witnesses.any() {
                // The last checkpoint goes to the witnesses too, within what is left of the grace;
                // their cosignatures are recorded and covered by one more checkpoint.
                let before = self.live.journal.status().head.seq;
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let _ = tokio::time::timeout(
                    remaining.max(Duration::from_millis(500)),
                    self.witnesses.round(),
                )
                .await;
                if self.live.journal.status().head.seq > before {
                    final_checkpoint(&self.live).await?;
                }
            }
            self.live.journal.close().await?;
            Ok::<_, ServerError>(())
        }
        .await;
        // Closed above unless a write failed; then only the writer's end is waited for.
        let _ = self.live.journal.close().await;
        // The operator listener answers (not ready) until the log is closed.
        self.signal.advance(StopPhase::Closed);
        let _ = self.admin_serving.await;
        closed?;
        info!(reason, "stopped");
        Ok(())
    }
}

/// The checkpoint that ends a run: none while signing is held (a witness conflict stands), which
/// is said in the server's log.
async fn final_checkpoint(live: &Live) -> Result<(), ServerError> {
    if let Some(reason) = live.journal.status().signing_held {
        warn!(%reason, "no final checkpoint: signing is held");
        return Ok(());
    }
    live.journal.checkpoint().await?;
    Ok(())
}

/// Runs a server until `shutdown` resolves with the reason, then stops it gracefully. If a write to
/// the log fails first, it stops at once instead (fail-stop): nothing more is recorded, and the
/// error names the cause.
///
/// # Errors
/// As [`Server::start`] and [`Server::stop`]; [`ServerError::LogFailed`] after a failed write.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = String>,
) -> Result<(), ServerError> {
    let server = Server::start(config, options).await?;
    let journal = server.live.journal.clone();
    tokio::select! {
        reason = shutdown => server.stop(&reason).await,
        reason = journal.failed() => Err(server.fail_stop(reason)),
    }
}
