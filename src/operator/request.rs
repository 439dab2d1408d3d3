//! What a request brings: its query, its body (bounded in size and time), and the fields read from
//! them, each refused by name when it is wrong.

use futures_util::{Stream, StreamExt};
use hyper::body::Buf;
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
    /// The body as a JSON object with no fields but `allowed`.
    pub(super) fn object(
        &self,
        allowed: &[&str],
    ) -> Result<serde_json::Map<String, Value>, ApiError> {
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

pub(super) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).map_err(|error| {
        ApiError::bad_request("query", format!("the query string is not valid: {error}"))
    })
}

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
pub(super) fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query_raw(query, name).filter(|value| !value.is_empty())
}

/// A typed parameter of the query, as given: an empty value is a value, and refused as one.
pub(super) fn query_raw<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A required, non-empty string field of at most [`MAX_TEXT_CHARS`] characters.
pub(super) fn text_field(
    object: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, ApiError> {
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

pub(super) fn seq_parameter(
    query: &[(String, String)],
    name: &str,
) -> Result<Option<u64>, ApiError> {
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
