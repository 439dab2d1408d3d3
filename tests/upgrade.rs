//! The handshake port's HTTP exchange, over plain sockets (SPEC §2, §2.5): what every request that
//! is not a well-formed upgrade is answered with, that each answer ends its connection (one attempt
//! per connection: no keep-alive, no second request), and that an upgrade gets its 101 with the
//! accept key of RFC 6455 and has a frame sent right behind its request read. Written against the
//! hand-written exchange, kept when hyper and warp took it over (issue 20).

mod common;

use std::time::Duration;

use common::*;
use neuron_events::testing::fixed_clock;
use neuron_events::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A request head from its lines.
fn head(lines: &[&str]) -> Vec<u8> {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n\r\n");
    text.into_bytes()
}

fn upgrade(path: &str) -> Vec<u8> {
    head(&[
        &format!("GET {path} HTTP/1.1"),
        "Host: 127.0.0.1",
        "Upgrade: WebSocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Version: 13",
        &format!("Sec-WebSocket-Key: {KEY}"),
    ])
}

/// Sends `bytes` on a new connection and reads until the server closes it (generously bounded):
/// what the server sent, and whether it closed.
async fn exchange(server: &neuron::server::Server, bytes: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut received))
        .await
        .is_ok();
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

/// The status code of an HTTP answer (an HTTP/1.0 request may be answered in its version).
fn status(answer: &str) -> Option<u16> {
    let rest = answer
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| answer.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

/// A header's value in an answer, by case-insensitive name.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = answer.split_once("\r\n\r\n")?;
    head.lines().skip(1).find_map(|line| {
        let (found, value) = line.split_once(':')?;
        found.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

/// The records of a stopped server's log that belong to a session.
fn session_records(dir: &std::path::Path) -> Vec<Record> {
    records(dir)
        .lines()
        .map(|line| Record::decode(line.as_bytes()).unwrap())
        .filter(|record| record.session.is_some())
        .collect()
}

#[tokio::test]
async fn every_request_that_is_not_an_upgrade_gets_its_status_and_its_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path()), fixed_clock(), 51).await;
    let mut long = b"GET /ws/handshake HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 9 * 1024));
    long.extend_from_slice(b"\r\n\r\n");
    let version = |version: &str| {
        head(&[
            &format!("GET /ws/handshake {version}"),
            "Host: x",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Key: {KEY}"),
        ])
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("another path", upgrade("/elsewhere"), 404),
        ("a record path", upgrade("/log/records"), 404),
        (
            "a POST",
            head(&[
                "POST /ws/handshake HTTP/1.1",
                "Host: x",
                "Content-Length: 0",
            ]),
            405,
        ),
        ("not HTTP", b"not http at all\r\n\r\n".to_vec(), 400),
        (
            "no upgrade",
            head(&["GET /ws/handshake HTTP/1.1", "Host: x"]),
            400,
        ),
        (
            "version 8",
            head(&[
                "GET /ws/handshake HTTP/1.1",
                "Host: x",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 8",
                &format!("Sec-WebSocket-Key: {KEY}"),
            ]),
            426,
        ),
        (
            "no key",
            head(&[
                "GET /ws/handshake HTTP/1.1",
                "Host: x",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        ("HTTP/1.0", version("HTTP/1.0"), 400),
        ("a 9 KiB header", long, 431),
        (
            "a checkpoint with a parameter",
            head(&["GET /log/checkpoint?x=1 HTTP/1.1", "Host: x"]),
            400,
        ),
        (
            "a consistency proof without its sizes",
            head(&["GET /log/consistency HTTP/1.1", "Host: x"]),
            400,
        ),
        (
            "a POST of the checkpoint",
            head(&[
                "POST /log/checkpoint HTTP/1.1",
                "Host: x",
                "Content-Length: 0",
            ]),
            405,
        ),
    ];
    for (what, request, expected) in cases {
        let (answer, closed) = exchange(&server, &request).await;
        assert_eq!(status(&answer), Some(expected), "{what}: {answer}");
        assert!(closed, "{what}: the connection stays open after {answer}");
        match expected {
            405 => assert_eq!(header(&answer, "allow"), Some("GET"), "{what}: {answer}"),
            426 => assert_eq!(
                header(&answer, "sec-websocket-version"),
                Some("13"),
                "{what}: {answer}"
            ),
            _ => {}
        }
    }
    server.stop("test over").await.unwrap();
    // None of them was a session: no record but the server's own.
    let sessions = session_records(dir.path());
    assert!(sessions.is_empty(), "{sessions:?}");
}

#[tokio::test]
async fn a_connection_is_one_attempt_a_second_request_on_it_is_never_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path()), fixed_clock(), 52).await;
    let two = [upgrade("/elsewhere"), upgrade("/elsewhere")].concat();
    let (answer, closed) = exchange(&server, &two).await;
    assert!(closed, "{answer}");
    assert_eq!(status(&answer), Some(404), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(header(&answer, "connection"), Some("close"), "{answer}");
    server.stop("test over").await.unwrap();
}

#[tokio::test]
async fn an_upgrade_gets_its_101_and_a_frame_sent_behind_the_request_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path()), fixed_clock(), 53).await;
    // The request and a masked binary frame in one write: the session reads the frame (a binary
    // frame is INVALID_MESSAGE, close 4002), so the bytes behind the head reached the WebSocket.
    let frame = [0x82, 0x83, 1, 2, 3, 4, b'x' ^ 1, b'y' ^ 2, b'z' ^ 3];
    let (answer, closed) = exchange(
        &server,
        &[upgrade("/ws/handshake"), frame.to_vec()].concat(),
    )
    .await;
    assert!(closed, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    // RFC 6455's own example of the accept key.
    assert_eq!(
        header(&answer, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{answer}"
    );
    // Switching, and nothing else: not also closing.
    assert_eq!(
        header(&answer, "connection").map(str::to_ascii_lowercase),
        Some("upgrade".to_string()),
        "{answer}"
    );
    assert!(answer.contains("INVALID_MESSAGE"), "{answer}");
    server.stop("test over").await.unwrap();
    let kinds: Vec<&str> = session_records(dir.path())
        .iter()
        .map(|record| record.event.kind())
        .collect();
    assert_eq!(
        kinds,
        ["connection.accepted", "connection.handshake_failed"],
        "one session, failed on its frame"
    );
}
