//! The warp server (SPEC §2, §3.4, §5): the WebSocket route with its safety ceiling and FIFO
//! queue, one task per session driving the pure [`handshake::step`], event first, and a graceful
//! stop. As a library it offers [`Server::start`], [`Server::stop`] and
//! [`Server::active_sessions`]; `neuron serve` calls [`run`].
//!
//! Invariant: no frame is sent, no socket closed and no HTTP answer given before the event that
//! describes it is committed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};
use warp::http::StatusCode;
use warp::reply::Reply;
use warp::ws::Ws;
use warp::Filter;

use neuron_events::event::*;
use neuron_events::{
    BatchReport, Clock, Event, Journal, JournalOptions, Log, NeuronKey, Record, SledLog, Timestamp,
};
use neuron_projections::sessions::SessionStage;
use neuron_projections::Views;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::handshake::{self, Context, Effect, Input, Phase};
use crate::ids::IdSource;
use crate::metrics::Metrics;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The event log failed.
    #[error("event log")]
    Log(#[from] neuron_events::Error),
    /// A file or socket operation failed.
    #[error("{action}")]
    Io {
        /// What was being done.
        action: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The configuration cannot be served.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store is damaged or lost records it acknowledged: nothing is written on top of it.
    #[error("refusing the log at {path}: {reason}; run `neuron verify` on the data directory and rebuild it from an export with `neuron restore`")]
    StoreRefused {
        /// The store.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The stored log does not form a chain the server may continue.
    #[error("the log is damaged at seq {seq}: {reason}; run `neuron verify` on the data directory and rebuild it from an export with `neuron restore`")]
    Damaged {
        /// The first seq at fault.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A write to the log failed: the server stopped at once without recording anything more
    /// (fail-stop, SPEC §3.4).
    #[error(
        "the event log could not be written ({reason}); stopped at once, recording nothing more"
    )]
    LogFailed {
        /// The cause, as the operating system gave it.
        reason: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let action = action.into();
    move |source| ServerError::Io { action, source }
}

/// What the server is given besides its configuration: the seams tests replace.
pub struct Options {
    /// The clock stamped on records and used for token times.
    pub clock: Arc<dyn Clock>,
    /// Session ids, relationship ids and nonces.
    pub ids: Arc<dyn IdSource>,
    /// The Neuron's key; `None` loads or creates `{data_dir}/neuron.key`.
    pub key: Option<NeuronKey>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(neuron_events::SystemClock),
            ids: Arc::new(crate::ids::RandomIds),
            key: None,
        }
    }
}

/// A live session as the views show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActiveSession {
    /// The session id.
    pub id: String,
    /// The patient agent, once known.
    pub patient_agent_id: Option<String>,
    /// The provider, once known.
    pub provider_npi: Option<String>,
    /// Its stage.
    pub stage: SessionStage,
    /// When it started.
    pub started: Timestamp,
}

struct Shared {
    config: Config,
    journal: Journal,
    views: Arc<RwLock<Views>>,
    gate: Arc<Semaphore>,
    waiting: AtomicU32,
    /// Shared with the operator API: read-held by a session across a frame's step and commit,
    /// write-held by an operator's change across its check and commit.
    changes: Arc<tokio::sync::RwLock<()>>,
    ids: Arc<dyn IdSource>,
    clock: Arc<dyn Clock>,
    stopping: watch::Receiver<bool>,
    /// Set first at shutdown: queued upgrades are answered 503 before live sessions are closed.
    draining: watch::Receiver<bool>,
    sessions: TaskTracker,
    /// Upgrades waiting in the queue, until their last event is committed.
    queued: TaskTracker,
}

