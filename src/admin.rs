//! The operator listener (SPEC §5): health, readiness, Prometheus metrics, the live views, provider
//! management, relationship termination and the audit log, as JSON over HTTP on its own address.
//!
//! Routing is a table, [`ROUTES`]: one warp filter hands every request to [`handle`], which finds
//! its route there, authenticates `/v1/*` calls and dispatches. The table is what `openapi.json`
//! is checked against. Every change is an event, committed before it is answered; changes are
//! made one at a time so that a check and its event cannot interleave with another change.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_util::{Stream, StreamExt};
use hyper::body::{Buf, Bytes};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::task::TaskTracker;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Reply;
use warp::Filter;

use neuron_events::event::{ChangeSource, EventData, ProviderChanged, RelationshipTerminated};
use neuron_events::{Event, Record, SledReader};
use neuron_projections::relationships::{PageQuery, Relationship, Status, Summary};
use neuron_projections::sessions::SessionStage;
use neuron_projections::Views;

use crate::metrics::{Gauges, Metrics};
use crate::server::live::{until_set, Live};
use neuron_handshake::npi;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The most relationships one page returns.
pub const MAX_PAGE: usize = 1000;
/// A page's size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The longest termination reason or provider name accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`
    Health,
    /// `GET /ready`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /v1/sessions`
    Sessions,
    /// `GET /v1/queue`
    Queue,
    /// `GET /v1/relationships`
    Relationships,
    /// `GET /v1/relationships/{id}`
    Relationship,
    /// `POST /v1/relationships/{id}/terminate`
    Terminate,
    /// `GET /v1/providers`
    Providers,
    /// `POST /v1/providers`
    AddProvider,
    /// `DELETE /v1/providers/{npi}`
    RemoveProvider,
    /// `GET /v1/audit/head`
    AuditHead,
    /// `POST /v1/audit/checkpoint`
    AuditCheckpoint,
    /// `GET /v1/audit/export`
    AuditExport,
}

impl Endpoint {
    /// Whether its request carries a JSON body (the others' bodies are ignored).
    pub fn takes_body(self) -> bool {
        matches!(self, Endpoint::Terminate | Endpoint::AddProvider)
    }
}

/// One route of the operator API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path, with `{name}` for a path parameter (OpenAPI's notation).
    pub path: &'static str,
    /// What it does.
    pub endpoint: Endpoint,
}

const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every route the operator listener answers. Routes under `/v1/` require a bearer token when
/// tokens are configured.
pub const ROUTES: &[Route] = &[
    route("GET", "/health", Endpoint::Health),
    route("GET", "/ready", Endpoint::Ready),
    route("GET", "/metrics", Endpoint::Metrics),
    route("GET", "/openapi.json", Endpoint::OpenApi),
    route("GET", "/v1/sessions", Endpoint::Sessions),
    route("GET", "/v1/queue", Endpoint::Queue),
    route("GET", "/v1/relationships", Endpoint::Relationships),
    route("GET", "/v1/relationships/{id}", Endpoint::Relationship),
    route(
        "POST",
        "/v1/relationships/{id}/terminate",
        Endpoint::Terminate,
    ),
    route("GET", "/v1/providers", Endpoint::Providers),
    route("POST", "/v1/providers", Endpoint::AddProvider),
    route("DELETE", "/v1/providers/{npi}", Endpoint::RemoveProvider),
    route("GET", "/v1/audit/head", Endpoint::AuditHead),
    route("POST", "/v1/audit/checkpoint", Endpoint::AuditCheckpoint),
    route("GET", "/v1/audit/export", Endpoint::AuditExport),
];

/// The OpenAPI 3.1 description of [`ROUTES`].
pub const OPENAPI: &str = include_str!("admin/openapi.json");

/// How a request path matched the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A route, with its path parameter if it has one.
    Route(&'static Route, Option<String>),
    /// The path exists, not with this method; the methods it has.
    WrongMethod(Vec<&'static str>),
    /// No route has this path.
    NotFound,
}

/// Finds the route for `method` and `path`.
pub fn resolve(method: &str, path: &str) -> Resolved {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(parameter) = match_path(route.path, path) {
            if route.method == method {
                return Resolved::Route(route, parameter);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Resolved::NotFound
    } else {
        Resolved::WrongMethod(allowed)
    }
}

/// `Some(parameter)` when `path` fits `template`; the parameter is the segment in `{…}`, if any.
fn match_path(template: &str, path: &str) -> Option<Option<String>> {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    let mut parameter = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(parameter),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return None;
                }
                parameter = Some(g.to_string());
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Where the export stream reads records: the live server's sled log (through a read-only
/// handle), or a memory log in tests.
pub trait RecordSource: Send + Sync + 'static {
    /// Calls `visit` with each record with `from <= seq <= to`, in seq order, until it returns
    /// `false`.
    ///
    /// # Errors
    /// The store's error.
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), neuron_events::Error>;
}

impl RecordSource for SledReader {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), neuron_events::Error> {
        SledReader::scan_while(self, from, to, visit)
    }
}

