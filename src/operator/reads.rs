//! The endpoints that read: health, readiness, metrics, the live sessions and queue, providers,
//! relationships (paged, details read from the log), the audit head.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::http::StatusCode;

use neuron_events::Record;
use neuron_projections::relationships::{PageQuery, Relationship, Standing, Summary};
use neuron_projections::sessions::SessionStage;

use crate::server::live::StopPhase;
use crate::server::metrics::Gauges;

use super::errors::{json_reply, set_content_type, Answer, ApiError, Code};
use super::request::{filter, query};
use neuron_events::store::LogReader;

use super::{OperatorState, DEFAULT_PAGE, MAX_PAGE};

pub(super) fn health(state: &OperatorState) -> warp::reply::Response {
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

pub(super) fn ready(state: &OperatorState) -> Answer {
    let status = state.live.journal.status();
    if let Some(failure) = status.failed {
        return Err(ApiError::new(
            Code::NotReady,
            format!("the event log cannot be written: {failure}"),
        ));
    }
    if state.live.stop.has_reached(StopPhase::Draining) {
        return Err(ApiError::new(Code::NotReady, "the server is stopping"));
    }
    let board = state.live.witness_board();
    if let Some(conflict) = board.conflict() {
        return Err(ApiError::new(Code::NotReady, conflict.to_string()));
    }
    // A witness that has not cosigned for ten rounds is named; the server still serves.
    let lagging: Vec<&str> = board
        .witnesses()
        .iter()
        .filter(|witness| witness.rounds_behind >= LAGGING_ROUNDS)
        .map(|witness| witness.name.as_str())
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &json!({ "ready": true, "log_seq": status.head.seq, "lagging_witnesses": lagging }),
    ))
}

/// Rounds without a cosignature after which `/ready` names a witness (SPEC §3.5).
const LAGGING_ROUNDS: u32 = 10;

pub(super) fn metrics(state: &OperatorState) -> warp::reply::Response {
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
            ..Gauges::default()
        }
    };
    let gauges = {
        let board = state.live.witness_board();
        Gauges {
            witness_failures: board
                .counts()
                .iter()
                .map(|(witness, (_, failures))| (witness.clone(), *failures))
                .collect(),
            witnessed_size: board.witnessed().map_or(0, |(size, _)| *size),
            witness_conflict: board.conflict().is_some(),
            ..gauges
        }
    };
    let text = state.metrics().render(&gauges);
    let mut response = warp::reply::Response::new(text.into());
    set_content_type(&mut response, crate::server::metrics::CONTENT_TYPE);
    response
}

pub(super) fn sessions(state: &OperatorState) -> warp::reply::Response {
    let sessions = state.live.active_sessions();
    json_reply(StatusCode::OK, &json!({ "sessions": sessions }))
}

pub(super) fn queue(state: &OperatorState) -> warp::reply::Response {
    let views = state.views();
    json_reply(
        StatusCode::OK,
        &json!({ "length": views.queue.len(), "waiting": &views.queue }),
    )
}

/// `GET /v1/relationships`' parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RelationshipParameters {
    patient_agent_id: Option<String>,
    provider_npi: Option<String>,
    status: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

pub(super) async fn relationships(state: &OperatorState, raw_query: &str) -> Answer {
    let parameters: RelationshipParameters = query(raw_query)?;
    let status = match parameters.status.as_deref() {
        None => None,
        Some("active") => Some(Standing::Active),
        Some("terminated") => Some(Standing::Terminated),
        Some(other) => {
            return Err(ApiError::bad_request(
                "status",
                format!("status {other:?} is neither \"active\" nor \"terminated\""),
            ))
        }
    };
    let limit = match parameters.limit.as_deref() {
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
        patient_agent_id: filter(parameters.patient_agent_id.as_deref()),
        provider_npi: filter(parameters.provider_npi.as_deref()),
        status,
        after: filter(parameters.after.as_deref()),
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
pub(super) struct RelationshipPage {
    relationships: Vec<Relationship>,
    next_after: Option<String>,
}

/// The server keeps relationships compactly ([`Views::serving`]): their details are read from the
/// records that established and ended them, off the async threads.
pub(super) async fn complete(
    state: &OperatorState,
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

pub(super) fn assemble(
    reader: &dyn LogReader,
    summary: &Summary<'_>,
) -> Result<Relationship, ApiError> {
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

pub(super) fn relationship_not_found(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no relationship {id}")).field("id")
}

pub(super) async fn relationship(state: &OperatorState, id: &str) -> Answer {
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

pub(super) fn providers(state: &OperatorState) -> warp::reply::Response {
    let views = state.views();
    let providers: Vec<_> = views.providers.all().collect();
    json_reply(StatusCode::OK, &json!({ "providers": providers }))
}

pub(super) fn audit_head(state: &OperatorState) -> warp::reply::Response {
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