impl Shared {
    fn read_views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        // Views are only ever replaced record by record inside the lock; a panic elsewhere cannot
        // leave them half-applied, so a poisoned lock still guards consistent views.
        self.views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
    admin_addr: SocketAddr,
    admin_stop: watch::Sender<bool>,
    admin_serving: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the log in `storage.data_dir`, rebuilds the views, records the start and the
    /// configured providers, binds the listener and starts serving.
    ///
    /// # Errors
    /// [`ServerError`] when the data directory, the key, the log or the listener cannot be used.
    pub async fn start(config: Config, options: Options) -> Result<Self, ServerError> {
        config.validate()?;
        let data_dir = config.storage.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(io_error(format!(
            "create data directory {}",
            data_dir.display()
        )))?;
        // The log is opened first: its lock is the data directory's, held before the key file is
        // read or created, so two servers starting on one directory never race for either.
        let log_dir = data_dir.join("log");
        let refuse = |error: neuron_events::Error| match error {
            neuron_events::Error::AcknowledgedButAbsent { .. }
            | neuron_events::Error::HeadEvidence { .. }
            | neuron_events::Error::Corrupt { .. } => ServerError::StoreRefused {
                path: log_dir.clone(),
                reason: error.to_string(),
            },
            error if error.is_damage() => ServerError::StoreRefused {
                path: log_dir.clone(),
                reason: neuron_events::full_message(&error),
            },
            error => ServerError::Log(error),
        };
        let log = SledLog::open(&log_dir).map_err(refuse)?;
        // A store that lost records it acknowledged is refused before anything is read from it.
        let stored_head = neuron_events::evidence::check(&log).map_err(refuse)?;
        let key = match options.key {
            Some(key) => key,
            None => NeuronKey::load_or_create(&data_dir)?.0,
        };
        let reader = log.reader();
        let mut recalled = Metrics::default();
        let views = rebuild(&log, stored_head, &mut recalled).map_err(|error| match error {
            ServerError::Log(error) => refuse(error),
            other => other,
        })?;
        let views = Arc::new(RwLock::new(views));
        let metrics = Arc::new(Mutex::new(recalled));
        let observed = views.clone();
        let counted = metrics.clone();
        let observer = move |records: &[Record], report: &BatchReport| {
            {
                let mut views = observed
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for record in records {
                    views.apply(record);
                }
            }
            let mut metrics = counted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for record in records {
                metrics.observe(record);
            }
            metrics.observe_batch(report);
        };
        let public_key = key.public_b64();
        let journal = Journal::start(
            Box::new(log),
            Arc::new(key),
            options.clock.clone(),
            JournalOptions {
                checkpoint_every: config.audit.checkpoint_every,
                ..JournalOptions::default()
            },
            Box::new(observer),
        )
        .map_err(refuse)?;
        let mut startup = vec![Event::global(EventData::ServerStarted(ServerStarted {
            version: env!("CARGO_PKG_VERSION").into(),
            public_key,
            organization_npi: config.organization.npi.clone(),
            config_digest: config.digest(),
        }))];
        startup.extend(provider_changes(
            &config,
            &views
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ));
        journal.append_all(startup).await?;

        let (listener, addr) = bind(
            config.server_addr()?,
            "the handshake listener",
            &data_dir,
            "serve.addr",
        )
        .await?;
        let (admin_listener, admin_addr) = bind(
            config.admin_addr()?,
            "the operator listener",
            &data_dir,
            "admin.addr",
        )
        .await?;

        let (stop, stopping) = watch::channel(false);
        let (drain, draining) = watch::channel(false);
        let changes = Arc::new(tokio::sync::RwLock::new(()));
        let admin_state = Arc::new(AdminState {
            journal: journal.clone(),
            views: views.clone(),
            metrics,
            reader: Arc::new(reader),
            tokens: config.admin_tokens()?,
            changes: changes.clone(),
            draining: draining.clone(),
            openapi: admin::openapi_document(),
        });
        let shared = Arc::new(Shared {
            gate: Arc::new(Semaphore::new(
                config.websocket.max_concurrent_handshakes as usize,
            )),
            config,
            journal,
            views,
            waiting: AtomicU32::new(0),
            changes,
            ids: options.ids,
            clock: options.clock,
            stopping: stopping.clone(),
            draining,
            sessions: TaskTracker::new(),
            queued: TaskTracker::new(),
        });
        let mut signal = stopping;
        let graceful = async move {
            let _ = signal.wait_for(|stop| *stop).await;
        };
        let serving = tokio::spawn(
            warp::serve(routes(shared.clone()))
                .incoming(listener)
                .graceful(graceful)
                .run(),
        );
        let (admin_stop, mut admin_stopping) = watch::channel(false);
        let admin_serving = tokio::spawn(
            warp::serve(admin::routes(admin_state))
                .incoming(admin_listener)
                .graceful(async move {
                    let _ = admin_stopping.wait_for(|stop| *stop).await;
                })
                .run(),
        );
        info!(%addr, "listening for handshakes");
        info!(addr = %admin_addr, "operator API listening");
        Ok(Self {
            addr,
            shared,
            stop,
            drain,
            serving,
            admin_addr,
            admin_stop,
            admin_serving,
        })
    }

