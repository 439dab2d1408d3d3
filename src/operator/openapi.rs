//! The OpenAPI 3.1 description of the routes, and the document as this listener serves it.

use hyper::body::Bytes;
use serde_json::Value;

/// The OpenAPI 3.1 description of [`super::ROUTES`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// The OpenAPI document as this listener serves it: this build's version filled in, and, when no
/// token is configured (loopback only), without the bearer requirement and the 401 answers the
/// listener then never gives, so that it says exactly what the listener accepts.
pub(crate) fn openapi_document(tokens_required: bool) -> Bytes {
    let Ok(mut document) = serde_json::from_str::<Value>(OPENAPI) else {
        // The document is checked by the tests; should it ever not parse, serve it as it is.
        return Bytes::from_static(OPENAPI.as_bytes());
    };
    document["info"]["version"] = Value::from(env!("CARGO_PKG_VERSION"));
    if !tokens_required {
        if let Some(paths) = document["paths"].as_object_mut() {
            for operation in paths.values_mut().filter_map(Value::as_object_mut) {
                for (_, operation) in operation.iter_mut() {
                    if let Some(operation) = operation.as_object_mut() {
                        operation.remove("security");
                        if let Some(responses) = operation
                            .get_mut("responses")
                            .and_then(Value::as_object_mut)
                        {
                            responses.remove("401");
                        }
                    }
                }
            }
        }
    }
    Bytes::from(document.to_string())
}
