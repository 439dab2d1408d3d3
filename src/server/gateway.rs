//! The public listener (SPEC §2.3, §2.5, §7): admission at the connection level. The handshake
//! port serves one thing, the upgrade, so a connection is an attempt: it takes a place among
//! `max_connections`, then a slot among `max_concurrent_handshakes`; without a free slot, it must
//! send its whole request (at most 2 KiB, parsed and kept) before it takes a place in the FIFO
//! queue of `max_queued`, so that idle and trickling sockets hold no place a patient needs. The
//! header timeout counts from accept, queued or not. Whatever a client does, every resource it
//! takes is a guard released when it is done with, and every session ends with one terminal
//! record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tracing::{info_span, warn, Instrument};

use neuron_events::event::*;
use neuron_events::Event;

use super::http::{self, LogRoute, Refusal, Request, Upgrade};
use super::live::{until_set, Live};
use super::refusals::Refusals;
use super::session::{self, socket_config};
use super::timed::TimedWrites;

/// The admission state of the public listener.
pub(crate) struct Gateway {
    live: Arc<Live>,
    /// Live handshake sessions (and connections reading their request once admitted).
    slots: Arc<Semaphore>,
    /// Places in the queue.
    queue: Arc<Semaphore>,
    /// Open connections, queued ones included.
    connections: Arc<Semaphore>,
    max_connections: u32,
    refusals: Arc<Refusals>,
    /// Every connection's task: a stop waits for them.
    tasks: TaskTracker,
    /// Connections in the queue, until their last queue record is committed: a stop answers
    /// them before it closes live sessions.
    waiting: TaskTracker,
}

/// How a connection waiting in the queue stopped waiting.
enum Waited {
    Promoted(OwnedSemaphorePermit),
    TimedOut,
    Drained,
    Left,
}

/// Why a connection's request was not an upgrade to serve.
enum Unserved {
    /// Refused with this status, then closed.
    Refused(Refusal),
    /// Its header did not arrive in time.
    TimedOut,
    /// The client went away.
    Left,
    /// The server is stopping.
    Stopping,
}

