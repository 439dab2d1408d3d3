//! The audit log's evidence for operators (SPEC §3.5): the latest signed checkpoint, a record's
//! inclusion proof as a tlog-proof (a receipt an operator can hand on), and consistency proofs
//! between tree sizes. Answered from [`crate::audit`], as text.

use serde::Deserialize;
use warp::http::StatusCode;

use crate::audit::{self, ProofError};

use super::errors::{set_content_type, Answer, ApiError, Code};
use super::request::{query, seq_parameter};
use super::OperatorState;

/// A text answer.
fn text(body: String) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = StatusCode::OK;
    set_content_type(&mut response, "text/plain; charset=utf-8");
    response
}

fn refusal(error: ProofError) -> ApiError {
    match error {
        ProofError::BadParameter { name, reason } => ApiError::bad_request(name, reason),
        ProofError::NotFound(reason) => ApiError::new(Code::NotFound, reason),
        ProofError::Unreadable(reason) => ApiError::new(Code::LogUnreadable, reason),
    }
}

/// `GET /v1/audit/checkpoint`: the latest signed checkpoint (the latest witnessed one, with its
/// cosignatures, when witnesses are configured and have cosigned one), as its note.
pub(super) fn latest_checkpoint(state: &OperatorState) -> Answer {
    Ok(text(
        audit::served_checkpoint(&state.live).map_err(refusal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofParameters {
    size: Option<String>,
}

/// `GET /v1/audit/proof/{seq}?size=N`: the record's tlog-proof under the checkpoint of that size
/// (the latest when not given).
pub(super) async fn inclusion(state: &OperatorState, seq: &str, raw_query: &str) -> Answer {
    let parameters: ProofParameters = query(raw_query)?;
    let seq = seq_parameter(Some(seq), "seq")?.unwrap_or_default();
    let size = seq_parameter(parameters.size.as_deref(), "size")?;
    let proof = audit::inclusion(&state.live, seq, size)
        .await
        .map_err(refusal)?;
    Ok(text(proof))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyParameters {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /v1/audit/consistency?from=A&to=B`: the consistency proof from the tree of A records to
/// the tree of B, one base64 hash a line.
pub(super) async fn consistency(state: &OperatorState, raw_query: &str) -> Answer {
    let parameters: ConsistencyParameters = query(raw_query)?;
    let required = |value: Option<&str>, name: &'static str| {
        seq_parameter(value, name)?.ok_or_else(|| {
            ApiError::bad_request(name, format!("{name} is required (a tree size from 1)"))
        })
    };
    let from = required(parameters.from.as_deref(), "from")?;
    let to = required(parameters.to.as_deref(), "to")?;
    let proof = audit::consistency(&state.live, from, to)
        .await
        .map_err(refusal)?;
    Ok(text(proof))
}