impl RecordSource for neuron_events::MemoryLog {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), neuron_events::Error> {
        use neuron_events::Log;
        for record in self.read(from, to) {
            let (seq, bytes) = record?;
            if !visit(seq, &bytes) {
                break;
            }
        }
        Ok(())
    }
}

/// What the operator listener works with: the server's live state, a read-only handle on the log
/// for exports and relationship details, and its own limits.
pub(crate) struct AdminState {
    pub live: Arc<Live>,
    pub reader: Arc<dyn RecordSource>,
    /// blake3 hashes of the accepted bearer tokens; empty means `/v1/*` is open (loopback only).
    pub tokens: Vec<blake3::Hash>,
    pub openapi: Bytes,
    /// The listener's own address: a request's `Host` must name it, `localhost`, or an entry of
    /// `admin.allowed_hosts` (DNS rebinding).
    pub listen: SocketAddr,
    /// Export streams at once.
    pub exports: Arc<Semaphore>,
}

impl AdminState {
    /// The operator listener's state over `live`, listening on `listen`.
    pub fn new(
        live: Arc<Live>,
        reader: Arc<dyn RecordSource>,
        tokens: Vec<blake3::Hash>,
        listen: SocketAddr,
    ) -> Self {
        let exports = Arc::new(Semaphore::new(live.config.admin.max_exports as usize));
        Self {
            live,
            reader,
            openapi: openapi_document(!tokens.is_empty()),
            tokens,
            listen,
            exports,
        }
    }

    fn views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.live.views()
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.live.metrics()
    }
}

/// The OpenAPI document as this listener serves it: this build's version filled in, and, when no
/// token is configured (loopback only), without the bearer requirement and the 401 answers the
/// listener then never gives, so that it says exactly what the listener accepts.
pub(crate) fn openapi_document(tokens_required: bool) -> Bytes {
    let Ok(mut document) = serde_json::from_str::<Value>(OPENAPI) else {
        // The document is checked by the tests; should it ever not parse, serve it as it is.
        return Bytes::from_static(OPENAPI.as_bytes());
    };
    document["info"]["version"] = Value::from(env!("CARGO_PKG_VERSION"));
    if !tokens_required {
        if let Some(paths) = document["paths"].as_object_mut() {
            for operation in paths.values_mut().filter_map(Value::as_object_mut) {
                for (_, operation) in operation.iter_mut() {
                    if let Some(operation) = operation.as_object_mut() {
                        operation.remove("security");
                        if let Some(responses) = operation
                            .get_mut("responses")
                            .and_then(Value::as_object_mut)
                        {
                            responses.remove("401");
                        }
                    }
                }
            }
        }
    }
    Bytes::from(document.to_string())
}

/// Serves the operator listener until `stop` (SPEC §5, §7): at most `admin.max_connections`
/// connections (more are answered 503 and closed), each with `server.header_timeout_ms` to send a
/// request's header (also the longest idle keep-alive), the write timeout on every write, and a
/// graceful close at the stop, cut off when the stop's grace is over.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &state.live.config;
    let header_timeout = std::time::Duration::from_millis(config.server.header_timeout_ms);
    let write_timeout = std::time::Duration::from_millis(config.websocket.write_timeout_ms);
    let connections = Arc::new(Semaphore::new(config.admin.max_connections as usize));
    let tasks = TaskTracker::new();
    let filter = routes(state.clone());
    let mut last_logged: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = until_set(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                if last_logged.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1)) {
                    tracing::warn!(%error, "the operator listener cannot accept a connection");
                    last_logged = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(place) = connections.clone().try_acquire_owned() else {
            let _ = stream.try_write(BUSY);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(warp::service(filter.clone()));
        let mut stop = stop.clone();
        let mut cut = state.live.stopping.cut.clone();
        tasks.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(crate::server::timed::TimedWrites::new(
                stream,
                write_timeout,
            ));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = until_set(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = until_set(&mut cut) => {}
                    }
                }
                () = until_set(&mut cut) => {}
            }
            drop(place);
        });
    }
    drop(listener);
    tasks.close();
    let mut cut = state.live.stopping.cut.clone();
    tokio::select! {
        _ = tasks.wait() => {}
        () = until_set(&mut cut) => {}
    }
}

/// The answer to a connection past `admin.max_connections`.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 94\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{\"error\":{\"code\":\"busy\",\"message\":\"too many connections to the operator listener; try again\"}}";

/// The warp filter of the operator listener.
pub(crate) fn routes(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(
            warp::query::raw()
                .or(warp::any().map(String::new))
                .unify(),
        )
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(warp::any().map(move || state.clone()))
        .then(
            |method: Method, path: warp::path::FullPath, query: String, headers, body, state| async move {
                let request = Request {
                    method,
                    path: path.as_str().to_string(),
                    query,
                    headers,
                };
                handle(request, body, state).await
            },
        )
        .recover(|_| async {
            // Only reached if warp itself refuses a request before `handle` sees it.
            Ok::<_, Infallible>(
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request could not be read",
                )
                .into_response(),
            )
        })
        .unify()
}

struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
}

