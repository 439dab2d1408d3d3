//! What the handshake port serves, as warp filters run by hyper on a connection admission has
//! given a slot (SPEC §2, §3.5): the WebSocket upgrade of the handshake path, checked by
//! `warp::ws()`, and the log's public evidence (the latest checkpoint, consistency proofs). Every
//! other request gets its status (404, 405, 426, 400) and, like every answer, ends its connection.
//!
//! The upgraded connection itself is taken from hyper, not from warp: warp's `WebSocket` reads
//! into a 128 KiB buffer it gives no way to size, where a session here reads a few short frames
//! into 4 KiB (a thousand live sessions would hold 125 MiB more). So the connection's service
//! takes hyper's promise of the upgraded connection before warp sees the request ([`Attempt`]),
//! `warp::ws()` checks the request and answers its 101, and the gateway runs the session on what
//! hyper hands over, with the session's own WebSocket settings.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::upgrade::OnUpgrade;
use tokio::sync::Semaphore;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use neuron_events::event::{ConnectionAccepted, EventData};
use neuron_events::Event;

use super::live::Live;
use crate::audit::{self, ProofError};

/// One connection's request as the routes see it: what accepting an upgrade needs, and what the
/// gateway takes back once hyper is done with the connection.
pub(crate) struct Attempt {
    live: Arc<Live>,
    /// The handshake slots, to count the live sessions.
    slots: Arc<Semaphore>,
    /// How many there are (`websocket.max_concurrent_handshakes`).
    max_slots: usize,
    peer: SocketAddr,
    /// The session's id when the connection waited in the queue (it has records already).
    queued: Option<String>,
    /// hyper's promise of the connection once its 101 is sent (an HTTP/1.1 request only).
    upgrade: Mutex<Option<OnUpgrade>>,
    /// The session whose `connection.accepted` is committed. Held locked while that record is
    /// being committed, by a task of its own: hyper drops the request's future when its client
    /// leaves, but a record once submitted commits, and its session must then get its end.
    accepted: Arc<tokio::sync::Mutex<Option<String>>>,
}

impl Attempt {
    pub(crate) fn new(
        live: Arc<Live>,
        (slots, max_slots): (Arc<Semaphore>, usize),
        peer: SocketAddr,
        queued: Option<String>,
    ) -> Self {
        Self {
            live,
            slots,
            max_slots,
            peer,
            queued,
            upgrade: Mutex::new(None),
            accepted: Arc::default(),
        }
    }

    /// Takes hyper's promise of the upgraded connection out of `request`, before warp sees it.
    /// An HTTP/1.0 request has none to give: its upgrade is refused.
    pub(crate) fn hold_upgrade<B>(&self, request: &mut warp::http::Request<B>) {
        if request.version() == warp::http::Version::HTTP_11 {
            let upgrade = hyper::upgrade::on(request);
            *self.upgrade.lock().unwrap_or_else(PoisonError::into_inner) = Some(upgrade);
        }
    }

    /// The session whose `connection.accepted` is committed, if any, once no commit of it is
    /// under way; and hyper's promise of its upgraded connection.
    pub(crate) async fn take_accepted(&self) -> Option<(String, Option<OnUpgrade>)> {
        let session = self.accepted.lock().await.take()?;
        let upgrade = self
            .upgrade
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Some((session, upgrade))
    }

    /// The id the queue's records carry, if the connection waited.
    pub(crate) fn queued(&self) -> Option<&str> {
        self.queued.as_deref()
    }

