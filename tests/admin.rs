//! The operator API end to end: a real server with both listeners on ephemeral loopback ports, real
//! HTTP requests, real WebSocket handshakes, the injected clock, ids and keys. Every answer's
//! status is checked against what `openapi.json` documents for its route; bodies and the record
//! sequences of changes are locked as snapshots.

use std::net::SocketAddr;
use std::path::Path;

mod common;

use common::{ada, bob, config, until, until_queued, url, NOW, PROVIDER};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::HeaderMap;
use neuron::config::Config;
use neuron::operator::{resolve, Resolved, OPENAPI, ROUTES};
use neuron::server::Server;
use neuron::tools::client::{self, Patient};
use neuron_events::testing::{fixed_clock, neuron_key, snapshot_settings};
use neuron_events::VerifyOptions;
use serde_json::{json, Value};

/// A valid NPI that the default configuration does not list.
const OTHER_PROVIDER: &str = "1003000126";
/// The token the tests configure; its blake3 hash goes into `admin.token_hashes`.
const TOKEN: &str = "test-operator-token";

fn with_token(mut config: Config) -> Config {
    config.admin.token_hashes = vec![blake3::hash(TOKEN.as_bytes()).to_hex().to_string()];
    config
}

async fn start(config: Config) -> Server {
    start_with_clock(config, fixed_clock()).await
}

async fn start_with_clock(config: Config, clock: neuron_events::SteppingClock) -> Server {
    common::start(config, clock, 5).await
}

/// A fixed loopback source address per test and client, so recorded peers never vary.
fn source(test: u8, client: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from((
        [127, 30, test, client],
        41_000 + u16::from(client),
    )))
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    bytes: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", self.bytes))
    }

    fn text(&self) -> String {
        String::from_utf8(self.bytes.to_vec()).unwrap()
    }

    /// The error code of an error answer.
    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_string()
    }

    fn field(&self) -> String {
        self.json()["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The operator API of one server, called with or without a token.
struct Operator {
    addr: SocketAddr,
    token: Option<String>,
}

impl Operator {
    fn of(server: &Server, token: Option<&str>) -> Self {
        Self {
            addr: server.admin_addr(),
            token: token.map(str::to_string),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body.to_string())).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<String>) -> Reply {
        let reply = request(self.addr, method, path, self.token.as_deref(), body).await;
        assert_documented(method, path, reply.status);
        reply
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = http_body_util::Full::new(Bytes::from(body.unwrap_or_default()));
    let response = sender
        .send_request(builder.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        bytes,
    }
}

fn openapi() -> Value {
    serde_json::from_str(OPENAPI).unwrap()
}

/// Fails unless `openapi.json` lists `status` among the answers of the route `path` resolves to
/// (404 and 405 for paths and methods no route has are the router's, not a route's).
fn assert_documented(method: &str, path: &str, status: u16) {
    let path = path.split('?').next().unwrap_or_default();
    let Resolved::Route(route, _) = resolve(method, path) else {
        assert!(
            [404, 405].contains(&status),
            "{method} {path} has no route yet answered {status}"
        );
        return;
    };
    let document = openapi();
    let responses = &document["paths"][route.path][method.to_lowercase()]["responses"];
    assert!(
        responses.get(status.to_string()).is_some(),
        "{method} {path} answered {status}, which openapi.json does not document for {}",
        route.path
    );
}

fn lock_json(name: &str, value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap();
    snapshot_settings().bind(|| insta::assert_snapshot!(name, text));
}

fn lock_records(name: &str, dir: &Path) {
    neuron_events::lock_records!(name, &common::records(dir));
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let document = openapi();
    assert_eq!(document["openapi"], "3.1.0");
    for route in ROUTES {
        let operation = &document["paths"][route.path][route.method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} is routed but not in openapi.json",
            route.method,
            route.path
        );
        let secured = operation.get("security").is_some();
        assert_eq!(
            secured,
            route.path.starts_with("/v1/"),
            "{} {}: the bearer requirement in openapi.json must match the router's",
            route.method,
            route.path
        );
        if secured {
            for status in ["401", "403"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{} {} does not document {status}",
                    route.method,
                    route.path
                );
            }
        }
    }
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            assert!(
                ROUTES
                    .iter()
                    .any(|route| route.path == path && route.method.to_lowercase() == *method),
                "openapi.json documents {method} {path}, which no route serves"
            );
        }
    }
}