/// An error answer: `{"error":{"code":…,"message":…,"field":…}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The request field, query parameter or path parameter at fault.
    field: Option<String>,
    /// A header the answer carries (`allow`, `www-authenticate`, `retry-after`, `connection`).
    header: Option<(&'static str, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            header: None,
        }
    }

    fn field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).field(field)
    }

    fn log_unreadable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "log_unreadable", reason)
    }

    fn log_unavailable(failure: &neuron_events::Error) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_unavailable",
            format!("the event log could not be written: {failure}"),
        )
    }

    fn into_response(self) -> warp::reply::Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::from(field);
        }
        let mut response = json_reply(self.status, &json!({ "error": body }));
        if let Some((name, value)) = self.header {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

type Answer = Result<warp::reply::Response, ApiError>;

fn json_reply(status: StatusCode, body: &impl Serialize) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

async fn handle<S, B>(request: Request, body: S, state: Arc<AdminState>) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    match answer(request, body, &state).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn answer<S, B>(request: Request, body: S, state: &AdminState) -> Answer
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    refuse_browsers(state, &request)?;
    let (route, parameter) = match resolve(request.method.as_str(), &request.path) {
        Resolved::Route(route, parameter) => (route, parameter.unwrap_or_default()),
        Resolved::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {}", request.path),
            ))
        }
        Resolved::WrongMethod(allowed) => {
            let mut refusal = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} takes {}", request.path, allowed.join(", ")),
            );
            refusal.header = Some(("allow", allowed.join(", ")));
            return Err(refusal);
        }
    };
    let caller = if route.path.starts_with("/v1/") {
        authenticate(&state.tokens, &request.headers)?
    } else {
        Caller::Open
    };
    let query = parse_query(&request.query)?;
    let allowed: &[&str] = match route.endpoint {
        Endpoint::Relationships => &[
            "patient_agent_id",
            "provider_npi",
            "status",
            "after",
            "limit",
        ],
        Endpoint::AuditExport => &["from_seq", "to_seq"],
        _ => &[],
    };
    if let Some((name, _)) = query
        .iter()
        .find(|(name, _)| !allowed.contains(&name.as_str()))
    {
        return Err(ApiError::bad_request(
            name,
            format!("unknown query parameter {name:?}"),
        ));
    }
    // Only the changes that take a body read one; any other route's body goes unread (hyper
    // discards what has arrived and closes the connection rather than wait for the rest).
    let body = if route.endpoint.takes_body() {
        let limit = std::time::Duration::from_millis(state.live.config.server.header_timeout_ms);
        let body = read_body(body, limit).await?;
        if !body.is_empty() {
            require_json(&request.headers)?;
        }
        body
    } else {
        Vec::new()
    };
    let call = Call {
        state,
        body: &body,
        caller: &caller,
    };
    match route.endpoint {
        Endpoint::Health => Ok(health(state)),
        Endpoint::Ready => ready(state),
        Endpoint::Metrics => Ok(metrics(state)),
        Endpoint::OpenApi => {
            let mut response = warp::reply::Response::new(state.openapi.clone().into());
            set_content_type(&mut response, "application/json");
            Ok(response)
        }
        Endpoint::Sessions => Ok(sessions(state)),
        Endpoint::Queue => Ok(queue(state)),
        Endpoint::Relationships => relationships(state, &query).await,
        Endpoint::Relationship => relationship(state, &parameter).await,
        Endpoint::Terminate => terminate(&call, &parameter).await,
        Endpoint::Providers => Ok(providers(state)),
        Endpoint::AddProvider => add_provider(&call).await,
        Endpoint::RemoveProvider => remove_provider(&call, &parameter).await,
        Endpoint::AuditHead => Ok(audit_head(state)),
        Endpoint::AuditCheckpoint => checkpoint(state).await,
        Endpoint::AuditExport => export(state, &query),
    }
}

/// One authenticated request, ready for its endpoint.
struct Call<'a> {
    state: &'a AdminState,
    body: &'a [u8],
    caller: &'a Caller,
}

impl Call<'_> {
    /// The body as a JSON object with no fields but `allowed`.
    fn object(&self, allowed: &[&str]) -> Result<serde_json::Map<String, Value>, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("body", "a JSON object is required"));
        }
        let object = match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return Err(ApiError::bad_request(
                    "body",
                    "the body must be a JSON object",
                ))
            }
            Err(error) => {
                return Err(ApiError::bad_request(
                    "body",
                    format!("the body is not JSON: {error}"),
                ))
            }
        };
        match object.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(ApiError::bad_request(key, format!("unknown field {key:?}"))),
            None => Ok(object),
        }
    }
}

/// Who made a change, as recorded in its event.
#[derive(Debug)]
enum Caller {
    /// No tokens are configured (loopback only).
    Open,
    /// A configured token; the first 16 hex digits of its hash name it.
    Token(String),
}

impl Caller {
    fn recorded_as(&self) -> String {
        match self {
            Self::Open => "api".into(),
            Self::Token(id) => format!("api:{id}"),
        }
    }
}

