//! The operator API's refusals: a status, a code, a message, the field at fault, as JSON.

use serde::Serialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Reply;

/// An error answer: `{"error":{"code":…,"message":…,"field":…}}`.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// The request field, query parameter or path parameter at fault.
    pub(super) field: Option<String>,
    /// A header the answer carries (`allow`, `www-authenticate`, `retry-after`, `connection`).
    pub(super) header: Option<(&'static str, String)>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            header: None,
        }
    }

    pub(super) fn field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    pub(super) fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).field(field)
    }

    pub(super) fn log_unreadable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "log_unreadable", reason)
    }

    pub(super) fn log_unavailable(failure: &neuron_events::Error) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_unavailable",
            format!("the event log could not be written: {failure}"),
        )
    }

    pub(super) fn into_response(self) -> warp::reply::Response {
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

pub(super) type Answer = Result<warp::reply::Response, ApiError>;

pub(super) fn json_reply(status: StatusCode, body: &impl Serialize) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

pub(super) fn set_content_type(response: &mut warp::reply::Response, value: &'static str) {
    response
        .headers_mut()
        .insert("content-type", warp::http::HeaderValue::from_static(value));
}
