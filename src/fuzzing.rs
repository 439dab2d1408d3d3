//! What the fuzz targets of the `neuron` crate hold true of every input: each function takes
//! arbitrary bytes and panics when the code it exercises breaks its own rules. `fuzz/` runs them
//! under libFuzzer; `tests/fuzz_regressions.rs` runs every input the fuzzers ever found again.

use neuron_handshake::wire::{self, ClientMessage};

/// A frame either parses into a message within every field limit of SPEC §2.2, or is refused
/// with a short, printable reason (built from field names and numbers only, so it never echoes
/// what was sent).
pub fn wire_frames_keep_their_limits(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match wire::parse(text) {
        Ok(ClientMessage::Auth(auth)) => {
            for (field, value, limit) in [
                (
                    "patient_agent_id",
                    &auth.patient_agent_id,
                    wire::MAX_PATIENT_AGENT_ID,
                ),
                (
                    "patient_endpoint",
                    &auth.patient_endpoint,
                    wire::MAX_PATIENT_ENDPOINT,
                ),
            ] {
                assert!(
                    !value.is_empty() && value.len() <= limit,
                    "{field} of {} bytes",
                    value.len()
                );
                assert!(
                    !value.chars().any(char::is_control),
                    "{field} holds a control character"
                );
            }
            assert!(auth.token_payload.len() <= wire::MAX_TOKEN_PAYLOAD);
        }
        Ok(ClientMessage::ChallengeResponse { .. }) => {}
        Err(wire::Invalid(reason)) => {
            assert!(reason.len() < 200, "a refusal of {} bytes", reason.len());
            assert!(
                reason.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "{reason:?}"
            );
        }
    }
}

/// An operator listener's state over a fixed log, kept for every input of the fuzz target (its
/// log refuses writes, so no input changes what the next one sees).
pub struct Operator {
    runtime: tokio::runtime::Runtime,
    state: std::sync::Arc<crate::operator::OperatorState>,
}

impl Operator {
    /// The listener's state over `records` (encoded records, first sequence number 1).
    ///
    /// # Panics
    /// When no runtime or journal can be started: there is nothing to fuzz then.
    pub fn over(records: Vec<Vec<u8>>) -> Operator {
        use std::sync::Arc;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("a runtime for fuzzing: {error}"));
        let mut views = neuron_projections::Views::serving();
        let mut stored = Vec::new();
        for (index, bytes) in records.into_iter().enumerate() {
            if let Ok(record) = neuron_events::Record::decode(&bytes) {
                views.apply(&record);
            }
            stored.push((index as u64 + 1, bytes));
        }
        let log = neuron_events::MemoryLog::from_records(stored)
            .unwrap_or_else(|error| panic!("the fuzzing log: {error}"));
        let clock = neuron_events::SteppingClock::new(
            neuron_events::Timestamp::saturating_from_millis(1_767_225_600_000),
            250,
        );
        let state = runtime.block_on(async {
            crate::operator::OperatorState::offline(views, log, Arc::new(clock))
                .unwrap_or_else(|error| panic!("a journal for fuzzing: {error}"))
        });
        let state = Arc::new(state);
        Operator { runtime, state }
    }

    /// Whatever request reaches the operator listener, it gets an answer `openapi.json`
    /// documents for its route (404 or 405 for none), a JSON error body naming a code when it is
    /// refused, and no panic. The first byte picks the method, the second where the rest splits
    /// into the request line's target plus header lines, and the body.
    pub fn requests_get_documented_answers(&self, data: &[u8]) {
        use warp::http::{HeaderMap, HeaderName, HeaderValue, Method};
        let [method, split, rest @ ..] = data else {
            return;
        };
        let method = match method % 5 {
            0 => Method::GET,
            1 => Method::POST,
            2 => Method::DELETE,
            3 => Method::PUT,
            _ => Method::HEAD,
        };
        let cut = usize::from(*split).min(rest.len());
        let (head, body) = rest.split_at(cut);
        let head = String::from_utf8_lossy(head);
        let (target, header_lines) = head.split_once('\n').unwrap_or((&head, ""));
        let target = format!("/{}", target.trim_start_matches('/'));
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:3001"));
        for line in header_lines.lines() {
            if let Some((name, value)) = line.split_once(':') {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.trim().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                ) {
                    headers.insert(name, value);
                }
            }
        }
        let Ok(uri) = target.parse::<warp::http::Uri>() else {
            return;
        };
        let (status, answer) = self.runtime.block_on(crate::operator::answer_offline(
            &self.state,
            method.clone(),
            &uri.to_string(),
            headers,
            body.to_vec(),
        ));
        let status = status.as_u16();
        match crate::operator::resolve(method.as_str(), uri.path()) {
            crate::operator::Resolved::Route(route, _) => {
                let documented = documented_statuses(route.path, method.as_str());
                assert!(
                    documented.contains(&status.to_string()),
                    "{method} {uri} answered {status}, not documented for {}",
                    route.path
                );
            }
            _ => assert!(
                [403, 404, 405, 421].contains(&status),
                "{method} {uri}: {status} where no route matches"
            ),
        }
        if status >= 400 && !answer.is_empty() {
            let error: serde_json::Value = serde_json::from_slice(&answer)
                .unwrap_or_else(|_| panic!("{status} without a JSON error body"));
            assert!(
                error["error"]["code"].is_string() && error["error"]["message"].is_string(),
                "{error}"
            );
        }
    }
}

/// The statuses `openapi.json` documents for an operation.
fn documented_statuses(path: &str, method: &str) -> Vec<String> {
    use std::sync::OnceLock;
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    let document =
        DOCUMENT.get_or_init(|| serde_json::from_str(crate::operator::OPENAPI).unwrap_or_default());
    document["paths"][path][method.to_lowercase()]["responses"]
        .as_object()
        .map(|responses| responses.keys().cloned().collect())
        .unwrap_or_default()
}
