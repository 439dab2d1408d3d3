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
        let names = body_names(self.body)?;
        check_names::<T>(Part::Body, names.iter().map(String::as_str))?;
        let mut fields = serde_json::Deserializer::from_slice(self.body);
        serde_path_to_error::deserialize(&mut fields).map_err(|error| invalid(Part::Body, &error))
    }
}

/// The names of a body's members, in order, repeats included (a JSON object keeps only the last
/// of a field given twice, so they are read from the bytes); the body refused when it is empty,
/// not JSON, or JSON but not an object.
fn body_names(body: &[u8]) -> Result<Vec<String>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("body", "a JSON object is required"));
    }
    serde_json::from_slice::<Names>(body)
        .map(|names| names.0)
        .map_err(|error| match error.classify() {
            serde_json::error::Category::Data => {
                ApiError::bad_request("body", "the body must be a JSON object")
            }
            _ => ApiError::bad_request("body", format!("the body is not JSON: {error}")),
        })
}

/// The query string as the parameters `T` describes: a parameter `T` does not have, or one given
/// twice, is refused by name.
pub(super) fn query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(raw.as_bytes());
    let names: Vec<_> = pairs.map(|(name, _)| name).collect();
    check_names::<T>(Part::Query, names.iter().map(AsRef::as_ref))?;
    let parameters = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(parameters).map_err(|error| invalid(Part::Query, &error))
}

/// Which part of a request a field is in, as its refusal says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Query,
    Body,
}

impl Part {
    fn word(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Body => "body",
        }
    }
}

/// Refuses, by name, the first of `names` that `T` does not have or that comes a second time.
/// `T`'s names are the ones its derived `Deserialize` declares; for a type that declares none (not
/// a plain struct), serde alone decides.
fn check_names<'a, T: DeserializeOwned>(
    part: Part,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let declared = declared_fields::<T>();
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let unknown = declared.is_some_and(|declared| !declared.contains(&name));
        let message = match (part, unknown, seen.insert(name)) {
            (Part::Query, true, _) => format!("unknown query parameter {name:?}"),
            (Part::Body, true, _) => format!("unknown field {name:?}"),
            (Part::Query, false, false) => format!("query parameter {name:?} is given twice"),
            (Part::Body, false, false) => format!("field {name:?} is given twice"),
            (_, false, true) => continue,
        };
        return Err(ApiError::bad_request(name, message));
    }
    Ok(())
}

/// A value of the right names that serde still refuses (a wrong type): named by the field serde
/// stopped at, or by the part when the fault is not one field's.
fn invalid<E: std::fmt::Display>(part: Part, error: &serde_path_to_error::Error<E>) -> ApiError {
    let path = error.path().to_string();
    let field = if path == "." {
        part.word()
    } else {
        path.as_str()
    };
    ApiError::bad_request(
        field,
        format!("the {} is not valid: {}", part.word(), error.inner()),
    )
}

/// The field names a struct's derived `Deserialize` declares: what it hands to
/// `deserialize_struct`, which a deserializer that only listens takes down.
fn declared_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut declared = None;
    let _ = T::deserialize(Declared(&mut declared));
    declared
}

/// A deserializer that gives nothing and notes the fields a struct declares.
struct Declared<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for Declared<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom(
            "only a struct's field names are taken",
        ))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(serde::de::Error::custom(
            "only a struct's field names are taken",
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The names of a JSON object's members, in order, repeats included.
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Names;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    names.push(name);
                }
                Ok(Names(names))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Parameters {
        limit: Option<String>,
        after: Option<u64>,
    }

    fn refused(result: Result<Parameters, ApiError>) -> (String, String) {
        let error = result.expect_err("refused");
        (error.field.unwrap_or_default(), error.message)
    }

    #[test]
    fn a_struct_s_declared_fields_are_learned_and_a_non_struct_declares_none() {
        assert_eq!(
            declared_fields::<Parameters>(),
            Some(&["limit", "after"][..])
        );
        assert_eq!(declared_fields::<NoParameters>(), Some(&[][..]));
        assert_eq!(declared_fields::<Vec<String>>(), None);
    }

    #[test]
    fn query_parameters_unknown_or_given_twice_are_refused_by_name() {
        let read = query::<Parameters>("limit=5&after=3").expect("read");
        assert_eq!((read.limit.as_deref(), read.after), (Some("5"), Some(3)));
        assert_eq!(
            refused(query("limit=5&verbose=1")),
            (
                "verbose".into(),
                "unknown query parameter \"verbose\"".into()
            )
        );
        assert_eq!(
            refused(query("limit=5&limit=6")),
            (
                "limit".into(),
                "query parameter \"limit\" is given twice".into()
            )
        );
        // Names are compared decoded, as serde reads them.
        assert_eq!(
            refused(query("li%6Dit=5&limit=6")),
            (
                "limit".into(),
                "query parameter \"limit\" is given twice".into()
            )
        );
        let (field, message) = refused(query("after=soon"));
        assert_eq!(field, "after");
        assert!(message.starts_with("the query is not valid: "), "{message}");
    }

    #[test]
    fn body_members_unknown_or_given_twice_are_refused_by_name() {
        let names = |json: &str| serde_json::from_slice::<Names>(json.as_bytes()).unwrap().0;
        assert_eq!(
            names(r#"{"limit":{"a":1},"after":[1,2]}"#),
            ["limit", "after"]
        );
        let check = |json: &str| {
            check_names::<Parameters>(Part::Body, names(json).iter().map(String::as_str))
                .map_err(|error| (error.field.unwrap_or_default(), error.message))
        };
        assert_eq!(check(r#"{"limit":"5"}"#), Ok(()));
        assert_eq!(
            check(r#"{"limit":"5","extra":true}"#),
            Err(("extra".into(), "unknown field \"extra\"".into()))
        );
        assert_eq!(
            check(r#"{"after":1,"after":2}"#),
            Err(("after".into(), "field \"after\" is given twice".into()))
        );
    }

    #[test]
    fn a_body_that_is_empty_not_json_or_not_an_object_is_refused_for_what_it_is() {
        let refused = |body: &str| {
            let error = body_names(body.as_bytes()).expect_err("refused");
            (error.field.unwrap_or_default(), error.message)
        };
        assert_eq!(
            refused(""),
            ("body".into(), "a JSON object is required".into())
        );
        for not_an_object in ["[1]", "\"text\"", "7", "null"] {
            assert_eq!(
                refused(not_an_object),
                ("body".into(), "the body must be a JSON object".into()),
                "{not_an_object}"
            );
        }
        for not_json in ["{", "{\"a\":", "{\"a\":1} x", "nope"] {
            let (field, message) = refused(not_json);
            assert_eq!(field, "body");
            assert!(
                message.starts_with("the body is not JSON: "),
                "{not_json}: {message}"
            );
        }
    }
}