fn authenticate(tokens: &[blake3::Hash], headers: &HeaderMap) -> Result<Caller, ApiError> {
    if tokens.is_empty() {
        return Ok(Caller::Open);
    }
    let unauthorized = |message: &str| {
        let mut refusal = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        refusal.header = Some((
            "www-authenticate",
            "Bearer realm=\"neuron-admin\"".to_string(),
        ));
        refusal
    };
    let Some(value) = headers.get("authorization") else {
        return Err(unauthorized("an Authorization: Bearer token is required"));
    };
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
    else {
        return Err(unauthorized(
            "the Authorization header is not a Bearer token",
        ));
    };
    let presented = blake3::hash(token.as_bytes());
    // blake3::Hash compares in constant time; every configured hash is compared.
    let accepted = tokens
        .iter()
        .fold(false, |found, hash| found | (*hash == presented));
    if accepted {
        let id = presented.to_hex();
        Ok(Caller::Token(id.as_str()[..16].to_string()))
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the bearer token is not accepted",
        ))
    }
}

/// Refuses what only a browser would send (SPEC §5): a `Host` that does not name this listener (a
/// DNS rebinding page) is 421, an `Origin` not listed in `admin.allowed_origins` (a page of another
/// site) is 403.
fn refuse_browsers(state: &AdminState, request: &Request) -> Result<(), ApiError> {
    let admin = &state.live.config.admin;
    let host = request
        .headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let port = state.listen.port();
    let named = host.eq_ignore_ascii_case(&state.listen.to_string())
        || host.eq_ignore_ascii_case(&format!("localhost:{port}"))
        || admin
            .allowed_hosts
            .iter()
            .any(|allowed| host.eq_ignore_ascii_case(allowed));
    if !named {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            format!(
                "the Host header does not name this listener ({}, localhost:{port}, or admin.allowed_hosts)",
                state.listen
            ),
        ));
    }
    if let Some(origin) = request.headers.get("origin") {
        let origin = origin.to_str().unwrap_or_default();
        if !admin
            .allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_refused",
                "requests from browser pages are refused unless their origin is in admin.allowed_origins",
            ));
        }
    }
    Ok(())
}

/// A change's body must be declared JSON: a browser's form or `text/plain` post (which needs no
/// preflight) is refused with 415.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if declared.is_some_and(|media| media.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "a change's body must be sent as Content-Type: application/json",
    ))
}

fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).map_err(|error| {
        ApiError::bad_request("query", format!("the query string is not valid: {error}"))
    })
}

/// The request's body, which must arrive whole within `limit` (a client that stops half-way is
/// answered 408 and its connection closed) and be at most [`MAX_BODY_BYTES`].
async fn read_body<S, B>(body: S, limit: std::time::Duration) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let Ok(read) = tokio::time::timeout(limit, read_body_whole(body)).await else {
        let mut refusal = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {} ms", limit.as_millis()),
        )
        .field("body");
        refusal.header = Some(("connection", "close".to_string()));
        return Err(refusal);
    };
    read
}

async fn read_body_whole<S, B>(body: S) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|_| ApiError::bad_request("body", "the body could not be read"))?;
        if bytes.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .field("body"));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let taken = part.len();
            chunk.advance(taken);
        }
    }
    Ok(bytes)
}

fn set_content_type(response: &mut warp::reply::Response, value: &'static str) {
    response
        .headers_mut()
        .insert("content-type", warp::http::HeaderValue::from_static(value));
}

fn health(state: &AdminState) -> warp::reply::Response {
    let status = state.live.journal.status();
    let checkpoint = state.metrics().last_checkpoint().map(|c| c.seq);
    json_reply(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "log_seq": status.head.seq,
            "checkpoint_seq": checkpoint,
            "log_writable": status.failed.is_none(),
        }),
    )
}

fn ready(state: &AdminState) -> Answer {
    let status = state.live.journal.status();
    if let Some(failure) = status.failed {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("the event log cannot be written: {failure}"),
        ));
    }
    if state.live.stopping.is_draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the server is stopping",
        ));
    }
    Ok(json_reply(
        StatusCode::OK,
        &json!({ "ready": true, "log_seq": status.head.seq }),
    ))
}

fn metrics(state: &AdminState) -> warp::reply::Response {
    let status = state.live.journal.status();
    let gauges = {
        let views = state.views();
        Gauges {
            live_sessions: views
                .sessions
                .live()
                .filter(|session| session.stage != SessionStage::Queued)
                .count(),
            queue_length: views.queue.len(),
            log_seq: status.head.seq,
            relationships: views.relationships.counts(),
            providers: views.providers.registered().count(),
            log_writable: status.failed.is_none(),
        }
    };
    let text = state.metrics().render(&gauges);
    let mut response = warp::reply::Response::new(text.into());
    set_content_type(&mut response, "text/plain; version=0.0.4; charset=utf-8");
    response
}

fn sessions(state: &AdminState) -> warp::reply::Response {
    let sessions = state.live.active_sessions();
    json_reply(StatusCode::OK, &json!({ "sessions": sessions }))
}

fn queue(state: &AdminState) -> warp::reply::Response {
    let views = state.views();
    json_reply(
        StatusCode::OK,
        &json!({ "length": views.queue.len(), "waiting": &views.queue }),
    )
}

/// A text filter of the query: empty counts as absent (no filter).
fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query_raw(query, name).filter(|value| !value.is_empty())
}

/// A typed parameter of the query, as given: an empty value is a value, and refused as one.
fn query_raw<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

