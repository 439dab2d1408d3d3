//! The server under hostile and careless clients (SPEC §7), each scenario against a real server on
//! loopback with plain sockets where a well-behaved client library would not do what they do.
//! Each asserts the invariants rather than timings: one terminal record per session in the log,
//! queue and live counts back to 0, the slot free for the next client, the stop finishing.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use neuron::server::Server;
use neuron::tools::client;
use neuron_events::testing::fixed_clock;
use neuron_events::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A loopback source address of the test's own, with a fixed port so that records naming the peer
/// are the same every run (the server's port differs, so the connections do too).
fn source(test: u8, client: u8) -> SocketAddr {
    SocketAddr::from(([127, 30, test, client], 42_000))
}

/// A plain TCP connection from `from`.
async fn connect(to: SocketAddr, from: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(from).unwrap();
    socket.connect(to).await.unwrap()
}

fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// Reads until the peer closes (generously bounded): what it sent.
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut received)).await;
    received
}

/// Waits (generously) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..3000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// Every record of a stopped server's log.
fn decoded(dir: &std::path::Path) -> Vec<Record> {
    records(dir)
        .lines()
        .map(|line| Record::decode(line.as_bytes()).unwrap())
        .collect()
}

/// How many terminal records each session has.
fn terminals(records: &[Record]) -> BTreeMap<String, usize> {
    let mut sessions = BTreeMap::new();
    for record in records {
        if let Some(session) = &record.session {
            let count = sessions.entry(session.clone()).or_insert(0);
            if record.event.is_terminal() {
                *count += 1;
            }
        }
    }
    sessions
}

fn assert_one_terminal_each(records: &[Record]) {
    let sessions = terminals(records);
    assert!(!sessions.is_empty(), "no session at all");
    let wrong: Vec<_> = sessions.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        wrong.is_empty(),
        "sessions without exactly one end: {wrong:?}"
    );
}

