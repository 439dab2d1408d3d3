//! The endpoints that change something: providers added and removed, relationships terminated,
//! checkpoints. Each is an event, committed before it is answered, one change at a time.

use serde::Deserialize;
use serde_json::Value;
use warp::http::StatusCode;

use neuron_events::event::{ChangeSource, EventData, ProviderChanged, RelationshipTerminated};
use neuron_events::Event;
use neuron_projections::relationships::Standing;

use neuron_handshake::npi;

use crate::server::live::StopPhase;

use super::errors::{json_reply, Answer, ApiError, Code};
use super::reads::{relationship, relationship_not_found};
use super::request::{text_field, Call};
use super::OperatorState;

/// The body of `POST /v1/relationships/{id}/terminate`. Each field's value is checked by
/// [`text_field`], which names what is wrong with it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Termination {
    provider_npi: Option<Value>,
    reason: Option<Value>,
}

/// The body of `POST /v1/providers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProvider {
    npi: Option<Value>,
    name: Option<Value>,
}

/// The change lock: one change at a time, and none once the stop has cut. The stop takes the lock
/// to cut, so a change either commits before the closing records and the final checkpoint, which
/// then cover it, or is refused (503): never recorded after them, signed by nothing (SPEC §2.6).
async fn one_change_at_a_time(
    state: &OperatorState,
) -> Result<tokio::sync::RwLockWriteGuard<'_, ()>, ApiError> {
    let lock = state.live.changes.write().await;
    if state.live.stop.has_reached(StopPhase::Cut) {
        return Err(ApiError::new(
            Code::NotReady,
            "the server is stopping: its log takes no more changes",
        ));
    }
    Ok(lock)
}

pub(super) async fn terminate(call: &Call<'_>, id: &str) -> Answer {
    let body: Termination = call.body()?;
    let provider_npi = text_field(body.provider_npi.as_ref(), "provider_npi")?;
    let reason = text_field(body.reason.as_ref(), "reason")?;
    let state = call.state;
    let one_change_at_a_time = one_change_at_a_time(state).await?;
    {
        let views = state.views();
        let relationship = views
            .relationships
            .get(id)
            .ok_or_else(|| relationship_not_found(id))?;
        if relationship.provider_npi != provider_npi {
            return Err(ApiError::new(
                Code::ProviderMismatch,
                format!(
                    "relationship {id} is with provider {}, not {provider_npi}",
                    relationship.provider_npi
                ),
            )
            .field("provider_npi"));
        }
        if relationship.status == Standing::Terminated {
            return Err(ApiError::new(
                Code::AlreadyTerminated,
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
pub(super) async fn commit(state: &OperatorState, data: EventData) -> Result<(), ApiError> {
    state
        .live
        .journal
        .append(Event::global(data))
        .await
        .map(|_| ())
        .map_err(|failure| ApiError::log_unavailable(&failure))
}

pub(super) fn provider_not_found(npi: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no registered provider {npi}")).field("npi")
}

pub(super) fn provider_reply(state: &OperatorState, status: StatusCode, npi: &str) -> Answer {
    match state.views().providers.get(npi) {
        Some(provider) => Ok(json_reply(status, provider)),
        None => Err(provider_not_found(npi)),
    }
}

pub(super) async fn add_provider(call: &Call<'_>) -> Answer {
    let body: NewProvider = call.body()?;
    let npi = text_field(body.npi.as_ref(), "npi")?;
    let name = text_field(body.name.as_ref(), "name")?;
    if !npi::is_valid(&npi) {
        return Err(ApiError::bad_request(
            "npi",
            format!("{npi:?} is not an NPI: ten digits with a valid check digit"),
        ));
    }
    let state = call.state;
    let _one_change_at_a_time = one_change_at_a_time(state).await?;
    if state.views().providers.is_registered(&npi) {
        return Err(ApiError::new(
            Code::ProviderExists,
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

pub(super) async fn remove_provider(call: &Call<'_>, npi: &str) -> Answer {
    let state = call.state;
    let _one_change_at_a_time = one_change_at_a_time(state).await?;
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

pub(super) async fn checkpoint(state: &OperatorState) -> Answer {
    let committed = state
        .live
        .journal
        .checkpoint()
        .await
        .map_err(|failure| ApiError::log_unavailable(&failure))?;
    // Requests made at once are answered with the latest checkpoint, which covers each of them
    // (it is this request's own, or one committed after it).
    let seen = state.metrics().last_checkpoint().cloned();
    match seen {
        Some(seen) if seen.seq >= committed.seq => Ok(json_reply(StatusCode::CREATED, &seen)),
        // The observer sees every record before its append returns: not reached.
        _ => Err(ApiError::new(
            Code::Internal,
            format!("checkpoint {} was written but not observed", committed.seq),
        )),
    }
}