async fn relationships(state: &AdminState, query: &[(String, String)]) -> Answer {
    let status = match query_raw(query, "status") {
        None => None,
        Some("active") => Some(Status::Active),
        Some("terminated") => Some(Status::Terminated),
        Some(other) => {
            return Err(ApiError::bad_request(
                "status",
                format!("status {other:?} is neither \"active\" nor \"terminated\""),
            ))
        }
    };
    let limit = match query_raw(query, "limit") {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            _ => {
                return Err(ApiError::bad_request(
                    "limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE}, not {text:?}"),
                ))
            }
        },
    };
    let page_query = PageQuery {
        patient_agent_id: query_value(query, "patient_agent_id"),
        provider_npi: query_value(query, "provider_npi"),
        status,
        after: query_value(query, "after"),
        limit,
    };
    // The candidates are gathered under the views' lock, put in order without it (commits wait
    // for that lock), and the page taken under it again.
    let mut candidates = state.views().relationships.page_candidates(&page_query);
    candidates.order();
    let (summaries, next_after) = {
        let views = state.views();
        let page = views.relationships.page_of(&page_query, candidates);
        let summaries: Vec<Summary<'static>> =
            page.items.into_iter().map(Summary::into_owned).collect();
        (summaries, page.next_after)
    };
    let relationships = complete(state, summaries).await?;
    Ok(json_reply(
        StatusCode::OK,
        &RelationshipPage {
            relationships,
            next_after,
        },
    ))
}

/// A page of `GET /v1/relationships`.
#[derive(Serialize)]
struct RelationshipPage {
    relationships: Vec<Relationship>,
    next_after: Option<String>,
}

/// The server keeps relationships compactly ([`Views::serving`]): their details are read from the
/// records that established and ended them, off the async threads.
async fn complete(
    state: &AdminState,
    summaries: Vec<Summary<'static>>,
) -> Result<Vec<Relationship>, ApiError> {
    if summaries.is_empty() {
        return Ok(Vec::new());
    }
    let reader = Arc::clone(&state.reader);
    let read = tokio::task::spawn_blocking(move || {
        summaries
            .iter()
            .map(|summary| assemble(reader.as_ref(), summary))
            .collect::<Result<Vec<_>, _>>()
    });
    match read.await {
        Ok(relationships) => relationships,
        Err(_) => Err(ApiError::log_unreadable(
            "reading relationship records stopped unexpectedly",
        )),
    }
}

fn assemble(reader: &dyn RecordSource, summary: &Summary<'_>) -> Result<Relationship, ApiError> {
    let mut failure = None;
    let relationship = Relationship::assemble(summary, &mut |seq| {
        let mut found = None;
        let read = reader.scan_while(seq, seq, &mut |_, bytes| {
            match Record::decode(bytes) {
                Ok(record) => found = Some(Cow::Owned(record)),
                Err(error) => failure = Some(error.to_string()),
            }
            false
        });
        if let Err(error) = read {
            failure = Some(error.to_string());
        }
        found
    });
    relationship.ok_or_else(|| {
        ApiError::log_unreadable(format!(
            "the records of relationship {} (seq {}{}) could not be read: {}",
            summary.id,
            summary.established_seq,
            summary
                .termination_seq
                .map(|seq| format!(" and {seq}"))
                .unwrap_or_default(),
            failure.unwrap_or_else(|| "missing or about another relationship".into())
        ))
    })
}

fn relationship_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no relationship {id}"),
    )
    .field("id")
}

async fn relationship(state: &AdminState, id: &str) -> Answer {
    let summary = state
        .views()
        .relationships
        .get(id)
        .map(Summary::into_owned)
        .ok_or_else(|| relationship_not_found(id))?;
    let mut relationships = complete(state, vec![summary]).await?;
    match relationships.pop() {
        Some(relationship) => Ok(json_reply(StatusCode::OK, &relationship)),
        None => Err(relationship_not_found(id)),
    }
}

/// A required, non-empty string field of at most [`MAX_TEXT_CHARS`] characters.
fn text_field(object: &serde_json::Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => {
            Err(ApiError::bad_request(field, format!("{field} is required")))
        }
        Some(Value::String(text)) if text.trim().is_empty() => Err(ApiError::bad_request(
            field,
            format!("{field} must not be empty"),
        )),
        Some(Value::String(text)) if text.chars().count() > MAX_TEXT_CHARS => {
            Err(ApiError::bad_request(
                field,
                format!("{field} is longer than {MAX_TEXT_CHARS} characters"),
            ))
        }
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(ApiError::bad_request(
            field,
            format!("{field} must be a string"),
        )),
    }
}