#[tokio::test]
async fn health_and_metrics_stay_open_while_v1_requires_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_token(config(dir.path()))).await;
    let anonymous = Operator::of(&server, None);
    let stranger = Operator::of(&server, Some("not-the-token"));
    let operator = Operator::of(&server, Some(TOKEN));

    assert_eq!(
        std::fs::read_to_string(dir.path().join("admin.addr")).unwrap(),
        format!("{}\n", server.admin_addr()),
        "port 0 picks a free port and writes it to admin.addr"
    );
    assert!(server.admin_addr().ip().is_loopback());
    assert_ne!(server.admin_addr(), server.local_addr());
    let health = anonymous.get("/health").await;
    assert_eq!(health.status, 200);
    let health = health.json();
    lock_json("admin__health", &health);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["log_seq"], 2, "server.started and one provider");
    assert_eq!(health["log_writable"], true);
    assert_eq!(anonymous.get("/ready").await.status, 200);
    assert_eq!(anonymous.get("/metrics").await.status, 200);
    let served = anonymous.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    let mut expected = openapi();
    expected["info"]["version"] = env!("CARGO_PKG_VERSION").into();
    assert_eq!(served.json(), expected);

    for path in [
        "/v1/sessions",
        "/v1/queue",
        "/v1/providers",
        "/v1/audit/head",
    ] {
        let refused = anonymous.get(path).await;
        assert_eq!(refused.status, 401, "{path} without a token");
        assert_eq!(refused.code(), "unauthorized");
        assert!(refused.headers.contains_key("www-authenticate"));
        let refused = stranger.get(path).await;
        assert_eq!(refused.status, 403, "{path} with a wrong token");
        assert_eq!(refused.code(), "forbidden");
        assert_eq!(
            operator.get(path).await.status,
            200,
            "{path} with the token"
        );
    }
    // Every /v1 route, whatever its method, refuses a missing or wrong token before it looks at
    // anything; the routes outside /v1 stay open.
    for route in ROUTES {
        let path = route
            .path
            .replace("{id}", "some-id")
            .replace("{npi}", PROVIDER);
        let body = (route.method == "POST").then(|| "{}".to_string());
        let anonymous_status = anonymous
            .call(route.method, &path, body.clone())
            .await
            .status;
        let stranger_status = stranger.call(route.method, &path, body).await.status;
        if route.path.starts_with("/v1/") {
            assert_eq!(
                (anonymous_status, stranger_status),
                (401, 403),
                "{} {}",
                route.method,
                route.path
            );
        } else {
            assert_eq!(anonymous_status, 200, "{} {}", route.method, route.path);
        }
    }
    // Refused before anything is looked at or changed.
    let refused = anonymous
        .post(
            "/v1/providers",
            json!({"npi": OTHER_PROVIDER, "name": "Dr. Nobody"}),
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        request(server.admin_addr(), "GET", "/v1/sessions", Some(""), None)
            .await
            .status,
        401,
        "an empty bearer token is no token"
    );

    let missing = operator.get("/v1/nothing").await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );
    let wrong_method = operator.call("PUT", "/v1/providers", None).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "GET, POST");
    let unknown = operator.get("/v1/sessions?verbose=1").await;
    assert_eq!((unknown.status, unknown.field().as_str()), (400, "verbose"));
    let unknown = operator.get("/v1/audit/export?from=1").await;
    assert_eq!((unknown.status, unknown.field().as_str()), (400, "from"));
    let twice = operator.get("/v1/audit/export?from_seq=1&from_seq=2").await;
    assert_eq!((twice.status, twice.field().as_str()), (400, "from_seq"));

    let providers = operator.get("/v1/providers").await;
    lock_json("admin__providers_at_start", &providers.json());
    let head = operator.get("/v1/audit/head").await.json();
    assert_eq!(head["seq"], 2);
    assert_eq!(head["checkpoint"], Value::Null);

    server.stop("test over").await.unwrap();
}

#[test]
fn admin_token_prints_a_token_and_its_blake3_hash() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_neuron"))
        .arg("admin-token")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let value = |prefix: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {text}"))
            .trim()
            .to_string()
    };
    let token = value("token:");
    let hash = value("hash:");
    assert!(
        token.len() >= 40,
        "a token long enough to guess at: {token}"
    );
    assert_eq!(blake3::hash(token.as_bytes()).to_hex().as_str(), hash);
    assert!(text.contains(&format!("token_hashes = [\"{hash}\"]")));
    // Two runs never give the same token.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_neuron"))
        .arg("admin-token")
        .output()
        .unwrap();
    assert!(!String::from_utf8(again.stdout).unwrap().contains(&token));
}

