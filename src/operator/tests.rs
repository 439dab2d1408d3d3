//! Unit tests of the operator API's parts: the served document, the route table, tokens, and the
//! answers when the log cannot be written.

mod parts {
    use serde_json::{json, Value};
    use warp::http::{HeaderMap, StatusCode};

    use super::super::guard::{authenticate, Caller};
    use super::super::openapi::openapi_document;
    use super::super::{new_token, resolve, Endpoint, Resolved};

    #[test]
    fn the_served_document_asks_for_tokens_only_when_the_listener_does() {
        let document = |tokens| -> Value {
            serde_json::from_slice(&openapi_document(tokens)).unwrap_or_default()
        };
        let (with, without) = (document(true), document(false));
        let export = |document: &Value| document["paths"]["/v1/audit/export"]["get"].clone();
        assert_eq!(export(&with)["security"][0]["bearer"], json!([]));
        assert!(export(&with)["responses"]["401"].is_object());
        assert!(export(&without).get("security").is_none());
        assert!(export(&without)["responses"].get("401").is_none());
        assert!(export(&without)["responses"]["421"].is_object());
        assert_eq!(without["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn openapi_json_lists_every_error_code_the_listener_answers_with() {
        use super::super::errors::Code;
        let document: Value = serde_json::from_slice(&openapi_document(false)).unwrap_or_default();
        let listed: Vec<&str> = document["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .map(|codes| codes.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let answered: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(listed, answered);
        for code in Code::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn paths_resolve_to_their_routes_and_parameters() {
        let Resolved::Route(route, parameter) = resolve("POST", "/v1/relationships/abc/terminate")
        else {
            panic!("terminate did not resolve");
        };
        assert_eq!(route.endpoint, Endpoint::Terminate);
        assert_eq!(parameter.as_deref(), Some("abc"));
        assert!(matches!(
            resolve("GET", "/v1/relationships"),
            Resolved::Route(route, None) if route.endpoint == Endpoint::Relationships
        ));
        assert_eq!(
            resolve("PUT", "/v1/providers"),
            Resolved::WrongMethod(vec!["GET", "POST"])
        );
        assert_eq!(resolve("GET", "/v1/relationships/"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/v1/relationships/a/b"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/v1"), Resolved::NotFound);
    }

    #[test]
    fn a_token_is_accepted_by_its_hash_only() {
        let (token, hash) = new_token().unwrap_or_default();
        assert!(token.starts_with("neuron_"));
        let tokens = vec![blake3::Hash::from_hex(&hash).unwrap_or(blake3::hash(b"x"))];
        let mut headers = HeaderMap::new();
        assert_eq!(
            authenticate(&tokens, &headers)
                .err()
                .map(|r| r.code.status()),
            Some(StatusCode::UNAUTHORIZED)
        );
        headers.insert(
            "authorization",
            format!("Bearer {token}x")
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        assert_eq!(
            authenticate(&tokens, &headers)
                .err()
                .map(|r| r.code.status()),
            Some(StatusCode::FORBIDDEN)
        );
        headers.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        assert!(
            matches!(authenticate(&tokens, &headers), Ok(Caller::Token(id)) if hash.starts_with(&id))
        );
        assert!(matches!(
            authenticate(&[], &HeaderMap::new()),
            Ok(Caller::Open)
        ));
    }
}

mod failing_log {
    use std::sync::Arc;

    use neuron_events::event::EventData;
    use neuron_events::testing::fixed_clock;
    use neuron_events::{Event, MemoryLog, Record};
    use neuron_projections::Views;
    use serde_json::Value;
    use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};

    use super::super::{answer_offline, OperatorState};

    /// A request as an operator's tool sends it (to the listener's address, a change as JSON),
    /// answered as the listener would: its status and JSON body.
    async fn call(
        state: &OperatorState,
        method: Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:3001"));
        if method == Method::POST {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
        }
        let (status, bytes) =
            answer_offline(state, method, path, headers, body.as_bytes().to_vec()).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn state_over(views: Views, log: MemoryLog) -> OperatorState {
        OperatorState::offline(views, log, Arc::new(fixed_clock())).unwrap()
    }

    #[tokio::test]
    async fn relationship_details_are_read_from_the_log_and_an_unreadable_record_is_503() {
        use neuron_events::event::RelationshipEstablished;
        let id = "6f1c3a52-8d4e-4b7a-9c2f-0e5d6a7b8c9d";
        let event = Event::in_session(
            "s1",
            EventData::RelationshipEstablished(RelationshipEstablished {
                relationship_id: id.into(),
                patient_agent_id: "patient-agent-ada".into(),
                provider_npi: "1234567893".into(),
                patient_public_key: neuron_events::b64::encode([7u8; 32]),
                patient_endpoint: "wss://ada.example/agent".into(),
                consented_actions: vec!["read:observations".into()],
            }),
        );
        let at = neuron_events::Timestamp::saturating_from_millis(1_795_687_200_000);
        let bytes =
            neuron_events::record::encode(1, at, &event, &neuron_events::Digest::GENESIS).unwrap();
        let mut views = Views::serving();
        views.apply(&Record::decode(&bytes).unwrap());
        let log = MemoryLog::from_records(vec![(1, bytes)]).unwrap();

        let state = state_over(views.clone(), log);
        let (status, body) =
            call(&state, Method::GET, &format!("/v1/relationships/{id}"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["patient_endpoint"], "wss://ada.example/agent");
        assert_eq!(body["consented_actions"][0], "read:observations");
        assert_eq!(body["established_by_session"], "s1");
        let (status, body) = call(&state, Method::GET, "/v1/relationships", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["relationships"][0]["id"], id);

        // The views name a record the log does not give back.
        let state = state_over(views, MemoryLog::new());
        for path in [
            format!("/v1/relationships/{id}"),
            "/v1/relationships".into(),
        ] {
            let (status, body) = call(&state, Method::GET, &path, "").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(body["error"]["code"], "log_unreadable", "{path}");
        }
    }

    #[tokio::test]
    async fn export_streams_beyond_the_limit_are_refused_until_one_ends() {
        let state = state_over(Views::default(), MemoryLog::new());
        let held: Vec<_> = (0..state.max_exports)
            .map(|_| state.exports.clone().try_acquire_owned().unwrap())
            .collect();
        let (status, body) = call(&state, Method::GET, "/v1/audit/export", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "exports_busy");
        drop(held);
        let (status, _) = call(&state, Method::GET, "/v1/audit/export", "").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_written_makes_the_server_unready_and_changes_fail() {
        let state = state_over(Views::default(), MemoryLog::new());
        let (status, _) = call(&state, Method::GET, "/ready", "").await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/providers",
            r#"{"npi":"1003000126","name":"Dr. Who"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "log_unavailable");
        assert!(state.views().providers.get("1003000126").is_none());

        let (status, body) = call(&state, Method::GET, "/ready", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "not_ready");
        let (status, body) = call(&state, Method::GET, "/health", "").await;
        assert_eq!(status, StatusCode::OK, "the process is alive");
        assert_eq!(body["log_writable"], false);
        let (status, body) = call(&state, Method::POST, "/v1/audit/checkpoint", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "log_unavailable");
    }
}