    /// Resolves with the cause once a write to the log has failed: the server must then stop at
    /// once ([`Server::fail_stop`]).
    pub async fn failed(&self) -> String {
        self.shared.journal.failed().await
    }

    /// Stops at once after a failed write: both listeners close, nothing more is recorded (the
    /// journal refuses every append), and sessions still running end with `SERVER_ERROR` when
    /// they next try to record. Returns the error to exit with.
    pub fn fail_stop(self, reason: String) -> ServerError {
        tracing::error!(%reason, "the event log could not be written: stopping at once, recording nothing more (fail-stop)");
        self.serving.abort();
        self.admin_serving.abort();
        let _ = self.stop.send(true);
        ServerError::LogFailed { reason }
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
        active_sessions(&self.shared.read_views())
    }

    /// A copy of the live views.
    pub fn views(&self) -> Views {
        self.shared.read_views().clone()
    }

    /// Stops gracefully (SPEC §2.6): records why, stops accepting, closes every live session with
    /// 1001, answers every queued request 503, then appends a final signed checkpoint and closes
    /// the log.
    ///
    /// # Errors
    /// [`ServerError::Log`] when the closing events cannot be written.
    pub async fn stop(self, reason: &str) -> Result<(), ServerError> {
        let stopping = self
            .shared
            .journal
            .append(Event::global(EventData::ServerStopping(ServerStopping {
                reason: reason.into(),
            })))
            .await;
        // Queued upgrades first (each gets 503 and its event), then live sessions (1001), so the
        // closing records come in a fixed order.
        let _ = self.drain.send(true);
        self.shared.queued.close();
        self.shared.queued.wait().await;
        let _ = self.stop.send(true);
        let _ = self.serving.await;
        self.shared.sessions.close();
        self.shared.sessions.wait().await;
        let closed = async {
            stopping?;
            self.shared.journal.checkpoint().await?;
            self.shared.journal.close().await?;
            Ok::<_, ServerError>(())
        }
        .await;
        // Closed above unless a write failed; then only the writer's end is waited for.
        let _ = self.shared.journal.close().await;
        // The operator listener answers (not ready) until the log is closed.
        let _ = self.admin_stop.send(true);
        // An operator still pulling an export must not hold the stop up for ever.
        let mut admin_serving = self.admin_serving;
        if tokio::time::timeout(ADMIN_GRACE, &mut admin_serving)
            .await
            .is_err()
        {
            warn!("operator requests still open after the grace period; cut off");
            admin_serving.abort();
        }
        closed?;
        info!(reason, "stopped");
        Ok(())
    }
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
    let journal = server.shared.journal.clone();
    tokio::select! {
        reason = shutdown => server.stop(&reason).await,
        reason = journal.failed() => Err(server.fail_stop(reason)),
    }
}

/// The live sessions of `views`.
pub(crate) fn active_sessions(views: &Views) -> Vec<ActiveSession> {
    views
        .sessions
        .live()
        .map(|session| ActiveSession {
            id: session.id.clone(),
            patient_agent_id: session.patient_agent_id.clone(),
            provider_npi: session.provider_npi.clone(),
            stage: session.stage,
            started: session.started,
        })
        .collect()
}

/// Binds `addr` and writes the bound address (a chosen port when `addr` asked for 0) to
/// `{data_dir}/{file}`.
async fn bind(
    addr: SocketAddr,
    what: &str,
    data_dir: &Path,
    file: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(io_error(format!("bind {what} {addr}")))?;
    let bound = listener
        .local_addr()
        .map_err(io_error(format!("read the address of {what}")))?;
    write_address(data_dir, file, bound)?;
    Ok((listener, bound))
}