async fn terminate(call: &Call<'_>, id: &str) -> Answer {
    let object = call.object(&["provider_npi", "reason"])?;
    let provider_npi = text_field(&object, "provider_npi")?;
    let reason = text_field(&object, "reason")?;
    let state = call.state;
    let one_change_at_a_time = state.live.changes.write().await;
    {
        let views = state.views();
        let relationship = views
            .relationships
            .get(id)
            .ok_or_else(|| relationship_not_found(id))?;
        if relationship.provider_npi != provider_npi {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "provider_mismatch",
                format!(
                    "relationship {id} is with provider {}, not {provider_npi}",
                    relationship.provider_npi
                ),
            )
            .field("provider_npi"));
        }
        if relationship.status == Status::Terminated {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_terminated",
                format!("relationship {id} is already terminated"),
            )
            .field("id"));
        }
    }
    commit(
        state,
        EventData::RelationshipTerminated(RelationshipTerminated {
            relationship_id: id.to_string(),
            provider_npi,
            reason,
            by: call.caller.recorded_as(),
        }),
    )
    .await?;
    // The observer applied the record before the append returned. Handshakes may go on while the
    // answer's details are read from the log.
    drop(one_change_at_a_time);
    relationship(state, id).await
}

/// Appends an operator's change and waits until it is durable (and in the views).
async fn commit(state: &AdminState, data: EventData) -> Result<(), ApiError> {
    state
        .live
        .journal
        .append(Event::global(data))
        .await
        .map(|_| ())
        .map_err(|failure| ApiError::log_unavailable(&failure))
}

fn providers(state: &AdminState) -> warp::reply::Response {
    let views = state.views();
    let providers: Vec<_> = views.providers.all().collect();
    json_reply(StatusCode::OK, &json!({ "providers": providers }))
}

fn provider_not_found(npi: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no registered provider {npi}"),
    )
    .field("npi")
}

fn provider_reply(state: &AdminState, status: StatusCode, npi: &str) -> Answer {
    match state.views().providers.get(npi) {
        Some(provider) => Ok(json_reply(status, provider)),
        None => Err(provider_not_found(npi)),
    }
}

async fn add_provider(call: &Call<'_>) -> Answer {
    let object = call.object(&["npi", "name"])?;
    let npi = text_field(&object, "npi")?;
    let name = text_field(&object, "name")?;
    if !npi::is_valid(&npi) {
        return Err(ApiError::bad_request(
            "npi",
            format!("{npi:?} is not an NPI: ten digits with a valid check digit"),
        ));
    }
    let state = call.state;
    let _one_change_at_a_time = state.live.changes.write().await;
    if state.views().providers.is_registered(&npi) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "provider_exists",
            format!("provider {npi} is already registered"),
        )
        .field("npi"));
    }
    commit(
        state,
        EventData::ProviderRegistered(ProviderChanged {
            npi: npi.clone(),
            name,
            by: ChangeSource::Api,
        }),
    )
    .await?;
    provider_reply(state, StatusCode::CREATED, &npi)
}

async fn remove_provider(call: &Call<'_>, npi: &str) -> Answer {
    let state = call.state;
    let _one_change_at_a_time = state.live.changes.write().await;
    let name = match state.views().providers.get(npi) {
        Some(provider) if provider.registered => provider.name.clone(),
        _ => return Err(provider_not_found(npi)),
    };
    commit(
        state,
        EventData::ProviderRemoved(ProviderChanged {
            npi: npi.to_string(),
            name,
            by: ChangeSource::Api,
        }),
    )
    .await?;
    provider_reply(state, StatusCode::OK, npi)
}

fn audit_head(state: &AdminState) -> warp::reply::Response {
    let status = state.live.journal.status();
    let checkpoint = state.metrics().last_checkpoint().cloned();
    json_reply(
        StatusCode::OK,
        &json!({
            "seq": status.head.seq,
            "head": status.head.hash.to_hex(),
            "checkpoint": checkpoint,
        }),
    )
}

async fn checkpoint(state: &AdminState) -> Answer {
    let committed = state
        .live
        .journal
        .checkpoint()
        .await
        .map_err(|failure| ApiError::log_unavailable(&failure))?;
    let seen = state.metrics().last_checkpoint().cloned();
    match seen {
        Some(seen) if seen.seq == committed.seq => Ok(json_reply(StatusCode::CREATED, &seen)),
        // The observer sees every record before its append returns: not reached.
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("checkpoint {} was written but not observed", committed.seq),
        )),
    }
}

fn seq_parameter(query: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    match query_raw(query, name) {
        None => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(seq) if seq >= 1 => Ok(Some(seq)),
            _ => Err(ApiError::bad_request(
                name,
                format!("{name} must be a seq (a whole number from 1), not {text:?}"),
            )),
        },
    }
}

/// Bytes of records gathered before they are handed to the connection.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

