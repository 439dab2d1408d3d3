//! The head of an operator request (method, path, query, headers) as the listener read it: what
//! the browser checks and the authentication look at before any body is read. A leaf the
//! dispatcher and the guard share.

use warp::http::{HeaderMap, Method};

/// A request's head.
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) headers: HeaderMap,
}