impl Gateway {
    /// Admission for `live`'s configuration, with at most `max_connections` open connections.
    pub(crate) fn new(live: Arc<Live>, max_connections: u32, refusals: Arc<Refusals>) -> Self {
        let websocket = &live.config.websocket;
        Self {
            slots: Arc::new(Semaphore::new(websocket.max_concurrent_handshakes as usize)),
            queue: Arc::new(Semaphore::new(websocket.max_queued as usize)),
            connections: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            refusals,
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

    /// Accepts connections until the stop begins. An accept error (out of file descriptors, most
    /// likely) is logged at most once a second and retried after a short pause, so that it never
    /// spins a core.
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut draining = self.live.stopping.draining.clone();
        let mut last_logged: Option<Instant> = None;
        let mut suppressed = 0u64;
        loop {
            let accepted = tokio::select! {
                () = until_set(&mut draining) => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(error) => {
                    if last_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        warn!(%error, suppressed, "the handshake listener cannot accept a connection");
                        last_logged = Some(Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
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
            let exchange = gateway.exchange(stream, peer, slot, deadline);
            self.spawn_holding(connection, span, exchange);
            return;
        }
        // No free slot: the request decides. Most clients have sent it by now; it is taken and
        // parsed here, so that such a connection never needs a task for reading.
        let mut buffer = Vec::new();
        let path = &self.live.config.websocket.path;
        let limit = http::MAX_WAITING_REQUEST_BYTES;
        match take_request(&stream, &mut buffer, limit, path, Reading::Kernel) {
            Some(Ok(request)) => {
                let stream = TimedWrites::new(stream, self.write_timeout());
                self.place(stream, peer, request, connection, span);
            }
            Some(Err(unserved)) => {
                let answer = async move {
                    let mut stream = TimedWrites::new(stream, gateway.write_timeout());
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
        let mut stream = TimedWrites::new(stream, self.write_timeout());
        let limit = http::MAX_WAITING_REQUEST_BYTES;
        match self
            .read_request(&mut stream, deadline, limit, buffer)
            .await
        {
            Ok(request) => self.place(stream, peer, request, connection, tracing::Span::current()),
            Err(unserved) => self.unserved(&mut stream, unserved).await,
        }
    }

    /// A connection with its whole request in hand: a slot freed meanwhile, or a place in the
    /// queue, or turned away (503, counted). Each way is a task of its own, sized for it alone.
    fn place(
        self: &Arc<Self>,
        mut stream: TimedWrites<TcpStream>,
        peer: SocketAddr,
        request: Request,
        connection: OwnedSemaphorePermit,
        span: tracing::Span,
    ) {
        let gateway = self.clone();
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let served = gateway.serve_request(stream, peer, slot, None, request);
            self.spawn_holding(connection, span, served);
        } else if let Ok(place) = self.queue.clone().try_acquire_owned() {
            let max_queued = self.live.config.websocket.max_queued as usize;
            let position = max_queued.saturating_sub(self.queue.available_permits());
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            let waits = gateway.wait_in_queue(stream, peer, position, place, request);
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
        let holding = async move {
            work.await;
            drop(connection);
        };
        self.tasks.spawn(holding.instrument(span));
    }

    /// Answers (or just closes) a connection whose request will not be served.
    async fn unserved(&self, stream: &mut TimedWrites<TcpStream>, unserved: Unserved) {
        match unserved {
            Unserved::Refused(refusal) => self.answer(stream, refusal).await,
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

    fn unavailable(&self) -> Refusal {
        Refusal::Unavailable {
            retry_after: self
                .live
                .config
                .websocket
                .queue_timeout_ms
                .div_ceil(1000)
                .max(1),
        }
    }

    fn header_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
            + Duration::from_millis(self.live.config.server.header_timeout_ms)
    }

    fn millis_since(&self, at: neuron_events::Timestamp) -> u64 {
        // Waiting time by the injected clock, like every other time in the log.
        u64::try_from(self.live.clock.now().millis() - at.millis()).unwrap_or(0)
    }

    async fn record(
        &self,
        session: &str,
        data: EventData,
    ) -> Result<neuron_events::Committed, neuron_events::Error> {
        // Boxed, so that tasks that wait (queued connections) are not sized for a commit.
        Box::pin(self.live.journal.append(Event::in_session(session, data))).await
    }

    /// A connection that found no slot: it waits in the queue holding its socket, its parsed
    /// request and nothing else, until it gets a slot, gives up, the server stops, or the client
    /// leaves. An `async` block rather than an `async fn`: its arguments are not copied into the
    /// future a second time, and ten thousand of these wait at once.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn holds its arguments twice in its future: ~200 bytes a queued connection"
    )]
    fn wait_in_queue(
        self: Arc<Self>,
        mut stream: TimedWrites<TcpStream>,
        peer: SocketAddr,
        position: u32,
        place: OwnedSemaphorePermit,
        request: Request,
    ) -> impl std::future::Future<Output = ()> {
        async move {
            let waiting = self.waiting.token();
            let session = self.live.ids.session_id();
            let queued = self
                .record(
                    &session,
                    EventData::ConnectionQueued(ConnectionQueued {
                        peer: peer.to_string(),
                        position,
                    }),
                )
                .await;
            let Ok(queued) = queued else {
                return;
            };
            let mut draining = self.live.stopping.draining.clone();
            let queue_timeout = Duration::from_millis(self.live.config.websocket.queue_timeout_ms);
            let waited = tokio::select! {
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => Waited::Promoted(slot),
                    Err(_) => Waited::Drained,
                },
                () = tokio::time::sleep(queue_timeout) => Waited::TimedOut,
                () = until_set(&mut draining) => Waited::Drained,
                () = gone(stream.get_ref()) => Waited::Left,
            };
            let waited_ms = self.millis_since(queued.at);
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
                        // Boxed: a waiting connection's task then holds only what waiting needs,
                        // not room for the whole session that follows a promotion.
                        Box::pin(self.serve_request(stream, peer, slot, Some(session), request))
                            .await;
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
                self.answer(&mut stream, self.unavailable()).await;
            }
        }
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.live.config.websocket.write_timeout_ms)
    }

    /// Sends a refusal and closes, without waiting past the write timeout or the stop's end.
    async fn answer(&self, stream: &mut TimedWrites<TcpStream>, refusal: Refusal) {
        self.send(stream, &refusal.response()).await;
    }

    /// Sends a whole answer and closes, without waiting past the write timeout or the stop's end.
    async fn send(&self, stream: &mut TimedWrites<TcpStream>, answer: &[u8]) {
        let mut cut = self.live.stopping.cut.clone();
        let written = async {
            stream.write_all(answer).await?;
            stream.shutdown().await
        };
        tokio::select! {
            _ = written => {}
            () = until_set(&mut cut) => {}
        }
    }

    /// The answer to a read of the log's public evidence (SPEC §3.5).
    async fn evidence(&self, route: Result<LogRoute, String>) -> Vec<u8> {
        use crate::audit::{self, ProofError};
        let answer = match route {
            Err(reason) => Err(ProofError::BadParameter {
                name: "query",
                reason,
            }),
            Ok(LogRoute::Checkpoint) => audit::served_checkpoint(&self.live),
            Ok(LogRoute::Consistency { from, to }) => {
                audit::consistency(&self.live, from, to).await
            }
        };
        match answer {
            Ok(body) => http::text_response(200, "OK", &body),
            Err(ProofError::BadParameter { reason, .. }) => {
                http::text_response(400, "Bad Request", &reason)
            }
            Err(ProofError::NotFound(reason)) => http::text_response(404, "Not Found", &reason),
            Err(ProofError::Unreadable(_)) => http::text_response(
                503,
                "Service Unavailable",
                "the log could not be read; try again",
            ),
        }
    }

    /// A connection with a slot at once reads its request (until `deadline`) and is served.
    async fn exchange(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
    ) {
        let mut stream = TimedWrites::new(stream, self.write_timeout());
        match self
            .read_request(&mut stream, deadline, http::MAX_HEADER_BYTES, Vec::new())
            .await
        {
            Ok(request) => self.serve_request(stream, peer, slot, None, request).await,
            Err(unserved) => {
                // Never a session: no record.
                drop(slot);
                self.unserved(&mut stream, unserved).await;
            }
        }
    }

    /// A connection with a slot and a whole request: an upgrade of the handshake path becomes a
    /// session, a read of the log's evidence is answered. `session` is its id when it waited in
    /// the queue (it has records already).
    async fn serve_request(
        self: Arc<Self>,
        mut stream: TimedWrites<TcpStream>,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        session: Option<String>,
        request: Request,
    ) {
        let mut upgrade = match request {
            Request::Upgrade(upgrade) => upgrade,
            Request::Log(route) => {
                // Not a session: a queued connection's ends here, the others leave no record.
                if let Some(session) = &session {
                    let closed = EventData::ConnectionClosed(ConnectionClosed {
                        by: ClosedBy::Server,
                        code: None,
                        stage: Stage::Queue,
                        reason: None,
                    });
                    if self.record(session, closed).await.is_err() {
                        return;
                    }
                }
                let answer = self.evidence(route).await;
                drop(slot);
                self.send(&mut stream, &answer).await;
                return;
            }
        };
        if session.is_some() {
            // What the client sent after its request while it waited (its first frame, if it
            // did not wait for the 101) is in the kernel, and the wait cleared the runtime's
            // note that the socket is readable: take it now, for the WebSocket to read first.
            // Up to a whole first frame: the largest message and its frame header.
            let limit = self.live.config.websocket.max_payload_bytes + 14;
            if let Err(error) = read_waiting(stream.get_ref(), &mut upgrade.early, limit) {
                if error.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(%error, "reading what a queued client sent while it waited");
                }
            }
        }
        let session = session.unwrap_or_else(|| self.live.ids.session_id());
        let max = self.live.config.websocket.max_concurrent_handshakes as usize;
        let live_sessions =
            u32::try_from(max.saturating_sub(self.slots.available_permits())).unwrap_or(u32::MAX);
        let accepted = self
            .record(
                &session,
                EventData::ConnectionAccepted(ConnectionAccepted {
                    peer: peer.to_string(),
                    live_sessions,
                }),
            )
            .await;
        if accepted.is_err() {
            return;
        }
        let span = info_span!("session", session = %session);
        async move {
            let mut cut = self.live.stopping.cut.clone();
            let switching = http::switching_protocols(&upgrade.key);
            let switched = tokio::select! {
                switched = stream.write_all(&switching) => switched.is_ok(),
                () = until_set(&mut cut) => false,
            };
            if !switched {
                // The 101 never reached the client: the session ends before its WebSocket began.
                let closed = EventData::ConnectionClosed(ConnectionClosed {
                    by: ClosedBy::Client,
                    code: None,
                    stage: Stage::Auth,
                    reason: None,
                });
                let _ = session::commit(&self.live, &session, vec![closed]).await;
                return;
            }
            let config = socket_config(self.live.config.websocket.max_payload_bytes);
            let Upgrade { early, .. } = upgrade;
            let socket =
                WebSocketStream::from_partially_read(stream, early, Role::Server, Some(config))
                    .await;
            session::run(session, socket, slot, self.live.clone()).await;
        }
        .instrument(span)
        .await;
    }

    /// Reads a request's header until it is complete, the deadline passes, the client leaves or
    /// the server stops, holding at most `limit` bytes of it. What the socket holds is taken
    /// without waiting first: a client that sent its request at once (nearly all) costs no
    /// allocation but its parsed request, so that a flood leaves no holes in memory.
    async fn read_request(
        &self,
        stream: &mut TimedWrites<TcpStream>,
        deadline: tokio::time::Instant,
        limit: usize,
        mut buffer: Vec<u8>,
    ) -> Result<Request, Unserved> {
        let path = &self.live.config.websocket.path;
        if let Some(done) =
            take_request(stream.get_ref(), &mut buffer, limit, path, Reading::Kernel)
        {
            return done;
        }
        Box::pin(async {
            let mut stopping = self.live.stopping.stopping.clone();
            loop {
                tokio::select! {
                    ready = stream.get_ref().readable() => if ready.is_err() {
                        return Err(Unserved::Left);
                    },
                    () = tokio::time::sleep_until(deadline) => return Err(Unserved::TimedOut),
                    () = until_set(&mut stopping) => return Err(Unserved::Stopping),
                }
                let runtime = Reading::Runtime;
                if let Some(done) =
                    take_request(stream.get_ref(), &mut buffer, limit, path, runtime)
                {
                    return done;
                }
            }
        })
        .await
    }
}

/// Takes what `stream` holds now into `buffer` (at most `limit` bytes in all) and parses it: the
/// request or why it is not served, or `None` to wait for more.
fn take_request(
    stream: &TcpStream,
    buffer: &mut Vec<u8>,
    limit: usize,
    path: &str,
    reading: Reading,
) -> Option<Result<Request, Unserved>> {
    let mut chunk = [0u8; 2048];
    loop {
        let room = limit.saturating_sub(buffer.len()).min(chunk.len());
        if room == 0 {
            // Only a limit below the largest header lands here: that one `parse` refuses first.
            return Some(Err(Unserved::Refused(Refusal::TooLargeToWait)));
        }
        let read = match reading {
            Reading::Kernel => recv_now(stream, &mut chunk[..room]),
            Reading::Runtime => stream.try_read(&mut chunk[..room]),
        };
        let read = match read {
            Ok(0) => return Some(Err(Unserved::Left)),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Some(Err(Unserved::Left)),
        };
        // The whole request in one read (the usual case) is parsed where it lies.
        let parsed = if buffer.is_empty() {
            http::parse(&chunk[..read], path)
        } else {
            buffer.extend_from_slice(&chunk[..read]);
            http::parse(buffer, path)
        };
        match parsed {
            Ok(Some(request)) => return Some(Ok(request)),
            Ok(None) if buffer.is_empty() => buffer.extend_from_slice(&chunk[..read]),
            Ok(None) => {}
            Err(refusal) => return Some(Err(Unserved::Refused(refusal))),
        }
    }
}

/// How [`take_request`] reads a socket.
#[derive(Clone, Copy)]
enum Reading {
    /// Straight from the kernel, whatever the runtime believes of the socket's readiness (which
    /// it learns only once its driver has polled the socket): for a first look.
    Kernel,
    /// Through the runtime, which clears its readiness when nothing is there: for reads that wait
    /// for readiness between them.
    Runtime,
}

/// Reads what the kernel holds for `stream` into `chunk` now, without waiting and whatever the
/// runtime believes of its readiness: `Ok(0)` at the peer's end, `WouldBlock` when nothing is
/// there.
fn recv_now(stream: &TcpStream, chunk: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: recv writes at most `chunk.len()` bytes into `chunk`, which it borrows mutably.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            chunk.as_mut_ptr().cast(),
            chunk.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(read).map_err(|_| std::io::Error::last_os_error())
}

/// Takes what the kernel holds for `stream` now into `buffer`, up to `limit` bytes in all: how
/// many it took (`Ok(0)` at the peer's end), `WouldBlock` when nothing is there.
fn read_waiting(stream: &TcpStream, buffer: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    let mut chunk = [0u8; 2048];
    let mut total = 0;
    loop {
        let room = limit.saturating_sub(buffer.len()).min(chunk.len());
        if room == 0 {
            return Ok(total.max(1));
        }
        match recv_now(stream, &mut chunk[..room]) {
            Ok(0) => return Ok(total),
            Ok(read) => {
                buffer.extend_from_slice(&chunk[..read]);
                total += read;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock && total > 0 => {
                return Ok(total)
            }
            Err(error) => return Err(error),
        }
    }
}

/// Resolves when the peer of a socket nobody reads has gone: its end closed or reset. Data it
/// sends meanwhile stays in the kernel; readiness for it is cleared so that only a later event
/// (more data, or the end) wakes this again.
async fn gone(stream: &TcpStream) {
    loop {
        match stream.ready(Interest::READABLE).await {
            Ok(ready) if ready.is_read_closed() => return,
            Ok(_) => {
                let _ = stream.try_io(Interest::READABLE, || {
                    Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                });
            }
            Err(_) => return,
        }
    }
}