/// A request to the operator listener; its status and body.
async fn operator(server: &Server, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.admin_addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let reply = String::from_utf8(read_to_end(&mut stream).await).unwrap();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn http(method: &str, path: &str, host: &str, headers: &[&str], body: &str) -> String {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    request
}

#[tokio::test]
async fn clients_that_leave_the_queue_free_their_places_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    config.websocket.max_queued = 3;
    let server = start(config, fixed_clock(), 31).await;
    let addr = server.local_addr();
    let mut holder = client::connect(&url(&server), Some(source(1, 1)))
        .await
        .unwrap();
    until(&server, |server| server.active_sessions().len() == 1).await;

    // Three wait, one at a time so that their records come in a fixed order.
    let mut waiting = Vec::new();
    for client in 2..=4 {
        let mut stream = connect(addr, source(1, client)).await;
        stream
            .write_all(&upgrade_request("/ws/handshake"))
            .await
            .unwrap();
        until_queued(&server, waiting.len() + 1).await;
        waiting.push(stream);
    }
    // The queue is full: the next gets 503 at once.
    let mut refused = connect(addr, source(1, 5)).await;
    refused
        .write_all(&upgrade_request("/ws/handshake"))
        .await
        .unwrap();
    let answer = String::from_utf8(read_to_end(&mut refused).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");

    // They give up, one by one: each place is free at once, without a restart.
    while let Some(stream) = waiting.pop() {
        drop(stream);
        until_queued(&server, waiting.len()).await;
    }
    assert_eq!(server.views().queue.len(), 0);

    // A new patient queues (it is not refused), and gets the slot when the holder leaves.
    let queued_url = url(&server);
    let patient = tokio::spawn(async move {
        client::handshake(&queued_url, Some(source(1, 6)), &ada(), PROVIDER, NOW).await
    });
    until_queued(&server, 1).await;
    holder.close(None).await.unwrap();
    assert!(patient.await.unwrap().unwrap().completed());
    eventually("every connection closed", || server.open_connections() == 0).await;
    server.stop("test over").await.unwrap();
    let records = decoded(dir.path());
    assert_one_terminal_each(&records);
    lock_log("hostile__clients_leave_the_queue", dir.path());
}

#[tokio::test]
async fn clients_that_vanish_at_every_moment_leave_one_terminal_record_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = start(config, fixed_clock(), 32).await;
    let addr = server.local_addr();
    let vanishing: Vec<_> = (0..150u32)
        .map(|index| {
            let from = SocketAddr::from(([127, 30, 2, (index % 200) as u8 + 1], 0));
            let from = SocketAddr::new(from.ip(), 43_000 + index as u16);
            tokio::spawn(async move {
                let mut stream = connect(addr, from).await;
                let request = upgrade_request("/ws/handshake");
                match index % 5 {
                    // Connects and leaves.
                    0 => {}
                    // Leaves mid-header.
                    1 => {
                        let _ = stream.write_all(&request[..20]).await;
                    }
                    // Sends the upgrade and leaves at once.
                    2 => {
                        let _ = stream.write_all(&request).await;
                    }
                    // Leaves after its 101, before auth.
                    3 => {
                        let _ = stream.write_all(&request).await;
                        let mut head = [0u8; 64];
                        let _ = stream.read(&mut head).await;
                    }
                    // Leaves mid-frame.
                    _ => {
                        let _ = stream.write_all(&request).await;
                        let mut head = [0u8; 64];
                        let _ = stream.read(&mut head).await;
                        let _ = stream.write_all(&[0x81, 0xfe, 0x01]).await;
                    }
                }
            })
        })
        .collect();
    for client in vanishing {
        client.await.unwrap();
    }
    eventually("every session ended", || {
        server.active_sessions().is_empty()
    })
    .await;
    eventually("every connection closed", || server.open_connections() == 0).await;
    assert_eq!(server.views().queue.len(), 0);
    server.stop("test over").await.unwrap();
    let records = decoded(dir.path());
    assert_one_terminal_each(&records);
    assert!(
        terminals(&records).len() >= 60,
        "the upgrades became sessions"
    );

    // Nothing was left live for the next start to mark interrupted.
    let server = start(common::config(dir.path()), fixed_clock(), 33).await;
    assert_eq!(server.views().sessions.tally().interrupted, 0);
    server.stop("test over").await.unwrap();
}

/// A masked client ping frame with a 125-byte payload (RFC 6455 §5.5.2).
fn ping() -> Vec<u8> {
    let mut frame = vec![0x89, 0x80 | 125, 1, 2, 3, 4];
    frame.extend((0..125u8).map(|index| b'p' ^ [1, 2, 3, 4][usize::from(index % 4)]));
    frame
}

#[tokio::test]
async fn a_client_that_never_reads_loses_its_slot_when_its_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    config.websocket.auth_timeout_ms = 300;
    config.websocket.write_timeout_ms = 300;
    config.server.shutdown_grace_ms = 1000;
    let server = start(config, fixed_clock(), 34).await;
    // The flooder reads its 101, then only sends pings, never reading a pong, through a small
    // receive buffer.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(source(3, 1)).unwrap();
    let mut flooder = socket.connect(server.local_addr()).await.unwrap();
    flooder
        .write_all(&upgrade_request("/ws/handshake"))
        .await
        .unwrap();
    let mut head = [0u8; 256];
    let read = flooder.read(&mut head).await.unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 101 "));
    let flooding = tokio::spawn(async move {
        let frame = ping();
        while flooder.write_all(&frame).await.is_ok() {}
        flooder
    });
    // The next patient waits, and gets the slot once the flooder's session has ended, whatever
    // its socket is doing.
    let done = client::handshake(&url(&server), Some(source(3, 2)), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(done.completed(), "{done:?}");
    // A stop finishes with the flooder still connected (generous bound, not a timing).
    tokio::time::timeout(Duration::from_secs(30), server.stop("test over"))
        .await
        .expect("the stop finished")
        .unwrap();
    flooding.abort();
    let records = decoded(dir.path());
    assert_one_terminal_each(&records);
    assert!(
        records.iter().any(|record| matches!(
            &record.event,
            neuron_events::EventData::ConnectionTimeout(timeout)
                if timeout.code == neuron_events::event::ErrorCode::AuthTimeout
        )),
        "the flooder's session timed out"
    );
}

