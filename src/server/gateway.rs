//! The public listener (SPEC §2.3, §2.5, §7): admission at the connection level, then hyper and
//! warp. The handshake port serves one thing, the upgrade, so a connection is an attempt: it takes
//! a place among `max_connections`, then a slot among `max_concurrent_handshakes`; without a free
//! slot, it must send its whole request (at most 2 KiB, kept as bytes) before it takes a place in
//! the FIFO queue of `max_queued`, so that idle and trickling sockets hold no place a patient
//! needs. The header timeout counts from accept, queued or not. A connection with a slot is
//! served by hyper's HTTP/1 connection with the routes of [`routes`] (one request, no
//! keep-alive), its queued request read again first; an upgrade answered 101 becomes a session.
//! Whatever a client does, every resource it takes is a guard released when it is done with, and
//! every session ends with one terminal record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tracing::{info_span, Instrument};
use warp::filters::BoxedFilter;
use warp::reply::Response;

use neuron_events::event::*;
use neuron_events::Event;

use crate::config::Config;

use super::accept::accept_until;
use super::head_reads::{gone, read_head, read_waiting, take_head, Reading, Unserved};
use super::http::{self, Answer};
use super::live::{Live, StopPhase};
use super::refusals::Refusals;
use super::rewind::Rewind;
use super::routes::{self, Attempt};
use super::session::{self, socket_config};
use super::timed::TimedWrites;

/// What the configuration sets for admission, read once when the gateway is built.
struct Limits {
    /// `server.header_timeout_ms`, counted from accept.
    header_timeout: Duration,
    /// `websocket.queue_timeout_ms`.
    queue_timeout: Duration,
    /// `websocket.write_timeout_ms`, on every write.
    write_timeout: Duration,
    /// `websocket.max_concurrent_handshakes`.
    max_slots: usize,
    /// `websocket.max_queued`.
    max_queued: usize,
    /// `websocket.max_payload_bytes`.
    max_payload_bytes: usize,
}

/// The admission state of the public listener.
pub(crate) struct Gateway {
    live: Arc<Live>,
    limits: Limits,
    /// What every session is served with.
    terms: Arc<session::Terms>,
    /// Live handshake sessions (and connections reading their request once admitted).
    slots: Arc<Semaphore>,
    /// Places in the queue.
    queue: Arc<Semaphore>,
    /// Open connections, queued ones included.
    connections: Arc<Semaphore>,
    max_connections: u32,
    refusals: Arc<Refusals>,
    /// What a connection with a slot is served.
    routes: BoxedFilter<(Response,)>,
    /// Every connection's task: a stop waits for them.
    tasks: TaskTracker,
    /// Connections in the queue, until their last queue record is committed: a stop answers
    /// them before it closes live sessions.
    waiting: TaskTracker,
}

/// `work` in `span`, holding the connection's place until it ends: a connection's task. A
/// combinator, not an `async move` block: such a block keeps the future it awaits twice (as its
/// capture and as the awaited value), which doubled every connection's task (2 KiB a queued
/// connection instead of 1, by `-Zprint-type-sizes`).
fn holding(
    connection: OwnedSemaphorePermit,
    span: tracing::Span,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    work.map(move |()| drop(connection)).instrument(span)
}

/// How a connection waiting in the queue stopped waiting.
enum Waited {
    Promoted(OwnedSemaphorePermit),
    TimedOut,
    Drained,
    Left,
}

impl Gateway {
    /// Admission as `config` sets it, with at most `max_connections` open connections.
    pub(crate) fn new(
        live: Arc<Live>,
        config: &Config,
        max_connections: u32,
        refusals: Arc<Refusals>,
    ) -> Self {
        let websocket = &config.websocket;
        let limits = Limits {
            header_timeout: Duration::from_millis(config.server.header_timeout_ms),
            queue_timeout: Duration::from_millis(websocket.queue_timeout_ms),
            write_timeout: Duration::from_millis(websocket.write_timeout_ms),
            max_slots: websocket.max_concurrent_handshakes as usize,
            max_queued: websocket.max_queued as usize,
            max_payload_bytes: websocket.max_payload_bytes,
        };
        Self {
            limits,
            terms: Arc::new(session::Terms::of(config)),
            slots: Arc::new(Semaphore::new(websocket.max_concurrent_handshakes as usize)),
            queue: Arc::new(Semaphore::new(websocket.max_queued as usize)),
            connections: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            refusals,
            routes: routes::routes(websocket.path.clone()),
            tasks: TaskTracker::new(),
            waiting: TaskTracker::new(),
            live,
        }
    }

