//! The operator API's error answers: a status, a code, a message, the field at fault, as JSON.

use serde::Serialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Reply;

/// The operator API's error codes (`error.code`), each answered with one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Code {
    /// A query parameter, path parameter or body field is wrong; `field` names it.
    InvalidRequest,
    /// No bearer token where tokens are configured.
    Unauthorized,
    /// A bearer token that is not accepted.
    Forbidden,
    /// A browser page's request (an `Origin` not in `admin.allowed_origins`).
    OriginRefused,
    /// A termination naming a provider the relationship is not with.
    ProviderMismatch,
    /// No such route, relationship or registered provider.
    NotFound,
    /// The path exists, not with this method (the answer carries `allow`).
    MethodNotAllowed,
    /// A change's body did not arrive in time (the connection is closed).
    RequestTimeout,
    /// The provider is already registered.
    ProviderExists,
    /// The relationship is already terminated.
    AlreadyTerminated,
    /// A body larger than `MAX_BODY_BYTES`.
    BodyTooLarge,
    /// A change's body not sent as `application/json`.
    UnsupportedMediaType,
    /// A `Host` that does not name this listener (DNS rebinding).
    MisdirectedRequest,
    /// The log cannot be written, or the server is stopping.
    NotReady,
    /// The log could not be read for an answer.
    LogUnreadable,
    /// The log could not be written: the change's outcome is unknown.
    LogUnavailable,
    /// Every export stream is taken (the answer carries `retry-after`).
    ExportsBusy,
    /// A change was committed but its answer could not be built.
    Internal,
}

impl Code {
    /// Every code, for the tests that hold them to `openapi.json`.
    #[cfg(test)]
    pub(super) const ALL: &'static [Self] = &[
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::OriginRefused,
        Self::ProviderMismatch,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::ProviderExists,
        Self::AlreadyTerminated,
        Self::BodyTooLarge,
        Self::UnsupportedMediaType,
        Self::MisdirectedRequest,
        Self::NotReady,
        Self::LogUnreadable,
        Self::LogUnavailable,
        Self::ExportsBusy,
        Self::Internal,
    ];

    /// The code as the answer's JSON writes it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::OriginRefused => "origin_refused",
            Self::ProviderMismatch => "provider_mismatch",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::ProviderExists => "provider_exists",
            Self::AlreadyTerminated => "already_terminated",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MisdirectedRequest => "misdirected_request",
            Self::NotReady => "not_ready",
            Self::LogUnreadable => "log_unreadable",
            Self::LogUnavailable => "log_unavailable",
            Self::ExportsBusy => "exports_busy",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status every answer with this code has.
    pub(super) fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::OriginRefused => StatusCode::FORBIDDEN,
            Self::ProviderMismatch => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ProviderExists => StatusCode::CONFLICT,
            Self::AlreadyTerminated => StatusCode::CONFLICT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::LogUnreadable => StatusCode::SERVICE_UNAVAILABLE,
            Self::LogUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ExportsBusy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer: `{"error":{"code":…,"message":…,"field":…}}`.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) code: Code,
    pub(super) message: String,
    /// The request field, query parameter or path parameter at fault.
    pub(super) field: Option<String>,
    /// A header the answer carries (`allow`, `www-authenticate`, `retry-after`, `connection`).
    pub(super) header: Option<(&'static str, String)>,
}

impl ApiError {
    pub(super) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
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
        Self::new(Code::InvalidRequest, message).field(field)
    }

    pub(super) fn log_unreadable(reason: impl Into<String>) -> Self {
        Self::new(Code::LogUnreadable, reason)
    }

    pub(super) fn log_unavailable(failure: &neuron_events::Error) -> Self {
        Self::new(
            Code::LogUnavailable,
            format!("the event log could not be written: {failure}"),
        )
    }

    pub(super) fn into_response(self) -> warp::reply::Response {
        let mut body = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::from(field);
        }
        let mut response = json_reply(self.code.status(), &json!({ "error": body }));
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
