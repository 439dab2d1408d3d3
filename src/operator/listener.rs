//! The operator listener: its own accept loop with limits (connections, header and body time,
//! timed writes, stop), and the dispatcher that takes every request from the browser checks and
//! authentication to its endpoint.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::Stream;
use hyper::body::Buf;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::warn;
use warp::http::Method;
use warp::Filter;

use crate::server::accept::accept_until;
use crate::server::live::StopPhase;

use super::changes::{add_provider, checkpoint, remove_provider, terminate};
use super::errors::{set_content_type, Answer, ApiError, Code};
use super::export::export;
use super::guard::{authenticate, refuse_browsers, require_json, Caller};
use super::head::Request;
use super::reads::{
    audit_head, health, metrics, providers, queue, ready, relationship, relationships, sessions,
};
use super::request::{self, read_body, Call, NoParameters};
use super::routes::{resolve, Endpoint, Resolved};
use super::OperatorState;

/// Serves the operator listener until the log is closed, the last step of a stop (SPEC §2.6, §5,
/// §7): at most `admin.max_connections` connections (more are answered 503 and closed), each with
/// `server.header_timeout_ms` to send a request's header (also the longest idle keep-alive) and
/// the write timeout on every write. Until then every request is answered, `/ready` with 503 from
/// the stop's first step; then each connection finishes the request it is answering, within
/// [`CLOSING`], and closes.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: Arc<OperatorState>) {
    let stop = state.live.stop.clone();
    let (header_timeout, write_timeout) = (state.header_timeout, state.write_timeout);
    let connections = Arc::new(Semaphore::new(state.max_connections as usize));
    let tasks = TaskTracker::new();
    let filter = routes(state.clone());
    accept_until(
        &listener,
        stop.clone(),
        StopPhase::Closed,
        "operator",
        |stream, _| {
            let Ok(place) = connections.clone().try_acquire_owned() else {
                let _ = stream.try_write(BUSY);
                return;
            };
            let service =
                hyper_util::service::TowerToHyperService::new(warp::service(filter.clone()));
            let mut closed = stop.clone();
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
                    () = closed.reached(StopPhase::Closed) => {
                        // The request being answered is finished, an idle connection closes.
                        connection.as_mut().graceful_shutdown();
                        if tokio::time::timeout(CLOSING, connection.as_mut()).await.is_err() {
                            warn!("an operator connection still open after the log was closed: cut off");
                        }
                    }
                }
                drop(place);
            });
        },
    )
    .await;
    drop(listener);
    tasks.close();
    // Each connection ends within `CLOSING` of the log's close.
    tasks.wait().await;
}

/// How long the operator's connections may take to finish their request once the log is closed.
const CLOSING: std::time::Duration = std::time::Duration::from_secs(1);

/// The answer to a connection past `admin.max_connections`.
pub(super) const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 94\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{\"error\":{\"code\":\"busy\",\"message\":\"too many connections to the operator listener; try again\"}}";

/// The warp filter of the operator listener.
pub(crate) fn routes(
    state: Arc<OperatorState>,
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
                ApiError::new(Code::InvalidRequest,
                    "the request could not be read",
                )
                .into_response(),
            )
        })
        .unify()
}

pub(super) async fn handle<S, B>(
    request: Request,
    body: S,
    state: Arc<OperatorState>,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    match answer(request, body, &state).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

pub(super) async fn answer<S, B>(request: Request, body: S, state: &OperatorState) -> Answer
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    refuse_browsers(state, &request)?;
    let (route, parameter) = match resolve(request.method.as_str(), &request.path) {
        Resolved::Route(route, parameter) => (route, parameter.unwrap_or_default()),
        Resolved::NotFound => {
            return Err(ApiError::new(
                Code::NotFound,
                format!("no route {}", request.path),
            ))
        }
        Resolved::WrongMethod(allowed) => {
            let mut refusal = ApiError::new(
                Code::MethodNotAllowed,
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
    // Each route's parameters are a type: the routes that take some read them themselves.
    let query = request.query.as_str();
    if !matches!(
        route.endpoint,
        Endpoint::Relationships
            | Endpoint::AuditExport
            | Endpoint::InclusionProof
            | Endpoint::ConsistencyProof
    ) {
        request::query::<NoParameters>(query)?;
    }
    // Only the changes that take a body read one; any other route's body goes unread (hyper
    // discards what has arrived and closes the connection rather than wait for the rest).
    let body = if route.endpoint.takes_body() {
        let body = read_body(body, state.header_timeout).await?;
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
        Endpoint::Relationships => relationships(state, query).await,
        Endpoint::Relationship => relationship(state, &parameter).await,
        Endpoint::Terminate => terminate(&call, &parameter).await,
        Endpoint::Providers => Ok(providers(state)),
        Endpoint::AddProvider => add_provider(&call).await,
        Endpoint::RemoveProvider => remove_provider(&call, &parameter).await,
        Endpoint::AuditHead => Ok(audit_head(state)),
        Endpoint::AuditCheckpoint => checkpoint(state).await,
        Endpoint::AuditExport => export(state, query),
        Endpoint::LatestCheckpoint => super::proofs::latest_checkpoint(state),
        Endpoint::InclusionProof => super::proofs::inclusion(state, &parameter, query).await,
        Endpoint::ConsistencyProof => super::proofs::consistency(state, query).await,
    }
}

/// Answers one request without a socket, as the listener would: its status and body. For the
/// fuzz target that holds every answer to what `openapi.json` documents.
#[cfg(any(test, feature = "test-support"))]
pub(crate) async fn answer_offline(
    state: &OperatorState,
    method: Method,
    path_and_query: &str,
    headers: warp::http::HeaderMap,
    body: Vec<u8>,
) -> (warp::http::StatusCode, Vec<u8>) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let request = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
    };
    let chunks = vec![Ok::<_, warp::Error>(hyper::body::Bytes::from(body))];
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