#[tokio::test]
async fn a_terminated_relationship_is_never_reactivated() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_token(config(dir.path()))).await;
    let operator = Operator::of(&server, Some(TOKEN));

    let first = client::handshake(&url(&server), source(1, 1), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(first.completed());
    let id = first.received[1]["relationship_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = operator.get(&format!("/v1/relationships/{id}")).await;
    assert_eq!(shown.status, 200);
    lock_json("admin__relationship_active", &shown.json());

    let terminate = format!("/v1/relationships/{id}/terminate");
    let refusals = [
        (
            json!({"provider_npi": PROVIDER, "reason": "  "}),
            400,
            "reason",
        ),
        (json!({"provider_npi": PROVIDER}), 400, "reason"),
        (json!({"reason": "moved away"}), 400, "provider_npi"),
        (
            json!({"provider_npi": PROVIDER, "reason": "moved", "by": "me"}),
            400,
            "by",
        ),
        (json!(["not", "an", "object"]), 400, "body"),
        (
            json!({"provider_npi": OTHER_PROVIDER, "reason": "moved away"}),
            403,
            "provider_npi",
        ),
    ];
    let mismatch = operator
        .post(
            &terminate,
            json!({"provider_npi": OTHER_PROVIDER, "reason": "moved away"}),
        )
        .await;
    lock_json("admin__terminate_provider_mismatch", &mismatch.json());
    for (body, status, field) in refusals {
        let refused = operator.post(&terminate, body.clone()).await;
        assert_eq!(
            (refused.status, refused.field()),
            (status, field.to_string()),
            "{body}"
        );
    }
    let unknown = operator
        .post(
            "/v1/relationships/no-such-id/terminate",
            json!({"provider_npi": PROVIDER, "reason": "moved away"}),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "not_found")
    );
    let not_json = operator
        .call("POST", &terminate, Some("{not json".into()))
        .await;
    assert_eq!((not_json.status, not_json.field().as_str()), (400, "body"));
    let twice = operator
        .call(
            "POST",
            &terminate,
            Some(format!(
                r#"{{"provider_npi":"{PROVIDER}","reason":"a","reason":"b"}}"#
            )),
        )
        .await;
    assert_eq!((twice.status, twice.field().as_str()), (400, "reason"));
    let huge = operator
        .call("POST", &terminate, Some("x".repeat(20_000)))
        .await;
    assert_eq!((huge.status, huge.code().as_str()), (413, "body_too_large"));

    let terminated = operator
        .post(
            &terminate,
            json!({"provider_npi": PROVIDER, "reason": "patient moved away"}),
        )
        .await;
    assert_eq!(terminated.status, 200);
    lock_json("admin__relationship_terminated", &terminated.json());
    let again = operator
        .post(
            &terminate,
            json!({"provider_npi": PROVIDER, "reason": "patient moved away"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (409, "already_terminated")
    );

    let next = client::handshake(&url(&server), source(1, 2), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(next.completed());
    assert_eq!(next.received[1]["status"], "new");
    let new_id = next.received[1]["relationship_id"].as_str().unwrap();
    assert_ne!(new_id, id, "a terminated relationship is never reactivated");

    let listed = operator
        .get("/v1/relationships?patient_agent_id=patient-agent-ada")
        .await
        .json();
    let statuses: Vec<(&str, &str)> = listed["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    let mut expected = vec![(id.as_str(), "terminated"), (new_id, "active")];
    expected.sort();
    assert_eq!(statuses, expected);
    assert_eq!(listed["next_after"], Value::Null);

    server.stop("test over").await.unwrap();
    lock_records("admin__termination_then_new_relationship", dir.path());
}

#[tokio::test]
async fn relationships_page_in_a_stable_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    // No tokens configured and a loopback listener: /v1 is open.
    let operator = Operator::of(&server, None);
    let mut ids = Vec::new();
    for index in 0..5u8 {
        let patient = Patient::from_seed(&format!("patient-{index}"), [0x40 + index; 32]);
        let done = client::handshake(&url(&server), source(2, index), &patient, PROVIDER, NOW)
            .await
            .unwrap();
        ids.push(
            done.received[1]["relationship_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = operator
            .get(&format!("/v1/relationships?limit=2&after={after}"))
            .await;
        assert_eq!(page.status, 200);
        let page = page.json();
        for relationship in page["relationships"].as_array().unwrap() {
            seen.push(relationship["id"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every relationship once, in id order");

    let first_page = operator.get("/v1/relationships?limit=2").await.json();
    lock_json("admin__relationships_first_page", &first_page);
    let filtered = operator
        .get(&format!(
            "/v1/relationships?provider_npi={PROVIDER}&status=active&limit=1000"
        ))
        .await
        .json();
    assert_eq!(filtered["relationships"].as_array().unwrap().len(), 5);
    let none = operator
        .get("/v1/relationships?status=terminated")
        .await
        .json();
    assert_eq!(none, json!({"relationships": [], "next_after": null}));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("status=paused", "status"),
        ("patient=ada", "patient"),
        ("limit=5&limit=6", "limit"),
    ] {
        let refused = operator.get(&format!("/v1/relationships?{query}")).await;
        assert_eq!(
            (refused.status, refused.field()),
            (400, field.to_string()),
            "{query}"
        );
    }
    let unfiltered = operator
        .get("/v1/relationships?status=active&patient_agent_id=")
        .await;
    assert_eq!(unfiltered.status, 200, "an empty filter is no filter");
    let missing = operator.get("/v1/relationships/nope").await;
    assert_eq!((missing.status, missing.field().as_str()), (404, "id"));
    server.stop("test over").await.unwrap();
}

#[tokio::test]
async fn a_removed_provider_is_refused_and_its_relationships_stay() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(with_token(config(dir.path()))).await;
    let operator = Operator::of(&server, Some(TOKEN));
    assert!(neuron_handshake::npi::is_valid(OTHER_PROVIDER));

    for (body, field) in [
        (json!({"npi": "1234567890", "name": "Bad Digit"}), "npi"),
        (json!({"npi": "12345", "name": "Short"}), "npi"),
        (json!({"npi": OTHER_PROVIDER, "name": ""}), "name"),
        (json!({"npi": OTHER_PROVIDER}), "name"),
        (json!({"npi": 1003000126, "name": "Number"}), "npi"),
        (
            json!({"npi": OTHER_PROVIDER, "name": "Ada", "colour": "red"}),
            "colour",
        ),
    ] {
        let refused = operator.post("/v1/providers", body.clone()).await;
        assert_eq!(
            (refused.status, refused.field()),
            (400, field.to_string()),
            "{body}"
        );
    }
    let added = operator
        .post(
            "/v1/providers",
            json!({"npi": OTHER_PROVIDER, "name": "Dr. Grey"}),
        )
        .await;
    assert_eq!(added.status, 201);
    lock_json("admin__provider_added", &added.json());
    let twice = operator
        .post(
            "/v1/providers",
            json!({"npi": OTHER_PROVIDER, "name": "Dr. Grey"}),
        )
        .await;
    assert_eq!(
        (twice.status, twice.code().as_str()),
        (409, "provider_exists")
    );

    let with_new = client::handshake(&url(&server), source(3, 1), &ada(), OTHER_PROVIDER, NOW)
        .await
        .unwrap();
    assert!(with_new.completed(), "an added provider is usable at once");
    let with_configured = client::handshake(&url(&server), source(3, 2), &bob(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(with_configured.completed());
    let kept = with_configured.received[1]["relationship_id"]
        .as_str()
        .unwrap()
        .to_string();

    let removed = operator
        .call("DELETE", &format!("/v1/providers/{PROVIDER}"), None)
        .await;
    assert_eq!(removed.status, 200);
    assert_eq!(removed.json()["registered"], false);
    let again = operator
        .call("DELETE", &format!("/v1/providers/{PROVIDER}"), None)
        .await;
    assert_eq!((again.status, again.code().as_str()), (404, "not_found"));

    let refused = client::handshake(&url(&server), source(3, 3), &bob(), PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(refused.types(), ["handshake.error"]);
    assert_eq!(refused.received[0]["code"], "PROVIDER_NOT_FOUND");
    let relationship = operator
        .get(&format!("/v1/relationships/{kept}"))
        .await
        .json();
    assert_eq!(
        relationship["status"], "active",
        "existing relationships stay as they are"
    );
    server.stop("restart").await.unwrap();

    // The configuration still lists the removed provider: it stays removed, and the provider the
    // API added stays registered.
    let later = fixed_clock();
    later.advance(60_000);
    let server = start_with_clock(with_token(config(dir.path())), later).await;
    let operator = Operator::of(&server, Some(TOKEN));
    let providers = operator.get("/v1/providers").await.json();
    lock_json("admin__providers_after_restart", &providers);
    server.stop("test over").await.unwrap();
    lock_records("admin__provider_added_and_removed", dir.path());
}

/// The value of one sample line of a Prometheus exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn metrics_follow_real_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let operator = Operator::of(&server, None);
    let before = operator.get("/metrics").await;
    // OpenMetrics 1.0 (prometheus-client's exposition), which Prometheus scrapes natively.
    assert!(before.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let before = before.text();
    assert!(before.ends_with("# EOF\n"), "{before}");
    let completed = "neuron_handshakes_total{outcome=\"completed\",code=\"none\"}";
    let not_found = "neuron_handshakes_total{outcome=\"failed\",code=\"PROVIDER_NOT_FOUND\"}";
    assert_eq!(sample(&before, completed), 0.0);
    assert_eq!(sample(&before, "neuron_log_seq"), 2.0);

    for (client, patient) in [(1, ada()), (2, bob())] {
        assert!(
            client::handshake(&url(&server), source(4, client), &patient, PROVIDER, NOW)
                .await
                .unwrap()
                .completed()
        );
    }
    let refused = client::handshake(&url(&server), source(4, 3), &ada(), OTHER_PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(refused.received[0]["code"], "PROVIDER_NOT_FOUND");

    let after = operator.get("/metrics").await.text();
    assert_eq!(sample(&after, completed), 2.0);
    assert_eq!(sample(&after, not_found), 1.0);
    assert_eq!(
        sample(&after, "neuron_handshake_duration_seconds_count"),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            "neuron_handshake_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        3.0
    );
    let head = operator.get("/v1/audit/head").await.json();
    assert_eq!(
        sample(&after, "neuron_log_seq"),
        head["seq"].as_f64().unwrap()
    );
    assert!(sample(&after, "neuron_commit_batch_records_count") >= 3.0);
    assert!(
        sample(&after, "neuron_commit_batch_records_sum") >= head["seq"].as_f64().unwrap() - 2.0,
        "every record since start was in some batch"
    );
    assert!(sample(&after, "neuron_commit_duration_seconds_count") >= 3.0);
    assert_eq!(
        sample(&after, "neuron_relationships{status=\"active\"}"),
        2.0
    );
    assert_eq!(sample(&after, "neuron_live_sessions"), 0.0);
    assert_eq!(sample(&after, "neuron_queue_length"), 0.0);
    assert!(
        sample(&after, "neuron_checkpoint_seq") > 0.0,
        "a batch that completes a handshake ends with a checkpoint"
    );
    let checkpoint = operator.post("/v1/audit/checkpoint", json!({})).await;
    assert_eq!(checkpoint.status, 201);
    let after = operator.get("/metrics").await.text();
    assert_eq!(
        sample(&after, "neuron_checkpoint_seq"),
        checkpoint.json()["seq"].as_f64().unwrap()
    );
    server.stop("test over").await.unwrap();
}

#[tokio::test]
async fn live_sessions_and_the_queue_are_shown_while_they_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    let server = start(config).await;
    let operator = Operator::of(&server, None);

    // One silent client holds the only slot; a second waits in the queue.
    let mut silent = client::connect(&url(&server), source(5, 1)).await.unwrap();
    until(&server, |server| server.active_sessions().len() == 1).await;
    let queued_url = url(&server);
    let waiting = tokio::spawn(async move {
        client::handshake(&queued_url, source(5, 2), &ada(), PROVIDER, NOW).await
    });
    until_queued(&server, 1).await;
    let sessions = operator.get("/v1/sessions").await;
    assert_eq!(sessions.status, 200);
    lock_json("admin__sessions_one_live_one_queued", &sessions.json());
    let queue = operator.get("/v1/queue").await;
    lock_json("admin__queue_one_waiting", &queue.json());
    let metrics = operator.get("/metrics").await.text();
    assert_eq!(sample(&metrics, "neuron_live_sessions"), 1.0);
    assert_eq!(sample(&metrics, "neuron_queue_length"), 1.0);

    silent.close(None).await.unwrap();
    assert!(waiting.await.unwrap().unwrap().completed());
    let metrics = operator.get("/metrics").await.text();
    assert_eq!(sample(&metrics, "neuron_queue_wait_seconds_count"), 1.0);
    assert_eq!(
        operator.get("/v1/queue").await.json(),
        json!({"length": 0, "waiting": []})
    );
    server.stop("test over").await.unwrap();
}

#[tokio::test]
async fn the_export_stream_is_the_log_byte_for_byte_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_token(config(dir.path()));
    // Small enough that the log spans several export chunks and periodic checkpoints.
    config.audit.checkpoint_every = 50;
    let server = start(config).await;
    let operator = Operator::of(&server, Some(TOKEN));
    for index in 0..40u8 {
        let patient = Patient::from_seed(&format!("patient-{index}"), [0x60 + index; 32]);
        let done = client::handshake(&url(&server), source(6, index), &patient, PROVIDER, NOW)
            .await
            .unwrap();
        assert!(done.completed());
    }
    let checkpoint = operator.post("/v1/audit/checkpoint", json!({})).await;
    assert_eq!(checkpoint.status, 201);
    let checkpoint = checkpoint.json();
    lock_json("admin__checkpoint_written", &checkpoint);
    let head = operator.get("/v1/audit/head").await.json();
    lock_json("admin__audit_head", &head);
    assert_eq!(head["checkpoint"], checkpoint);
    assert_eq!(head["seq"], checkpoint["seq"]);

    let export = operator.get("/v1/audit/export").await;
    assert_eq!(export.status, 200);
    assert_eq!(export.headers["content-type"], "application/x-ndjson");
    assert_eq!(export.headers["x-neuron-from-seq"], "1");
    let lines = export
        .bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines as u64, head["seq"].as_u64().unwrap());
    let report = neuron_events::verify_jsonl(
        &export.bytes[..],
        &VerifyOptions {
            trusted_key: Some(neuron_key().verifying_key()),
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.head.to_hex(), head["head"].as_str().unwrap());
    assert_eq!(
        report.last_checkpoint.map(|c| c.seq),
        checkpoint["seq"].as_u64()
    );

    let part = operator.get("/v1/audit/export?from_seq=3&to_seq=5").await;
    let part_lines: Vec<&[u8]> = part
        .bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(part_lines.len(), 3);
    assert!(part_lines[0].starts_with(b"{\"seq\":3,"));
    let beyond = operator.get("/v1/audit/export?from_seq=100000").await;
    assert_eq!((beyond.status, beyond.bytes.len()), (200, 0));
    let backwards = operator.get("/v1/audit/export?from_seq=5&to_seq=4").await;
    assert_eq!(
        (backwards.status, backwards.bytes.len()),
        (200, 0),
        "an empty range"
    );
    for (query, field) in [
        ("from_seq=0", "from_seq"),
        ("from_seq=x", "from_seq"),
        ("since=3", "since"),
    ] {
        let refused = operator.get(&format!("/v1/audit/export?{query}")).await;
        assert_eq!(
            (refused.status, refused.field()),
            (400, field.to_string()),
            "{query}"
        );
    }

    server.stop("test over").await.unwrap();
    // What was streamed is exactly the stored log's first records.
    let stored = common::records(dir.path());
    let streamed = String::from_utf8(export.bytes.to_vec()).unwrap();
    assert!(stored.starts_with(&streamed), "the export is byte-exact");

    // The stream is a backup: it restores into a data directory the server continues.
    let backup = dir.path().join("backup.jsonl");
    std::fs::write(&backup, &export.bytes).unwrap();
    let restored = dir.path().join("restored");
    let trusted = format!("--trusted-key={}", neuron_key().public_b64());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_neuron"))
        .args(["restore", backup.to_str().unwrap(), "--data-dir"])
        .arg(&restored)
        .arg(&trusted)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let server = start(with_token(common::config(&restored))).await;
    let patient = Patient::from_seed("patient-0", [0x60; 32]);
    let again = client::handshake(&url(&server), source(6, 99), &patient, PROVIDER, NOW)
        .await
        .unwrap();
    assert_eq!(again.received.last().unwrap()["status"], "existing");
    server.stop("test over").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_asked_for_at_once_are_each_answered_with_one_that_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // Each request on a connection of its own, closed as the client likes: room for all.
    config.admin.max_connections = 1024;
    let server = start(config).await;
    let operator = Operator::of(&server, None);
    let before = operator.get("/v1/audit/head").await.json()["seq"]
        .as_u64()
        .unwrap();
    // 160 requests from 40 clients at once.
    let addr = server.admin_addr();
    let asking: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                let operator = Operator { addr, token: None };
                let mut answers = Vec::new();
                for _ in 0..4 {
                    let answer = operator.post("/v1/audit/checkpoint", json!({})).await;
                    answers.push((answer.status, answer.json()));
                }
                answers
            })
        })
        .collect();
    let mut seqs = std::collections::BTreeSet::new();
    for asked in asking {
        for (status, body) in asked.await.unwrap() {
            assert_eq!(status, 201, "{body}");
            let seq = body["seq"].as_u64().unwrap();
            // The checkpoint answered was written for this request or after it.
            assert!(seq > before, "{body}");
            assert_eq!(body["upto"].as_u64().unwrap(), seq - 1, "{body}");
            seqs.insert(seq);
        }
    }
    server.stop("test over").await.unwrap();
    let records = common::records(dir.path());
    let written = records.matches("\"kind\":\"log.checkpoint\"").count();
    assert!(seqs.len() <= 160 && written >= seqs.len(), "{seqs:?}");
}

/// Sends `GET /ready` on `stream` (kept open) and reads one answer: its status and body, or
/// `None` when the server closed the connection instead of answering.
async fn ready_on(stream: &mut tokio::net::TcpStream, addr: SocketAddr) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no length in {head:?}"));
        if body.len() >= length {
            let status = head.split(' ').nth(1).and_then(|code| code.parse().ok())?;
            return Some((status, body.to_string()));
        }
    }
}

#[tokio::test]
async fn the_operator_listener_answers_until_the_log_is_closed_then_closes() {
    use common::witness::{Behaviour, FakeWitness};
    // A witness that never answers holds the stop between its last checkpoint and the log's
    // close (the final round is bounded by the grace): what the operator listener does then is
    // what an orchestrator polling /ready sees while the server finishes.
    let log = neuron_key()
        .verifier_key(neuron_events::journal::DEMO_ORIGIN)
        .unwrap();
    let silent = FakeWitness::start("silent.example/w", 0x42, log, Behaviour::Silent).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.audit.witnesses = vec![silent.config()];
    // No periodic round before the stop; each call to the witness may take 10 s.
    config.audit.witness_interval_ms = 60_000;
    config.server.shutdown_grace_ms = 20_000;
    let server = start(config).await;
    let addr = server.admin_addr();
    let mut before_the_stop = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, body) = ready_on(&mut before_the_stop, addr).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let stopping = tokio::spawn(server.stop("test over"));
    // The final checkpoint has been written and sent to the witness: the log is not closed yet.
    for _ in 0..2000 {
        if *silent.requests.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(*silent.requests.lock().unwrap(), 1, "no final round");
    assert!(!stopping.is_finished());
    // A connection kept open from before the stop, and one opened now, are both answered.
    let answered = ready_on(&mut before_the_stop, addr).await;
    assert!(
        matches!(&answered, Some((503, body)) if body.contains("the server is stopping")),
        "{answered:?}"
    );
    let mut during_the_stop = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answered = ready_on(&mut during_the_stop, addr).await;
    assert!(
        matches!(&answered, Some((503, body)) if body.contains("the server is stopping")),
        "{answered:?}"
    );
    // A change now would land after the final checkpoint, signed by none: it is refused.
    let operator = Operator { addr, token: None };
    let refused = operator
        .post(
            "/v1/providers",
            json!({"npi": OTHER_PROVIDER, "name": "Dr. Too Late"}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.json()["error"]["code"].clone()),
        (503, json!("not_ready")),
        "{:?}",
        refused.bytes
    );
    stopping.await.unwrap().unwrap();
    let records = common::records(dir.path());
    assert!(!records.contains("Dr. Too Late"), "{records}");
    assert!(
        records
            .trim_end()
            .lines()
            .last()
            .is_some_and(|last| last.contains("\"kind\":\"log.checkpoint\"")),
        "a stopped server's log ends with its final checkpoint: {records}"
    );
    // Once the log is closed the listener is gone, and so are the connections it kept.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert_eq!(ready_on(&mut during_the_stop, addr).await, None);
}
