//! The operator API's route table: every route, the endpoint it reaches, and how a path finds it.
//! `openapi.json` is checked against this table.

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`
    Health,
    /// `GET /ready`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /v1/sessions`
    Sessions,
    /// `GET /v1/queue`
    Queue,
    /// `GET /v1/relationships`
    Relationships,
    /// `GET /v1/relationships/{id}`
    Relationship,
    /// `POST /v1/relationships/{id}/terminate`
    Terminate,
    /// `GET /v1/providers`
    Providers,
    /// `POST /v1/providers`
    AddProvider,
    /// `DELETE /v1/providers/{npi}`
    RemoveProvider,
    /// `GET /v1/audit/head`
    AuditHead,
    /// `POST /v1/audit/checkpoint`
    AuditCheckpoint,
    /// `GET /v1/audit/export`
    AuditExport,
    /// `GET /v1/audit/checkpoint`
    LatestCheckpoint,
    /// `GET /v1/audit/proof/{seq}`
    InclusionProof,
    /// `GET /v1/audit/consistency`
    ConsistencyProof,
}

impl Endpoint {
    /// Whether its request carries a JSON body (the others' bodies are ignored).
    pub fn takes_body(self) -> bool {
        matches!(self, Endpoint::Terminate | Endpoint::AddProvider)
    }
}

/// One route of the operator API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path, with `{name}` for a path parameter (OpenAPI's notation).
    pub path: &'static str,
    /// What it does.
    pub endpoint: Endpoint,
}

pub(super) const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every route the operator listener answers. Routes under `/v1/` require a bearer token when
/// tokens are configured.
pub const ROUTES: &[Route] = &[
    route("GET", "/health", Endpoint::Health),
    route("GET", "/ready", Endpoint::Ready),
    route("GET", "/metrics", Endpoint::Metrics),
    route("GET", "/openapi.json", Endpoint::OpenApi),
    route("GET", "/v1/sessions", Endpoint::Sessions),
    route("GET", "/v1/queue", Endpoint::Queue),
    route("GET", "/v1/relationships", Endpoint::Relationships),
    route("GET", "/v1/relationships/{id}", Endpoint::Relationship),
    route(
        "POST",
        "/v1/relationships/{id}/terminate",
        Endpoint::Terminate,
    ),
    route("GET", "/v1/providers", Endpoint::Providers),
    route("POST", "/v1/providers", Endpoint::AddProvider),
    route("DELETE", "/v1/providers/{npi}", Endpoint::RemoveProvider),
    route("GET", "/v1/audit/head", Endpoint::AuditHead),
    route("POST", "/v1/audit/checkpoint", Endpoint::AuditCheckpoint),
    route("GET", "/v1/audit/export", Endpoint::AuditExport),
    route("GET", "/v1/audit/checkpoint", Endpoint::LatestCheckpoint),
    route("GET", "/v1/audit/proof/{seq}", Endpoint::InclusionProof),
    route("GET", "/v1/audit/consistency", Endpoint::ConsistencyProof),
];

/// How a request path matched the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A route, with its path parameter if it has one.
    Route(&'static Route, Option<String>),
    /// The path exists, not with this method; the methods it has.
    WrongMethod(Vec<&'static str>),
    /// No route has this path.
    NotFound,
}

/// Finds the route for `method` and `path`.
pub fn resolve(method: &str, path: &str) -> Resolved {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(parameter) = match_path(route.path, path) {
            if route.method == method {
                return Resolved::Route(route, parameter);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Resolved::NotFound
    } else {
        Resolved::WrongMethod(allowed)
    }
}

/// `Some(parameter)` when `path` fits `template`; the parameter is the segment in `{…}`, if any.
pub(super) fn match_path(template: &str, path: &str) -> Option<Option<String>> {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    let mut parameter = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(parameter),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return None;
                }
                parameter = Some(g.to_string());
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}