#[tokio::test]
async fn idle_and_unfinished_requests_are_closed_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.server.header_timeout_ms = 300;
    let server = start(config, fixed_clock(), 35).await;
    let mut silent = Vec::new();
    for client in 0..40u8 {
        let mut stream = connect(server.local_addr(), source(4, client + 1)).await;
        if client % 2 == 1 {
            stream
                .write_all(b"GET /ws/handshake HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        silent.push(stream);
    }
    for _ in 0..5 {
        silent.push(TcpStream::connect(server.admin_addr()).await.unwrap());
    }
    // Each is closed by the server (generously bounded wait for the end of each stream).
    for stream in &mut silent {
        let received = read_to_end(stream).await;
        assert!(
            received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
            "{received:?}"
        );
    }
    eventually("every connection closed", || server.open_connections() == 0).await;
    assert!(server.active_sessions().is_empty());

    // The operator listener still answers.
    let (status, _) = operator(
        &server,
        &http("GET", "/health", &server.admin_addr().to_string(), &[], ""),
    )
    .await;
    assert_eq!(status, 200);

    // An unfinished request does not hold a stop up.
    let mut unfinished = connect(server.local_addr(), source(4, 99)).await;
    unfinished.write_all(b"GET /ws/hand").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), server.stop("test over"))
        .await
        .expect("the stop finished")
        .unwrap();
    // None sent a whole request, so none became a session or took a queue place (SPEC §2.5):
    // the log holds no session at all.
    let records = decoded(dir.path());
    assert!(
        records.iter().all(|record| record.session.is_none()),
        "{records:?}"
    );
}

#[tokio::test]
async fn the_operator_listener_closes_idle_keep_alives_and_stalled_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.server.header_timeout_ms = 300;
    let server = start(config, fixed_clock(), 36).await;
    let host = server.admin_addr().to_string();

    // A request answered on a keep-alive connection, then nothing more: closed once idle for the
    // header timeout (a wait bounded generously, so that a never would fail the test).
    let mut idle = TcpStream::connect(server.admin_addr()).await.unwrap();
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answered = read_to_end(&mut idle).await;
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    assert!(
        idle.read(&mut [0; 1]).await.unwrap() == 0,
        "the idle connection was closed by the server"
    );

    // A change whose body stops half-way: refused and closed, not held open.
    let mut stalled = TcpStream::connect(server.admin_addr()).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/providers HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"npi\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answered = read_to_end(&mut stalled).await;
    assert!(
        answered.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    let mut rest = [0; 1];
    assert!(
        matches!(stalled.read(&mut rest).await, Ok(0) | Err(_)),
        "the stalled connection was closed by the server"
    );

    // A route that takes no body answers without waiting for one, and closes the connection
    // rather than wait for the rest of it.
    let mut ignored = TcpStream::connect(server.admin_addr()).await.unwrap();
    ignored
        .write_all(
            format!("GET /health HTTP/1.1\r\nHost: {host}\r\nContent-Length: 50\r\n\r\n{{")
                .as_bytes(),
        )
        .await
        .unwrap();
    let answered = read_to_end(&mut ignored).await;
    assert!(
        answered.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    assert!(
        matches!(ignored.read(&mut rest).await, Ok(0) | Err(_)),
        "the connection was closed by the server"
    );
    server.stop("test over").await.unwrap();
}

#[tokio::test]
async fn a_flood_while_the_queue_is_full_costs_a_handful_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.websocket.max_concurrent_handshakes = 1;
    config.websocket.max_queued = 1;
    let server = start(config, fixed_clock(), 36).await;
    let addr = server.local_addr();
    let _holder = client::connect(&url(&server), Some(source(5, 1)))
        .await
        .unwrap();
    let mut queued = connect(addr, source(5, 2)).await;
    queued
        .write_all(&upgrade_request("/ws/handshake"))
        .await
        .unwrap();
    until_queued(&server, 1).await;
    for client in 0..200u32 {
        let from = SocketAddr::new(
            std::net::IpAddr::from([127, 30, 6, (client % 25) as u8 + 1]),
            44_000 + client as u16,
        );
        let mut stream = connect(addr, from).await;
        let _ = stream.write_all(&upgrade_request("/ws/handshake")).await;
        let answer = read_to_end(&mut stream).await;
        assert!(answer.starts_with(b"HTTP/1.1 503 ") || answer.is_empty());
    }
    server.stop("test over").await.unwrap();
    let records = decoded(dir.path());
    let summaries: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.event {
            neuron_events::EventData::ConnectionRefused(refused) => Some(refused),
            _ => None,
        })
        .collect();
    assert!(
        (1..=5).contains(&summaries.len()),
        "{} summaries",
        summaries.len()
    );
    assert_eq!(
        summaries.iter().map(|summary| summary.count).sum::<u64>(),
        200
    );
    assert!(summaries.iter().all(|summary| summary.peers.len() <= 16));
    assert!(
        records.len() < 20,
        "{} records for 200 refusals",
        records.len()
    );
}