    fn can_upgrade(&self) -> bool {
        self.upgrade
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// Why a request is not served, where warp's own answer is not the one SPEC §2 gives.
#[derive(Debug)]
enum NotServed {
    /// 426: a WebSocket version other than 13.
    Version,
    /// 400: an upgrade over HTTP/1.0.
    NotHttp11,
    /// 400: a parameter of the evidence routes.
    Parameter(String),
}

impl warp::reject::Reject for NotServed {}

/// The handshake port's filter for the configured handshake `path`.
pub(crate) fn routes(path: String) -> BoxedFilter<(Response,)> {
    let attempt = warp::ext::get::<Arc<Attempt>>();
    let handshake = warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            let ours = full.as_str() == path;
            async move {
                if ours {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
        .and(warp::get())
        .and(version_13())
        .and(warp::ws())
        .and(attempt)
        .then(upgrade);
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let checkpoint = warp::path!("log" / "checkpoint")
        .and(warp::get())
        .and(query())
        .and(attempt)
        .and_then(|query: String, attempt: Arc<Attempt>| async move {
            if !query.is_empty() {
                return Err(warp::reject::custom(NotServed::Parameter(
                    "the checkpoint takes no parameter".into(),
                )));
            }
            Ok(evidence(audit::served_checkpoint(&attempt.live)))
        });
    let consistency = warp::path!("log" / "consistency")
        .and(warp::get())
        .and(query())
        .and(attempt)
        .and_then(|query: String, attempt: Arc<Attempt>| async move {
            let (from, to) = consistency_query(&query)
                .map_err(|reason| warp::reject::custom(NotServed::Parameter(reason)))?;
            Ok::<_, Rejection>(evidence(audit::consistency(&attempt.live, from, to).await))
        });
    handshake
        .or(checkpoint)
        .unify()
        .or(consistency)
        .unify()
        .recover(answer_rejection)
        .unify()
        .boxed()
}

/// Refuses a `Sec-WebSocket-Version` other than 13 with 426, as RFC 6455 §4.4 has it (warp's
/// `ws()` would answer 400).
fn version_13() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("sec-websocket-version")
        .and_then(|version: Option<String>| async move {
            match version.as_deref().map(str::trim) {
                Some(version) if version != "13" => Err(warp::reject::custom(NotServed::Version)),
                // Missing: `ws()` refuses it (400).
                _ => Ok(()),
            }
        })
        .untuple_one()
}

/// A checked upgrade: its session's `connection.accepted` is committed, then warp answers 101
/// (the upgraded connection goes to the gateway, see the module's note).
async fn upgrade(ws: warp::ws::Ws, attempt: Arc<Attempt>) -> Response {
    if !attempt.can_upgrade() {
        return answer_of(&NotServed::NotHttp11);
    }
    let live = &attempt.live;
    let session = attempt
        .queued
        .clone()
        .unwrap_or_else(|| live.ids.session_id());
    let live_sessions = u32::try_from(
        attempt
            .max_slots
            .saturating_sub(attempt.slots.available_permits()),
    )
    .unwrap_or(u32::MAX);
    let accepted = EventData::ConnectionAccepted(ConnectionAccepted {
        peer: attempt.peer.to_string(),
        live_sessions,
    });
    // Committed by a task of its own, holding `accepted` until it knows: see [`Attempt`].
    let mut holder = attempt.accepted.clone().lock_owned().await;
    let journal = live.journal.clone();
    let committing = tokio::spawn(async move {
        let committed = journal
            .append(Event::in_session(&session, accepted))
            .await
            .is_ok();
        if committed {
            *holder = Some(session);
        }
        committed
    });
    if !matches!(committing.await, Ok(true)) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event log could not be written; try again",
        );
    }
    // No upgrade state is left in the request for warp to act on: this only answers 101.
    ws.on_upgrade(|_| async {}).into_response()
}

/// The answer to a read of the log's public evidence (SPEC §3.5).
fn evidence(answer: Result<String, ProofError>) -> Response {
    match answer {
        Ok(body) => text(StatusCode::OK, &body),
        Err(ProofError::BadParameter { reason, .. }) => text(StatusCode::BAD_REQUEST, &reason),
        Err(ProofError::NotFound(reason)) => text(StatusCode::NOT_FOUND, &reason),
        Err(ProofError::Unreadable(_)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the log could not be read; try again",
        ),
    }
}

/// The parameters of `GET /log/consistency`: `from` and `to`, tree sizes, nothing else.
fn consistency_query(query: &str) -> Result<(u64, u64), String> {
    let (mut from, mut to) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "from" => &mut from,
            "to" => &mut to,
            _ => return Err("unknown parameter: only from and to are taken".into()),
        };
        if slot.is_some() {
            return Err(format!("{name} is given twice"));
        }
        let size = value
            .parse::<u64>()
            .ok()
            .filter(|size| *size >= 1 && value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{name} must be a tree size (a whole number from 1)"))?;
        *slot = Some(size);
    }
    match (from, to) {
        (Some(from), Some(to)) => Ok((from, to)),
        (None, _) => Err("from is required (a tree size from 1)".into()),
        (_, None) => Err("to is required (a tree size from 1)".into()),
    }
}

/// The answer to a request not served: the statuses of SPEC §2, with a short text saying why.
async fn answer_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(if let Some(not_served) = rejection.find::<NotServed>() {
        answer_of(not_served)
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        response
    } else if rejection.is_not_found() {
        text(StatusCode::NOT_FOUND, "no such path")
    } else {
        // A header `ws()` requires is missing or wrong.
        text(
            StatusCode::BAD_REQUEST,
            "not a WebSocket upgrade: it needs Upgrade: websocket, Connection: Upgrade and a Sec-WebSocket-Key",
        )
    })
}

fn answer_of(not_served: &NotServed) -> Response {
    match not_served {
        NotServed::Version => {
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket version 13 is required",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            response
        }
        NotServed::NotHttp11 => text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs HTTP/1.1",
        ),
        NotServed::Parameter(reason) => text(StatusCode::BAD_REQUEST, reason),
    }
}

/// A plain-text answer that nothing caches, and that ends its connection: a connection to the
/// handshake port is one attempt (hyper reads no second request after `Connection: close`).
fn text(status: StatusCode, body: &str) -> Response {
    let mut response = warp::reply::with_status(body.to_string(), status).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consistency_parameters_are_two_tree_sizes_and_nothing_else() {
        assert_eq!(consistency_query("from=3&to=10"), Ok((3, 10)));
        for (query, reason) in [
            ("from=3", "to is required"),
            ("to=3", "from is required"),
            ("from=0&to=3", "from must be a tree size"),
            ("from=+1&to=3", "from must be a tree size"),
            ("from=1&to=x", "to must be a tree size"),
            ("from=1&from=2&to=3", "from is given twice"),
            ("from=1&to=3&seq=2", "unknown parameter"),
        ] {
            match consistency_query(query) {
                Err(said) => assert!(said.contains(reason), "{query}: {said}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