fn export(state: &AdminState, query: &[(String, String)]) -> Answer {
    let from = seq_parameter(query, "from_seq")?.unwrap_or(1);
    // A to_seq below from_seq is an empty range, not an error: nothing is sent.
    let to = seq_parameter(query, "to_seq")?;
    // Streams are bounded: each holds a thread reading the log until it ends or its client is
    // cut off by the write timeout.
    let Ok(stream_place) = state.exports.clone().try_acquire_owned() else {
        let mut refusal = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "exports_busy",
            format!(
                "{} export streams are running already; try again shortly",
                state.live.config.admin.max_exports
            ),
        );
        refusal.header = Some(("retry-after", "1".to_string()));
        return Err(refusal);
    };
    // Only what is durable now: at most the head when the request arrived.
    let head = state.live.journal.status().head.seq;
    let to = to.map_or(head, |to| to.min(head));
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let reader = state.reader.clone();
    tokio::task::spawn_blocking(move || {
        let _stream_place = stream_place;
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK_BYTES);
        let mut open = true;
        let scanned = reader.scan_while(from, to, &mut |_, bytes| {
            chunk.extend_from_slice(bytes);
            chunk.push(b'\n');
            if chunk.len() >= EXPORT_CHUNK_BYTES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK_BYTES));
                open = sender.blocking_send(Ok(Bytes::from(full))).is_ok();
            }
            open
        });
        match scanned {
            Ok(()) if open && !chunk.is_empty() => {
                let _ = sender.blocking_send(Ok(Bytes::from(chunk)));
            }
            Ok(()) => {}
            Err(failure) => {
                // Ends the response abruptly: the client sees an incomplete body, not a short log
                // that looks whole.
                let _ = sender.blocking_send(Err(std::io::Error::other(failure.to_string())));
            }
        }
    });
    let mut response = warp::reply::stream(Chunks(receiver)).into_response();
    set_content_type(&mut response, "application/x-ndjson");
    for (name, value) in [("x-neuron-from-seq", from), ("x-neuron-to-seq", to)] {
        if let Ok(value) = value.to_string().parse() {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// The export's chunks as a stream for the response body.
struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(context)
    }
}

/// Answers one request without a socket, as the listener would: its status and body. For the
/// fuzz target that holds every answer to what `openapi.json` documents.
pub(crate) async fn answer_offline(
    state: &AdminState,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let request = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
    };
    let chunks = vec![Ok::<_, warp::Error>(Bytes::from(body))];
    let response = match answer(request, futures_util::stream::iter(chunks), state).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    };
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