    /// The connections waiting in the queue, for a stop to answer first.
    pub(crate) fn waiting(&self) -> &TaskTracker {
        &self.waiting
    }

    /// Every connection's task, for a stop to wait on.
    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Open connections now.
    pub(crate) fn open_connections(&self) -> usize {
        (self.max_connections as usize).saturating_sub(self.connections.available_permits())
    }

    /// Accepts connections until the stop begins draining ([`accept_until`]).
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        let stop = self.live.stop.clone();
        accept_until(
            &listener,
            stop,
            StopPhase::Draining,
            "handshake",
            |stream, peer| {
                self.admit(stream, peer);
            },
        )
        .await;
    }

    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let Ok(connection) = self.connections.clone().try_acquire_owned() else {
            self.refuse(stream, peer, RefuseReason::ConnectionLimit);
            return;
        };
        // Neither a slot nor a queue place could be had: turned away before anything is read.
        if self.slots.available_permits() == 0 && self.queue.available_permits() == 0 {
            drop(connection);
            self.refuse(stream, peer, RefuseReason::QueueFull);
            return;
        }
        let _ = stream.set_nodelay(true);
        // The header timeout counts from here, whatever the connection then waits for.
        let deadline = self.header_deadline();
        let span = info_span!("connection", %peer);
        let gateway = self.clone();
        // Each task is sized for what its connection does: a slot's for the exchange, the
        // others' for reading a request and finding a place.
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let stream = self.timed(stream);
            let exchange = gateway.exchange(stream, peer, slot, None, Box::default(), deadline);
            self.spawn_holding(connection, span, exchange);
            return;
        }
        // No free slot: the request decides. Most clients have sent it by now; it is taken here,
        // so that such a connection never needs a task for reading.
        let mut buffer = Vec::new();
        let limit = http::MAX_WAITING_REQUEST_BYTES;
        match take_head(&stream, &mut buffer, limit, Reading::Kernel) {
            Some(Ok(())) => {
                let stream = self.timed(stream);
                self.place(stream, peer, buffer.into(), connection, span);
            }
            Some(Err(unserved)) => {
                let answer = async move {
                    let mut stream = gateway.timed(stream);
                    gateway.unserved(&mut stream, unserved).await;
                };
                self.spawn_holding(connection, span, answer);
            }
            None => {
                let attempt = gateway.attempt(stream, peer, deadline, connection, buffer);
                self.tasks.spawn(attempt.instrument(span));
            }
        }
    }

    /// A connection that found no free slot and whose request had not all arrived: the rest of
    /// it (at most [`http::MAX_WAITING_REQUEST_BYTES`] in all, before `deadline`), then a place.
    async fn attempt(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        deadline: tokio::time::Instant,
        connection: OwnedSemaphorePermit,
        buffer: Vec<u8>,
    ) {
        let mut stream = self.timed(stream);
        let limit = http::MAX_WAITING_REQUEST_BYTES;
        match read_head(&mut stream, deadline, limit, buffer, self.live.stop.clone()).await {
            Ok(head) => self.place(stream, peer, head, connection, tracing::Span::current()),
            Err(unserved) => self.unserved(&mut stream, unserved).await,
        }
    }

    /// A connection with its whole request in hand: a slot freed meanwhile, or a place in the
    /// queue, or turned away (503, counted). Each way is a task of its own, sized for it alone.
    fn place(
        self: &Arc<Self>,
        mut stream: TimedWrites<TcpStream>,
        peer: SocketAddr,
        request: Box<[u8]>,
        connection: OwnedSemaphorePermit,
        span: tracing::Span,
    ) {
        let gateway = self.clone();
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let deadline = self.header_deadline();
            let served = gateway.exchange(stream, peer, slot, None, request, deadline);
            self.spawn_holding(connection, span, served);
        } else if let Ok(place) = self.queue.clone().try_acquire_owned() {
            let position = self
                .limits
                .max_queued
                .saturating_sub(self.queue.available_permits());
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            let waits = gateway.wait_in_queue(stream.into_inner(), peer, position, place, request);
            self.spawn_holding(connection, span, waits);
        } else {
            self.refusals
                .count(RefuseReason::QueueFull, peer.ip(), self.live.clock.now());
            let refused = async move {
                gateway.answer(&mut stream, gateway.unavailable()).await;
            };
            self.spawn_holding(connection, span, refused);
        }
    }

    /// Runs `work` as a task of its own, in `span`, holding the connection's place until it ends.
    fn spawn_holding(
        &self,
        connection: OwnedSemaphorePermit,
        span: tracing::Span,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.tasks.spawn(holding(connection, span, work));
    }

    /// Answers (or just closes) a connection whose request will not be served.
    async fn unserved(&self, stream: &mut TimedWrites<TcpStream>, unserved: Unserved) {
        match unserved {
            Unserved::Answered(answer) => self.answer(stream, answer).await,
            Unserved::Stopping => self.answer(stream, self.unavailable()).await,
            Unserved::TimedOut | Unserved::Left => {}
        }
    }

    /// Turns a connection away at once: counted for the summary, answered 503 if the socket takes
    /// it without waiting, closed. No task, no session, no record of its own.
    fn refuse(&self, stream: TcpStream, peer: SocketAddr, reason: RefuseReason) {
        self.refusals
            .count(reason, peer.ip(), self.live.clock.now());
        // Take what the client already sent, so that closing does not reset the connection before
        // it reads the answer.
        let mut sink = [0u8; 2048];
        for _ in 0..4 {
            match stream.try_read(&mut sink) {
                Ok(read) if read > 0 => {}
                _ => break,
            }
        }
        let _ = stream.try_write(&self.unavailable().response());
    }

    fn unavailable(&self) -> Answer {
        // The queue timeout in whole seconds, rounded up: a place may free up by then.
        let millis = u64::try_from(self.limits.queue_timeout.as_millis()).unwrap_or(u64::MAX);
        Answer::Unavailable {
            retry_after: millis.div_ceil(1000).max(1),
        }
    }

    /// `stream` with this listener's write timeout.
    fn timed(&self, stream: TcpStream) -> TimedWrites<TcpStream> {
        TimedWrites::new(stream, self.limits.write_timeout)
    }

    fn header_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.limits.header_timeout
    }

    fn millis_since(&self, at: neuron_events::Timestamp) -> u64 {
        // Waiting time by the injected clock, like every other time in the log.
        u64::try_from(self.live.clock.now().millis() - at.millis()).unwrap_or(0)
    }

    /// Appends a record of `session`. The commit is boxed, and built here rather than in an
    /// `async fn` (whose future would hold the event too): a task that awaits it holds a pointer,
    /// so that waiting tasks (ten thousand queued connections) are not sized for a commit.
    fn record(
        &self,
        session: &str,
        data: EventData,
    ) -> impl std::future::Future<Output = Result<neuron_events::Committed, neuron_events::Error>> + '_
    {
        Box::pin(self.live.journal.append(Event::in_session(session, data)))
    }

    /// A connection that found no slot: it waits in the queue holding its socket, its request's
    /// bytes and nothing else, until it gets a slot, gives up, the server stops, or the client
    /// leaves. An `async` block rather than an `async fn`: its arguments are not copied into the
    /// future a second time, and ten thousand of these wait at once.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn holds its arguments twice in its future: ~200 bytes a queued connection"
    )]
    fn wait_in_queue(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        position: u32,
        place: OwnedSemaphorePermit,
        mut request: Box<[u8]>,
    ) -> impl std::future::Future<Output = ()> {
        async move {
            let waiting = self.waiting.token();
            let session = self.live.ids.session_id();
            // Only its time is kept while waiting.
            let queued_at = match self
                .record(
                    &session,
                    EventData::ConnectionQueued(ConnectionQueued {
                        peer: peer.to_string(),
                        position,
                    }),
                )
                .await
            {
                Ok(committed) => committed.at,
                Err(_) => return,
            };
            let mut draining = self.live.stop.clone();
            let waited = tokio::select! {
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => Waited::Promoted(slot),
                    Err(_) => Waited::Drained,
                },
                () = tokio::time::sleep(self.limits.queue_timeout) => Waited::TimedOut,
                () = draining.reached(StopPhase::Draining) => Waited::Drained,
                () = gone(&stream) => Waited::Left,
            };
            let waited_ms = self.millis_since(queued_at);
            let (ending, answer) = match waited {
                Waited::Promoted(slot) => {
                    drop(place);
                    drop(waiting);
                    let promoted = self
                        .record(
                            &session,
                            EventData::ConnectionPromoted(ConnectionPromoted { waited_ms }),
                        )
                        .await;
                    if promoted.is_ok() {
                        // What the client sent after its request while it waited (its first
                        // frame, if it did not wait for the 101) is in the kernel, and the wait
                        // cleared the runtime's note that the socket is readable: taken now and
                        // put behind the request, for hyper and then the WebSocket to read.
                        request = self.with_what_arrived(&stream, request);
                        let deadline = self.header_deadline();
                        // Boxed: a waiting connection's task then holds only what waiting needs,
                        // not room for the exchange and session that follow a promotion.
                        let exchange = {
                            let stream = self.timed(stream);
                            self.exchange(stream, peer, slot, Some(session), request, deadline)
                        };
                        Box::pin(exchange).await;
                    }
                    return;
                }
                Waited::TimedOut => (
                    EventData::ConnectionQueueTimeout(ConnectionQueueTimeout { waited_ms }),
                    true,
                ),
                Waited::Drained => (
                    EventData::ConnectionRejected(ConnectionRejected {
                        peer: peer.to_string(),
                        reason: RejectReason::Shutdown,
                        waited_ms,
                    }),
                    true,
                ),
                Waited::Left => (
                    EventData::ConnectionClosed(ConnectionClosed {
                        by: ClosedBy::Client,
                        code: None,
                        stage: Stage::Queue,
                        reason: None,
                    }),
                    false,
                ),
            };
            let recorded = self.record(&session, ending).await;
            drop(place);
            drop(waiting);
            if answer && recorded.is_ok() {
                self.answer(&mut self.timed(stream), self.unavailable())
                    .await;
            }
        }
    }

    /// Sends an answer and closes, without waiting past the write timeout or the stop's end.
    async fn answer(&self, stream: &mut TimedWrites<TcpStream>, answer: Answer) {
        self.send(stream, &answer.response()).await;
    }

    /// Sends a whole answer and closes, without waiting past the write timeout or the stop's end.
    async fn send(&self, stream: &mut TimedWrites<TcpStream>, answer: &[u8]) {
        let mut cut = self.live.stop.clone();
        let written = async {
            stream.write_all(answer).await?;
            stream.shutdown().await
        };
        tokio::select! {
            _ = written => {}
            () = cut.reached(StopPhase::Cut) => {}
        }
    }

    /// `request` with what the kernel holds for `stream` now behind it: up to a whole first
    /// frame (the largest message and its frame header).
    fn with_what_arrived(&self, stream: &TcpStream, request: Box<[u8]>) -> Box<[u8]> {
        let mut bytes = Vec::from(request);
        let limit = bytes.len() + self.limits.max_payload_bytes + 14;
        if let Err(error) = read_waiting(stream, &mut bytes, limit) {
            if error.kind() != std::io::ErrorKind::WouldBlock {
                tracing::debug!(%error, "reading what a queued client sent while it waited");
            }
        }
        bytes.into()
    }

    /// A connection with a slot, served by hyper with [`routes`]: `head` (what admission read of
    /// it, possibly nothing) is read again first, and the rest of its header must arrive before
    /// `deadline`. One request, then the connection closes (a second one is never answered),
    /// unless it was an upgrade answered 101: then it becomes a session. `queued` is the
    /// session's id when the connection waited in the queue (it has records already); whatever
    /// it was answered, its session ends with one terminal record.
    async fn exchange(
        self: Arc<Self>,
        stream: TimedWrites<TcpStream>,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        queued: Option<String>,
        head: Box<[u8]>,
        deadline: tokio::time::Instant,
    ) {
        let attempt = Arc::new(Attempt::new(
            self.live.clone(),
            (self.slots.clone(), self.limits.max_slots),
            peer,
            queued,
        ));
        self.serve_http(&attempt, stream, head, deadline).await;
        let Some((session, upgrade)) = attempt.take_accepted().await else {
            drop(slot);
            if let Some(session) = attempt.queued() {
                // A queued connection whose request was answered otherwise than 101.
                let closed = EventData::ConnectionClosed(ConnectionClosed {
                    by: ClosedBy::Server,
                    code: None,
                    stage: Stage::Queue,
                    reason: None,
                });
                let _ = self.record(session, closed).await;
            }
            return;
        };
        let span = info_span!("session", session = %session);
        self.into_session(session, upgrade, slot)
            .instrument(span)
            .await;
    }

    /// Has hyper serve the connection's one request with the routes, until it is answered (or
    /// the server stops): what it read before (`head`) first, the rest of the header before
    /// `deadline`.
    async fn serve_http(
        &self,
        attempt: &Arc<Attempt>,
        stream: TimedWrites<TcpStream>,
        head: Box<[u8]>,
        deadline: tokio::time::Instant,
    ) {
        let service = {
            let attempt = attempt.clone();
            let routes = self.routes.clone();
            hyper::service::service_fn(move |mut request| {
                attempt.hold_upgrade(&mut request);
                request.extensions_mut().insert(attempt.clone());
                tower_service::Service::call(&mut warp::service(routes.clone()), request)
            })
        };
        let header_timeout = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(1));
        let mut builder = hyper::server::conn::http1::Builder::new();
        // One request a connection: every answer but the 101 says `Connection: close` (see
        // `routes`), which ends hyper's keep-alive; turning keep-alive off instead would have
        // hyper say `close` in the 101 too.
        builder
            .max_buf_size(http::MAX_HEADER_BYTES)
            .max_headers(http::MAX_HEADERS)
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let io = TokioIo::new(Rewind::new(head, stream));
        // Boxed: the task holds a pointer while the connection waits, not hyper's whole state.
        let mut connection = Box::pin(builder.serve_connection(io, service).with_upgrades());
        let mut stopping = self.live.stop.clone();
        let mut cut = self.live.stop.clone();
        tokio::select! {
            _ = connection.as_mut() => {}
            () = stopping.reached(StopPhase::Stopping) => {
                // A request not yet read is not read; one being answered is answered.
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = cut.reached(StopPhase::Cut) => {}
                }
            }
        }
        // Whatever hyper still held of the connection goes with it: an upgrade it did not hand
        // over is then refused to its promise.
        drop(connection);
    }

    /// The upgrade answered 101 for `session` becomes its WebSocket, and the session runs on it
    /// in its slot; an upgrade hyper never handed over ends the session before it began.
    async fn into_session(
        self: Arc<Self>,
        session: String,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        slot: OwnedSemaphorePermit,
    ) {
        let mut cut = self.live.stop.clone();
        let upgraded = match upgrade {
            Some(upgrade) => tokio::select! {
                upgraded = upgrade => upgraded.ok(),
                () = cut.reached(StopPhase::Cut) => None,
            },
            None => None,
        };
        let Some(upgraded) = upgraded else {
            // The 101 never reached the client: the session ends before its WebSocket began.
            let closed = EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Client,
                code: None,
                stage: Stage::Auth,
                reason: None,
            });
            let _ = session::commit(&self.live, &session, vec![closed]).await;
            return;
        };
        let config = socket_config(self.limits.max_payload_bytes);
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        session::run(session, socket, slot, self.live.clone(), self.terms.clone()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use neuron_events::{BatchReport, Journal, JournalOptions, MemoryLog, Record, SteppingClock};

    use super::*;

    /// A gateway over an in-memory log, its stop never given.
    fn gateway() -> Arc<Gateway> {
        let log = MemoryLog::new();
        let start = neuron_events::Timestamp::from_millis(0).unwrap();
        let journal = Journal::start(
            Box::new(log.clone()),
            Arc::new(neuron_events::NeuronKey::from_seed([7; 32])),
            Arc::new(SteppingClock::new(start, 1)),
            JournalOptions::default(),
            Box::new(|_: &[Record], _: &BatchReport| {}),
        )
        .unwrap();
        let reader = neuron_events::Log::reader(&log);
        let clock = Arc::new(SteppingClock::new(start, 1));
        let live = Live::offline(journal, reader, Default::default(), clock);
        let config = Config::default();
        Arc::new(Gateway::new(Arc::new(live), &config, 16, Arc::default()))
    }

    #[tokio::test]
    async fn a_queued_connection_s_task_holds_at_most_a_kibibyte_of_future() {
        // SPEC §7: ten thousand queued connections within the memory budget. Each is a task whose
        // future is what it holds while it waits; a wrapper that kept that future twice, and a
        // commit held inline, once made it 2 KiB.
        let gateway = gateway();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let place = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let waits = gateway
            .clone()
            .wait_in_queue(stream, peer, 1, place, Box::default());
        let connection = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let task = holding(connection, tracing::Span::none(), waits);
        let size = std::mem::size_of_val(&task);
        println!("a queued connection's future: {size} bytes");
        assert!(size <= 1024, "a queued connection's future is {size} bytes");
        drop((task, client));
    }
}
