//! What a request brings: its query, its body (bounded in size and time), and the fields read from
//! them, each refused by name when it is wrong.

use futures_util::{Stream, StreamExt};
use hyper::body::Buf;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::errors::{ApiError, Code};
use super::guard::Caller;
use super::{OperatorState, MAX_BODY_BYTES, MAX_TEXT_CHARS};

/// One authenticated request, ready for its endpoint.
pub(super) struct Call<'a> {
    pub(super) state: &'a OperatorState,
    pub(super) body: &'a [u8],
    pub(super) caller: &'a Caller,
}

impl Call<'_> {
    /// The body as the JSON object `T` describes: fields `T` does not have are refused by name.
    pub(super) fn body<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("body", "a JSON object is required"));
        }
        match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(_)) => {}
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
        }
        // Read again from the bytes, not the object: a JSON object keeps the last of a field given
        // twice, the struct refuses it.
        let mut fields = serde_json::Deserializer::from_slice(self.body);
        serde_path_to_error::deserialize(&mut fields).map_err(|error| bad_request("body", &error))
    }
}

/// The query string as the parameters `T` describes: a parameter `T` does not have, or one given
/// twice, is refused by name.
pub(super) fn query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let parameters = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(parameters).map_err(|error| bad_request("query", &error))
}

/// The bad request naming the field serde stopped at (`whole` when the fault is not one field's).
fn bad_request<E: std::fmt::Display>(
    whole: &str,
    error: &serde_path_to_error::Error<E>,
) -> ApiError {
    let path = error.path().to_string();
    let inner = error.inner().to_string();
    // serde names a field given twice in its message only ("duplicate field `limit`").
    let duplicate = inner
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string());
    let field = match (&duplicate, path.as_str()) {
        (Some(name), _) => name.as_str(),
        (None, ".") => whole,
        (None, path) => path,
    };
    let message = match (inner.starts_with("unknown field "), &duplicate) {
        (true, _) if whole == "query" => format!("unknown query parameter {field:?}"),
        (true, _) => format!("unknown field {field:?}"),
        (false, Some(_)) if whole == "query" => format!("query parameter {field:?} is given twice"),
        (false, Some(_)) => format!("field {field:?} is given twice"),
        (false, None) => format!("the {whole} is not valid: {inner}"),
    };
    ApiError::bad_request(field, message)
}

/// The query of a route that takes no parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParameters {}

/// The request's body, which must arrive whole within `limit` (a client that stops half-way is
/// answered 408 and its connection closed) and be at most [`MAX_BODY_BYTES`].
pub(super) async fn read_body<S, B>(
    body: S,
    limit: std::time::Duration,
) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let Ok(read) = tokio::time::timeout(limit, read_body_whole(body)).await else {
        let mut refusal = ApiError::new(
            Code::RequestTimeout,
            format!("the body did not arrive within {} ms", limit.as_millis()),
        )
        .field("body");
        refusal.header = Some(("connection", "close".to_string()));
        return Err(refusal);
    };
    read
}

pub(super) async fn read_body_whole<S, B>(body: S) -> Result<Vec<u8>, ApiError>
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
                Code::BodyTooLarge,
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

/// A text filter of the query: empty counts as absent (no filter).
pub(super) fn filter(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.is_empty())
}

/// A required, non-empty string field of at most [`MAX_TEXT_CHARS`] characters.
pub(super) fn text_field(value: Option<&Value>, field: &str) -> Result<String, ApiError> {
    match value {
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

/// A seq parameter (a whole number from 1), if given.
pub(super) fn seq_parameter(value: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    match value {
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