#[tokio::test]
async fn the_operator_api_refuses_browsers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.admin.allowed_origins = vec!["https://console.example".into()];
    let server = start(config, fixed_clock(), 37).await;
    let host = server.admin_addr().to_string();
    let add = r#"{"npi":"1003000126","name":"Dr. Who"}"#;
    let cases = [
        // A page of another site posting a form-like body (no preflight needed).
        (
            http(
                "POST",
                "/v1/providers",
                &host,
                &["Origin: http://evil.example", "Content-Type: text/plain"],
                add,
            ),
            403,
        ),
        // A change not declared JSON.
        (
            http(
                "POST",
                "/v1/providers",
                &host,
                &["Content-Type: text/plain"],
                add,
            ),
            415,
        ),
        // DNS rebinding: the page's own name in Host.
        (
            http("GET", "/v1/audit/export", "rebound.evil.example", &[], ""),
            421,
        ),
        (
            http("GET", "/health", "rebound.evil.example:3001", &[], ""),
            421,
        ),
    ];
    for (request, status) in cases {
        assert_eq!(operator(&server, &request).await.0, status, "{request}");
    }
    assert!(
        server.views().providers.get("1003000126").is_none(),
        "nothing was added"
    );
    let local = format!("localhost:{}", server.admin_addr().port());
    let allowed = http(
        "POST",
        "/v1/providers",
        &local,
        &[
            "Origin: https://console.example",
            "Content-Type: application/json",
        ],
        add,
    );
    assert_eq!(operator(&server, &allowed).await.0, 201);
    server.stop("test over").await.unwrap();
}

/// Runs `handshake` up to its challenge, lets `change` happen, then answers: the client's
/// transcript.
async fn changed_mid_handshake(
    server: &Server,
    from: SocketAddr,
    change: String,
    expected_status: u16,
) -> client::Transcript {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let patient = ada();
    let mut connection = client::connect(&url(server), Some(from)).await.unwrap();
    let auth = patient.auth_frame(&patient.claims(PROVIDER, NOW - 60, NOW + 3600));
    connection.send(Message::text(auth)).await.unwrap();
    let challenge: serde_json::Value = match connection.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a challenge, got {other:?}"),
    };
    assert_eq!(operator(server, &change).await.0, expected_status);
    let answer = patient.answer(&challenge).unwrap();
    let mut transcript = client::converse(&mut connection, vec![Message::text(answer)], None).await;
    transcript.received.insert(0, challenge);
    transcript
}