/// A fresh bearer token and the hash to configure for it.
///
/// # Errors
/// When the operating system's random source fails.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    let token = format!("neuron_{}", neuron_events::Digest(bytes).to_hex());
    let hash = blake3::hash(token.as_bytes()).to_hex().to_string();
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_asks_for_tokens_only_when_the_listener_does() {
        let document = |tokens| -> Value {
            serde_json::from_slice(&openapi_document(tokens)).unwrap_or_default()
        };
        let (with, without) = (document(true), document(false));
        let export = |document: &Value| document["paths"]["/v1/audit/export"]["get"].clone();
        assert_eq!(export(&with)["security"][0]["bearer"], json!([]));
        assert!(export(&with)["responses"]["401"].is_object());
        assert!(export(&without).get("security").is_none());
        assert!(export(&without)["responses"].get("401").is_none());
        assert!(export(&without)["responses"]["421"].is_object());
        assert_eq!(without["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn paths_resolve_to_their_routes_and_parameters() {
        let Resolved::Route(route, parameter) = resolve("POST", "/v1/relationships/abc/terminate")
        else {
            panic!("terminate did not resolve");
        };
        assert_eq!(route.endpoint, Endpoint::Terminate);
        assert_eq!(parameter.as_deref(), Some("abc"));
        assert!(matches!(
            resolve("GET", "/v1/relationships"),
            Resolved::Route(route, None) if route.endpoint == Endpoint::Relationships
        ));
        assert_eq!(
            resolve("PUT", "/v1/providers"),
            Resolved::WrongMethod(vec!["GET", "POST"])
        );
        assert_eq!(resolve("GET", "/v1/relationships/"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/v1/relationships/a/b"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/v1"), Resolved::NotFound);
    }

    #[test]
    fn a_token_is_accepted_by_its_hash_only() {
        let (token, hash) = new_token().unwrap_or_default();
        assert!(token.starts_with("neuron_"));
        let tokens = vec![blake3::Hash::from_hex(&hash).unwrap_or(blake3::hash(b"x"))];
        let mut headers = HeaderMap::new();
        assert_eq!(
            authenticate(&tokens, &headers).err().map(|r| r.status),
            Some(StatusCode::UNAUTHORIZED)
        );
        headers.insert(
            "authorization",
            format!("Bearer {token}x")
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        assert_eq!(
            authenticate(&tokens, &headers).err().map(|r| r.status),
            Some(StatusCode::FORBIDDEN)
        );
        headers.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        assert!(
            matches!(authenticate(&tokens, &headers), Ok(Caller::Token(id)) if hash.starts_with(&id))
        );
        assert!(matches!(
            authenticate(&[], &HeaderMap::new()),
            Ok(Caller::Open)
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
mod failing_log {
    use super::*;
    use neuron_events::store::StoredRecord;
    use neuron_events::testing::{fixed_clock, neuron_key};
    use neuron_events::{BatchReport, JournalOptions, Log, LogHead, MemoryLog, Record};

    /// A disk that refuses every write.
    struct FullDisk(MemoryLog);

    impl Log for FullDisk {
        fn append(&mut self, _: &[StoredRecord]) -> Result<(), neuron_events::Error> {
            Err(neuron_events::Error::Corrupt {
                reason: "disk full".into(),
            })
        }
        fn read(
            &self,
            from: u64,
            to: u64,
        ) -> Box<dyn Iterator<Item = Result<StoredRecord, neuron_events::Error>> + '_> {
            self.0.read(from, to)
        }
        fn head(&self) -> Result<LogHead, neuron_events::Error> {
            self.0.head()
        }
    }

    /// A request as an operator's tool sends it: to the listener's address, a change as JSON.
    fn request(method: Method, path: &str) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(
            "host",
            warp::http::HeaderValue::from_static("127.0.0.1:3001"),
        );
        if method == Method::POST {
            headers.insert(
                "content-type",
                warp::http::HeaderValue::from_static("application/json"),
            );
        }
        Request {
            method,
            path: path.into(),
            query: String::new(),
            headers,
        }
    }

    async fn call(
        state: &AdminState,
        method: Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![Ok::<_, warp::Error>(Bytes::from(body.to_string()))]
        };
        let response = match answer(
            request(method, path),
            futures_util::stream::iter(chunks),
            state,
        )
        .await
        {
            Ok(response) => response,
            Err(refusal) => refusal.into_response(),
        };
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn state_over(views: Views, reader: MemoryLog) -> AdminState {
        let journal = neuron_events::Journal::start(
            Box::new(FullDisk(MemoryLog::new())),
            Arc::new(neuron_key()),
            Arc::new(fixed_clock()),
            JournalOptions::default(),
            Box::new(|_: &[Record], _: &BatchReport| {}),
        )
        .unwrap();
        let (_signal, never) = watch::channel(false);
        let live = Live {
            config: crate::config::Config::default(),
            journal,
            views: Arc::new(std::sync::RwLock::new(views)),
            metrics: Arc::default(),
            changes: tokio::sync::RwLock::new(()),
            ids: Arc::new(crate::ids::SeededIds::new(1)),
            clock: Arc::new(fixed_clock()),
            stopping: crate::server::live::Stopping {
                draining: never.clone(),
                stopping: never.clone(),
                cut: never,
            },
        };
        AdminState::new(
            Arc::new(live),
            Arc::new(reader),
            Vec::new(),
            "127.0.0.1:3001".parse().unwrap(),
        )
    }

    #[tokio::test]
    async fn relationship_details_are_read_from_the_log_and_an_unreadable_record_is_503() {
        use neuron_events::event::RelationshipEstablished;
        let id = "6f1c3a52-8d4e-4b7a-9c2f-0e5d6a7b8c9d";
        let event = Event::in_session(
            "s1",
            EventData::RelationshipEstablished(RelationshipEstablished {
                relationship_id: id.into(),
                patient_agent_id: "patient-agent-ada".into(),
                provider_npi: "1234567893".into(),
                patient_public_key: neuron_events::b64::encode([7u8; 32]),
                patient_endpoint: "wss://ada.example/agent".into(),
                consented_actions: vec!["read:observations".into()],
            }),
        );
        let at = neuron_events::Timestamp::saturating_from_millis(1_795_687_200_000);
        let bytes =
            neuron_events::record::encode(1, at, &event, &neuron_events::Digest::GENESIS).unwrap();
        let mut views = Views::serving();
        views.apply(&Record::decode(&bytes).unwrap());
        let mut log = MemoryLog::new();
        log.append(&[(1, bytes)]).unwrap();

        let state = state_over(views.clone(), log);
        let (status, body) =
            call(&state, Method::GET, &format!("/v1/relationships/{id}"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["patient_endpoint"], "wss://ada.example/agent");
        assert_eq!(body["consented_actions"][0], "read:observations");
        assert_eq!(body["established_by_session"], "s1");
        let (status, body) = call(&state, Method::GET, "/v1/relationships", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["relationships"][0]["id"], id);

        // The views name a record the log does not give back.
        let state = state_over(views, MemoryLog::new());
        for path in [
            format!("/v1/relationships/{id}"),
            "/v1/relationships".into(),
        ] {
            let (status, body) = call(&state, Method::GET, &path, "").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(body["error"]["code"], "log_unreadable", "{path}");
        }
    }

    #[tokio::test]
    async fn export_streams_beyond_the_limit_are_refused_until_one_ends() {
        let state = state_over(Views::default(), MemoryLog::new());
        let held: Vec<_> = (0..state.live.config.admin.max_exports)
            .map(|_| state.exports.clone().try_acquire_owned().unwrap())
            .collect();
        let (status, body) = call(&state, Method::GET, "/v1/audit/export", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "exports_busy");
        drop(held);
        let (status, _) = call(&state, Method::GET, "/v1/audit/export", "").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_written_makes_the_server_unready_and_changes_fail() {
        let state = state_over(Views::default(), MemoryLog::new());
        let (status, _) = call(&state, Method::GET, "/ready", "").await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/providers",
            r#"{"npi":"1003000126","name":"Dr. Who"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "log_unavailable");
        assert!(state.views().providers.get("1003000126").is_none());

        let (status, body) = call(&state, Method::GET, "/ready", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "not_ready");
        let (status, body) = call(&state, Method::GET, "/health", "").await;
        assert_eq!(status, StatusCode::OK, "the process is alive");
        assert_eq!(body["log_writable"], false);
        let (status, body) = call(&state, Method::POST, "/v1/audit/checkpoint", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "log_unavailable");
    }
}