/// Folds the stored log into the views, record by record (start-up memory does not grow with the
/// length of the log), checking on the way that it is one unbroken chain ending at the store's
/// head: the server never appends onto a log that does not verify.
fn rebuild(
    log: &SledLog,
    stored_head: neuron_events::LogHead,
    metrics: &mut Metrics,
) -> Result<Views, ServerError> {
    let mut views = Views::serving();
    let mut expected = 1;
    let mut head = neuron_events::Digest::GENESIS;
    let mut failure = None;
    log.scan(1, u64::MAX, &mut |seq, bytes| {
        if failure.is_some() {
            return;
        }
        match Record::decode(bytes) {
            Ok(record) if record.seq == seq && seq == expected && record.prev == head => {
                views.apply(&record);
                metrics.recall(&record);
                head = record.hash;
                expected += 1;
            }
            Ok(_) if seq != expected => {
                failure = Some((expected, format!("record {expected} is missing")));
            }
            Ok(_) => {
                failure = Some((seq, "it does not continue the chain".to_string()));
            }
            Err(error) => failure = Some((seq, error.to_string())),
        }
    })?;
    if failure.is_none() && (expected - 1, head) != (stored_head.seq, stored_head.hash) {
        // A damaged store can answer for its last record yet not read back the ones before it.
        failure = Some((
            expected,
            format!(
                "the store's last record is seq {}, but reading it back ends at seq {}",
                stored_head.seq,
                expected - 1
            ),
        ));
    }
    match failure {
        Some((seq, reason)) => Err(ServerError::Damaged { seq, reason }),
        None => Ok(views),
    }
}

/// The provider events that bring the providers view in line with the configuration. The
/// configuration governs the providers it lists and those it registered earlier; providers the
/// operator API registered stay when they are not in the file, and a listed provider that the API
/// removed stays removed (the API registers it again).
fn provider_changes(config: &Config, views: &Views) -> Vec<Event> {
    let mut changes = Vec::new();
    for provider in &config.providers {
        let current = views.providers.get(&provider.npi);
        if let Some(known) =
            current.filter(|known| !known.registered && known.changed_by == ChangeSource::Api)
        {
            warn!(
                npi = %known.npi,
                "provider listed in the configuration stays removed: the operator API removed it"
            );
            continue;
        }
        if current.is_none_or(|known| !known.registered || known.name != provider.name) {
            changes.push(Event::global(EventData::ProviderRegistered(
                ProviderChanged {
                    npi: provider.npi.clone(),
                    name: provider.name.clone(),
                    by: ChangeSource::Config,
                },
            )));
        }
    }
    for known in views.providers.registered() {
        if known.changed_by == ChangeSource::Config
            && !config
                .providers
                .iter()
                .any(|provider| provider.npi == known.npi)
        {
            changes.push(Event::global(EventData::ProviderRemoved(ProviderChanged {
                npi: known.npi.clone(),
                name: known.name.clone(),
                by: ChangeSource::Config,
            })));
        }
    }
    changes
}

fn write_address(data_dir: &Path, name: &str, addr: SocketAddr) -> Result<(), ServerError> {
    let path = data_dir.join(name);
    std::fs::write(&path, format!("{addr}\n"))
        .map_err(io_error(format!("write {}", path.display())))
}

fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let path = shared.config.websocket.path.clone();
    let on_path = warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            let matches = full.as_str() == path;
            async move {
                if matches {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one();
    // The upgrade is finished here rather than by warp's `Ws`, so that the WebSocket's buffers can
    // be sized: tungstenite's default 128 KiB read buffer is zeroed on every read. `ext::optional`
    // comes before `ws()`, which takes the upgrade handle out of the request.
    on_path
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(warp::ws())
        .and(warp::header::<String>("sec-websocket-key"))
        .and(warp::addr::remote())
        .and(warp::any().map(move || shared.clone()))
        .then(|on_upgrade, _checked: Ws, key: String, peer, shared| {
            upgrade(on_upgrade, key, peer, shared)
        })
}

fn unavailable(retry_after_seconds: u64) -> warp::reply::Response {
    let mut response = warp::reply::with_status(
        "no handshake slot available",
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .into_response();
    if let Ok(value) = retry_after_seconds.to_string().parse() {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// An upgrade request: a slot now, or a place in the queue, or 503. The 101 is only sent (by
/// returning the upgrade reply) once the session holds a slot and `connection.accepted` is durable.
async fn upgrade(
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    key: String,
    peer: Option<SocketAddr>,
    shared: Arc<Shared>,
) -> warp::reply::Response {
    let Some(on_upgrade) = on_upgrade else {
        return warp::reply::with_status("not an upgradable connection", StatusCode::BAD_REQUEST)
            .into_response();
    };
    let session = shared.ids.session_id();
    let peer = peer.map_or_else(|| "unknown".to_string(), |addr| addr.to_string());
    let websocket = &shared.config.websocket;
    let retry_after = websocket.queue_timeout_ms.div_ceil(1000).max(1);
    let append = |data| {
        shared
            .journal
            .append(Event::in_session(session.clone(), data))
    };
    if shared.is_draining() {
        let _ = append(EventData::ConnectionRejected(ConnectionRejected {
            peer,
            reason: RejectReason::Shutdown,
            waited_ms: 0,
        }))
        .await;
        return unavailable(retry_after);
    }
    let permit = match shared.gate.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let position = shared.waiting.fetch_add(1, Ordering::SeqCst) + 1;
            if position > websocket.max_queued {
                shared.waiting.fetch_sub(1, Ordering::SeqCst);
                let _ = append(EventData::ConnectionRejected(ConnectionRejected {
                    peer,
                    reason: RejectReason::QueueFull,
                    waited_ms: 0,
                }))
                .await;
                return unavailable(retry_after);
            }
            // Held until this request's last queue event is committed: shutdown waits for it.
            let _queued = shared.queued.token();
            let queued_at = match append(EventData::ConnectionQueued(ConnectionQueued {
                peer: peer.clone(),
                position,
            }))
            .await
            {
                Ok(committed) => committed.at,
                Err(_) => {
                    shared.waiting.fetch_sub(1, Ordering::SeqCst);
                    return unavailable(retry_after);
                }
            };
            let mut draining = shared.draining.clone();
            let wait = async {
                tokio::select! {
                    acquired = tokio::time::timeout(Duration::from_millis(websocket.queue_timeout_ms), shared.gate.clone().acquire_owned()) => Some(acquired),
                    _ = draining.wait_for(|drain| *drain) => None,
                }
            };
            let outcome = wait.await;
            shared.waiting.fetch_sub(1, Ordering::SeqCst);
            // Waiting time by the injected clock, like every other time in the log.
            let waited_ms =
                u64::try_from(shared.clock.now().millis() - queued_at.millis()).unwrap_or(0);
            match outcome {
                Some(Ok(Ok(permit))) => {
                    if append(EventData::ConnectionPromoted(ConnectionPromoted {
                        waited_ms,
                    }))
                    .await
                    .is_err()
                    {
                        return unavailable(retry_after);
                    }
                    permit
                }
                Some(Ok(Err(_))) | None => {
                    let _ = append(EventData::ConnectionRejected(ConnectionRejected {
                        peer,
                        reason: RejectReason::Shutdown,
                        waited_ms,
                    }))
                    .await;
                    return unavailable(retry_after);
                }
                Some(Err(_elapsed)) => {
                    let _ = append(EventData::ConnectionQueueTimeout(ConnectionQueueTimeout {
                        waited_ms,
                    }))
                    .await;
                    return unavailable(retry_after);
                }
            }
        }
    };
    let live_sessions = u32::try_from(
        websocket.max_concurrent_handshakes as usize - shared.gate.available_permits(),
    )
    .unwrap_or(u32::MAX);
    if append(EventData::ConnectionAccepted(ConnectionAccepted {
        peer: peer.clone(),
        live_sessions,
    }))
    .await
    .is_err()
    {
        return unavailable(retry_after);
    }
    let span = info_span!("session", session = %session, peer = %peer);
    shared
        .sessions
        .spawn(run_session(session, shared.clone(), permit, on_upgrade).instrument(span));
    let switching = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS);
    let switching = warp::reply::with_header(switching, "connection", "upgrade");
    let switching = warp::reply::with_header(switching, "upgrade", "websocket");
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    warp::reply::with_header(switching, "sec-websocket-accept", accept).into_response()
}

/// How long a stopping server lets operator requests in flight finish.
const ADMIN_GRACE: Duration = Duration::from_secs(5);

/// How long a closing session waits for the client's side of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The WebSocket settings of a session: a small read buffer (a handshake is a few short frames).
/// Frames up to twice `max_payload_bytes` are read whole, so that one over the limit is refused
/// with 1009 after it has been consumed (a clean close); larger ones end the connection at the
/// protocol level.
fn socket_config(max_payload_bytes: usize) -> WebSocketConfig {
    let hard_limit = max_payload_bytes.saturating_mul(2).saturating_add(1024);
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

/// One session: reads frames and timers, steps the handshake, commits its events, then carries out
/// its effects. The slot (`permit`) is held until the session ends.
async fn run_session(
    session: String,
    shared: Arc<Shared>,
    permit: tokio::sync::OwnedSemaphorePermit,
    on_upgrade: hyper::upgrade::OnUpgrade,
) {
    let mut phase = Phase::AwaitingAuth;
    let Ok(upgraded) = on_upgrade.await else {
        // The upgrade never completed: the client went away after its 101.
        let transition = step(&shared, &phase, Input::Disconnected { code: 1006 });
        let _ = commit(&shared, &session, transition.events).await;
        drop(permit);
        return;
    };
    let websocket = &shared.config.websocket;
    let io = hyper_util::rt::TokioIo::new(upgraded);
    let socket = WebSocketStream::from_raw_socket(
        io,
        Role::Server,
        Some(socket_config(websocket.max_payload_bytes)),
    )
    .await;
    let (mut sink, mut stream) = socket.split();
    let mut deadline =
        tokio::time::Instant::now() + Duration::from_millis(websocket.auth_timeout_ms);
    let mut stopping = shared.stopping.clone();
    let mut closing = false;
    while phase != Phase::Ended {
        let input = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => Input::ShuttingDown,
            () = tokio::time::sleep_until(deadline) => match phase {
                Phase::Challenged(_) => Input::ChallengeTimerFired,
                _ => Input::AuthTimerFired,
            },
            frame = stream.next() => match frame {
                None => Input::Disconnected { code: 1006 },
                Some(Err(tungstenite::Error::Capacity(_))) => Input::Oversized,
                Some(Err(_)) => Input::Disconnected { code: 1006 },
                Some(Ok(Message::Text(text))) if text.len() > websocket.max_payload_bytes => Input::Oversized,
                Some(Ok(Message::Binary(bytes))) if bytes.len() > websocket.max_payload_bytes => Input::Oversized,
                Some(Ok(Message::Text(text))) => Input::Text(text.as_str().to_string()),
                Some(Ok(Message::Binary(_))) => Input::Binary,
                Some(Ok(Message::Close(frame))) => Input::Disconnected { code: frame.map_or(1005, |frame| u16::from(frame.code)) },
                Some(Ok(_)) => continue,
            },
        };
        // A frame's step reads the relationships and providers: no operator change may land
        // between that reading and the commit of what it decided.
        let steady = if matches!(input, Input::Text(_)) {
            Some(shared.changes.read().await)
        } else {
            None
        };
        let mut transition = step(&shared, &phase, input);
        if commit(&shared, &session, std::mem::take(&mut transition.events))
            .await
            .is_err()
        {
            transition = step(&shared, &phase, Input::CommitFailed);
        }
        drop(steady);
        // Frames are queued and written together (an error frame and its close in one write, not
        // two packets the second of which would wait on the first one's acknowledgement).
        let mut frames = Vec::new();
        for effect in transition.effects {
            match effect {
                Effect::Send(message) => frames.push(Message::text(message.to_text())),
                Effect::Close(code) => {
                    let close = CloseFrame {
                        code: CloseCode::from(code),
                        reason: "".into(),
                    };
                    frames.push(Message::Close(Some(close)));
                    closing = true;
                }
                Effect::StartChallengeTimer => {
                    deadline = tokio::time::Instant::now()
                        + Duration::from_millis(websocket.challenge_timeout_ms);
                }
            }
        }
        if !frames.is_empty() {
            let mut queued = futures_util::stream::iter(frames.into_iter().map(Ok));
            let _ = sink.send_all(&mut queued).await;
        }
        phase = transition.next;
    }
    // The slot is free as soon as the session has ended.
    drop(permit);
    if closing {
        // Read what the client still sends (its close reply) so that the socket ends with FIN,
        // not with a reset that could destroy the close frame before the client reads it.
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
}

fn step(shared: &Shared, phase: &Phase, input: Input) -> handshake::Transition {
    let needs_fresh_values = matches!(input, Input::Text(_));
    let (nonce, new_relationship_id) = if needs_fresh_values {
        (shared.ids.nonce(), shared.ids.relationship_id())
    } else {
        ([0; 32], String::new())
    };
    let views = shared.read_views();
    let context = Context {
        now: shared.clock.now(),
        nonce,
        new_relationship_id,
        organization_npi: &shared.config.organization.npi,
        public_url: &shared.config.server.public_url,
        providers: &views.providers,
        relationships: &views.relationships,
    };
    handshake::step(phase, input, &context)
}

async fn commit(
    shared: &Shared,
    session: &str,
    events: Vec<EventData>,
) -> Result<(), neuron_events::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let events = events
        .into_iter()
        .map(|data| Event::in_session(session, data))
        .collect();
    match shared.journal.append_all(events).await {
        Ok(_) => Ok(()),
        Err(error) => {
            warn!(%error, "could not commit the session's events");
            Err(error)
        }
    }
}