#[tokio::test]
async fn a_provider_removed_mid_handshake_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path()), fixed_clock(), 38).await;
    let host = server.admin_addr().to_string();
    let remove = http(
        "DELETE",
        &format!("/v1/providers/{PROVIDER}"),
        &host,
        &[],
        "",
    );
    let transcript = changed_mid_handshake(&server, source(7, 1), remove, 200).await;
    let last = transcript.received.last().unwrap();
    assert_eq!(
        (last["code"].as_str(), transcript.close_code),
        (Some("PROVIDER_NOT_FOUND"), Some(4003))
    );
    until(&server, |server| server.active_sessions().is_empty()).await;
    server.stop("test over").await.unwrap();
    assert!(server_less_views(dir.path()).relationships.is_empty());
    lock_log("hostile__provider_removed_mid_handshake", dir.path());
}

#[tokio::test]
async fn a_relationship_terminated_mid_handshake_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path()), fixed_clock(), 39).await;
    let first = client::handshake(&url(&server), Some(source(8, 1)), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    let id = first.received.last().unwrap()["relationship_id"]
        .as_str()
        .unwrap()
        .to_string();
    let host = server.admin_addr().to_string();
    let terminate = http(
        "POST",
        &format!("/v1/relationships/{id}/terminate"),
        &host,
        &["Content-Type: application/json"],
        &format!(r#"{{"provider_npi":"{PROVIDER}","reason":"patient moved away"}}"#),
    );
    let transcript = changed_mid_handshake(&server, source(8, 2), terminate, 200).await;
    let last = transcript.received.last().unwrap();
    assert_eq!(
        (last["code"].as_str(), transcript.close_code),
        (Some("CONSENT_FAILED"), Some(4003))
    );
    until(&server, |server| server.active_sessions().is_empty()).await;
    server.stop("test over").await.unwrap();
    // No fresh relationship was made from the consent shown before the termination.
    let views = server_less_views(dir.path());
    assert_eq!(views.relationships.counts(), (0, 1));
    lock_log("hostile__relationship_terminated_mid_handshake", dir.path());
}

/// The views folded from a stopped server's log.
fn server_less_views(dir: &std::path::Path) -> neuron_projections::Views {
    neuron_projections::replay(decoded(dir), neuron_projections::Until::End)
}

/// A masked client frame: `first` (FIN, RSV bits, opcode) and `payload`.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![first, if masked { 0x80 } else { 0 } | payload.len() as u8];
    if masked {
        frame.extend(mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    } else {
        frame.extend(payload);
    }
    frame
}

/// The close code of the close frame a server sent after its 101, if it sent one.
fn close_code_sent(received: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(received);
    let head = text.find("\r\n\r\n")? + 4;
    let frames = &received[head..];
    (frames.first() == Some(&0x88) && frames.len() >= 4)
        .then(|| u16::from_be_bytes([frames[2], frames[3]]))
}

#[tokio::test]
async fn protocol_violations_get_the_close_rfc_6455_names_and_are_recorded_as_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path()), fixed_clock(), 36).await;
    let cases: [(&str, Vec<u8>, u16); 5] = [
        ("not UTF-8", frame(0x81, &[0xff, 0xfe, b'{'], true), 1007),
        ("RSV1 with no extension", frame(0xc1, b"{}", true), 1002),
        ("unmasked", frame(0x81, b"{}", false), 1002),
        ("a reserved data opcode", frame(0x83, b"{}", true), 1002),
        ("a fragmented ping", frame(0x09, b"", true), 1002),
    ];
    for (index, (what, bytes, expected)) in cases.iter().enumerate() {
        let mut stream = connect(server.local_addr(), source(9, index as u8 + 1)).await;
        stream
            .write_all(&upgrade_request("/ws/handshake"))
            .await
            .unwrap();
        stream.write_all(bytes).await.unwrap();
        let received = read_to_end(&mut stream).await;
        assert_eq!(
            close_code_sent(&received),
            Some(*expected),
            "{what}: {received:?}"
        );
    }
    server.stop("test over").await.unwrap();
    let records = decoded(dir.path());
    assert_one_terminal_each(&records);
    let closes: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.event {
            neuron_events::EventData::ConnectionClosed(closed) => Some(closed.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(closes.len(), cases.len());
    for (closed, (what, _, expected)) in closes.iter().zip(&cases) {
        assert_eq!(closed.by, neuron_events::event::ClosedBy::Server, "{what}");
        assert_eq!(closed.code, Some(*expected), "{what}");
        let reason = closed.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("not UTF-8") || reason.contains("WebSocket protocol violation"),
            "{what}: {reason}"
        );
    }
    lock_log("hostile__protocol_violations", dir.path());
}

/// Opens `count` connections from 127.0.0.1 that never finish a request: every second one sends
/// the start of an upgrade request and stops, the others send nothing.
async fn idle_sockets(to: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = TcpStream::connect(to).await.unwrap();
        if index % 2 == 1 {
            stream
                .write_all(b"GET /ws/handshake HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        sockets.push(stream);
    }
    sockets
}

/// Slowloris (races issue, item 10; SPEC §2.5, §7): idle and trickling sockets hold no queue
/// place, only a complete upgrade request does, and each is closed `header_timeout_ms` after
/// accept, queued or not; a patient arriving among a thousand of them from one peer is served.
#[tokio::test]
async fn idle_and_trickling_sockets_hold_no_queue_place_and_are_closed_from_accept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.server.header_timeout_ms = 1_000;
    config.websocket.max_queued = 100;
    config.websocket.queue_timeout_ms = 120_000;
    let header_timeout = Duration::from_millis(config.server.header_timeout_ms);
    let server = start(config, fixed_clock(), 38).await;
    let addr = server.local_addr();

    // 200 sockets, the first ten holding the slots: none takes a queue place.
    let opened = std::time::Instant::now();
    let mut sockets = idle_sockets(addr, 200).await;
    eventually("all 200 open", || server.open_connections() == 200).await;
    assert_eq!(
        server.views().queue.len(),
        0,
        "no socket without a whole request holds a queue place"
    );
    // A complete request among them is queued first in line.
    let mut complete = connect(addr, source(10, 1)).await;
    complete
        .write_all(&upgrade_request("/ws/handshake"))
        .await
        .unwrap();
    until_queued(&server, 1).await;
    assert_eq!(server.views().queue.position_of("session-1"), Some(1));
    drop(complete);
    until_queued(&server, 0).await;
    // Each closed by the server, none answered but with 408 or nothing, all within the header
    // timeout of its accept (bounded generously: queued from promotion, the last would wait 19
    // header timeouts).
    for stream in &mut sockets {
        let received = read_to_end(stream).await;
        assert!(
            received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
            "{received:?}"
        );
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after < header_timeout * 8,
        "all 200 closed {closed_after:?} after the first was accepted"
    );
    eventually("every connection closed", || server.open_connections() == 0).await;

    // A thousand from one peer, then a patient: it gets a queue place, and a slot once the
    // sockets holding the slots time out.
    let sockets = idle_sockets(addr, 1_000).await;
    eventually("all 1,000 open", || server.open_connections() == 1_000).await;
    let arrived = std::time::Instant::now();
    let patient = client::handshake(&url(&server), Some(source(10, 2)), &ada(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(patient.completed(), "{patient:?}");
    let served_after = arrived.elapsed();
    assert!(
        served_after < header_timeout * 8,
        "served {served_after:?} after it arrived"
    );
    drop(sockets);

    // More than 2 KiB of request while no slot is free: refused rather than held.
    let holders = idle_sockets(addr, 10).await;
    eventually("the slots held", || server.open_connections() == 10).await;
    let mut large = connect(addr, source(10, 3)).await;
    let padding = format!("X-Padding: {}\r\n\r\n", "a".repeat(3_000));
    let request = upgrade_request("/ws/handshake");
    large
        .write_all(&[&request[..request.len() - 2], padding.as_bytes()].concat())
        .await
        .unwrap();
    let answer = String::from_utf8(read_to_end(&mut large).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert!(answer.contains("2 KiB"), "{answer}");
    drop(holders);

    server.stop("test over").await.unwrap();
    let records = decoded(dir.path());
    assert_one_terminal_each(&records);
    // Two sessions: the complete request that left the queue, and the patient.
    assert_eq!(terminals(&records).len(), 2, "{records:?}");
}
