//! The HTTP exchange of the handshake port: a WebSocket upgrade request read and checked (RFC 6455
//! §4.2.1), answered 101, or refused and closed; and the log's public evidence (SPEC §3.5: the
//! latest checkpoint and consistency proofs), answered and closed. A connection is one attempt:
//! no keep-alive, no body, no pipelining. Pure: bytes in, bytes out.

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The largest request header accepted; a longer one is refused with 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The most of a request a connection that finds no free slot may send: it is held, parsed,
/// while the connection waits in the queue (SPEC §2.5). Legitimate upgrade requests are a few
/// hundred bytes.
pub const MAX_WAITING_REQUEST_BYTES: usize = 2 * 1024;

/// Headers read at most.
const MAX_HEADERS: usize = 32;

/// A well-formed upgrade request for the handshake path.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// Bytes the client sent after its header (the start of its first frame), to hand to the
    /// WebSocket.
    pub early: Vec<u8>,
}

/// What a well-formed request asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// A WebSocket upgrade of the handshake path.
    Upgrade(Upgrade),
    /// A read of the log's public evidence, or why its parameters are refused (400).
    Log(Result<LogRoute, String>),
}

/// The public evidence routes: never a record, only what lets a receipt's holder check that the
/// log still extends the tree it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRoute {
    /// `GET /log/checkpoint`: the latest signed checkpoint.
    Checkpoint,
    /// `GET /log/consistency?from=A&to=B`
    Consistency {
        /// The smaller tree.
        from: u64,
        /// The larger tree.
        to: u64,
    },
}

/// The paths of [`LogRoute`].
pub const LOG_CHECKPOINT: &str = "/log/checkpoint";
/// The path of the consistency proofs.
pub const LOG_CONSISTENCY: &str = "/log/consistency";

/// A plain-text answer with `Connection: close`.
pub fn text_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The parameters of `GET /log/consistency`: `from` and `to`, tree sizes, nothing else.
fn consistency_query(query: &str) -> Result<LogRoute, String> {
    let (mut from, mut to) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "from" => &mut from,
            "to" => &mut to,
            _ => return Err("unknown parameter: only from and to are taken".into()),
        };
        if slot.is_some() {
            return Err(format!("{name} is given twice"));
        }
        let size = value
            .parse::<u64>()
            .ok()
            .filter(|size| *size >= 1 && value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{name} must be a tree size (a whole number from 1)"))?;
        *slot = Some(size);
    }
    match (from, to) {
        (Some(from), Some(to)) => Ok(LogRoute::Consistency { from, to }),
        (None, _) => Err("from is required (a tree size from 1)".into()),
        (_, None) => Err("to is required (a tree size from 1)".into()),
    }
}

/// Why a request is refused: the status it is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not an HTTP request, or not a WebSocket upgrade.
    BadRequest(&'static str),
    /// 404: another path.
    NotFound,
    /// 405: another method than GET.
    MethodNotAllowed,
    /// 426: a WebSocket version other than 13.
    UpgradeRequired,
    /// 431: a header longer than [`MAX_HEADER_BYTES`].
    HeaderTooLarge,
    /// 431: a request longer than [`MAX_WAITING_REQUEST_BYTES`] from a connection that has to
    /// wait for a slot.
    TooLargeToWait,
    /// 503: no slot, no queue place, or the server is stopping.
    Unavailable {
        /// Seconds to wait before trying again.
        retry_after: u64,
    },
}

impl Refusal {
    /// The status line's code.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::UpgradeRequired => 426,
            Self::HeaderTooLarge | Self::TooLargeToWait => 431,
            Self::Unavailable { .. } => 503,
        }
    }

    /// The whole answer: a short text body, `Connection: close`, and the headers the status
    /// calls for.
    pub fn response(self) -> Vec<u8> {
        let (reason, body, extra) = match self {
            Self::BadRequest(why) => ("Bad Request", why, String::new()),
            Self::NotFound => ("Not Found", "no such path", String::new()),
            Self::MethodNotAllowed => (
                "Method Not Allowed",
                "a WebSocket upgrade is a GET",
                "Allow: GET\r\n".to_string(),
            ),
            Self::UpgradeRequired => (
                "Upgrade Required",
                "WebSocket version 13 is required",
                "Sec-WebSocket-Version: 13\r\n".to_string(),
            ),
            Self::HeaderTooLarge => (
                "Request Header Fields Too Large",
                "the request header is too large",
                String::new(),
            ),
            Self::TooLargeToWait => (
                "Request Header Fields Too Large",
                "a request that waits for a handshake slot may be at most 2 KiB",
                String::new(),
            ),
            Self::Unavailable { retry_after } => (
                "Service Unavailable",
                "no handshake slot available",
                format!("Retry-After: {retry_after}\r\n"),
            ),
        };
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            self.status(),
            body.len()
        )
        .into_bytes()
    }
}

/// The 101 that completes an upgrade.
pub fn switching_protocols(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|byte| *byte == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Reads the request in `buffer`: `Ok(None)` while its header is incomplete, the upgrade once it
/// is complete and valid for `path`, or why it is refused.
///
/// # Errors
/// The [`Refusal`] to answer with.
pub fn parse(buffer: &[u8], path: &str) -> Result<Option<Request>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEADER_BYTES => {
            return Err(Refusal::HeaderTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeaderTooLarge),
        Err(_) => return Err(Refusal::BadRequest("not an HTTP/1.1 request")),
    };
    if length > MAX_HEADER_BYTES {
        return Err(Refusal::HeaderTooLarge);
    }
    let target = request.path.unwrap_or_default();
    let (requested, query) = target.split_once('?').unwrap_or((target, ""));
    if requested == LOG_CHECKPOINT || requested == LOG_CONSISTENCY {
        if request.method != Some("GET") {
            return Err(Refusal::MethodNotAllowed);
        }
        return Ok(Some(Request::Log(if requested == LOG_CHECKPOINT {
            if query.is_empty() {
                Ok(LogRoute::Checkpoint)
            } else {
                Err("the checkpoint takes no parameter".into())
            }
        } else {
            consistency_query(query)
        })));
    }
    if requested != path {
        return Err(Refusal::NotFound);
    }
    if request.method != Some("GET") {
        return Err(Refusal::MethodNotAllowed);
    }
    if request.version != Some(1) {
        return Err(Refusal::BadRequest("a WebSocket upgrade needs HTTP/1.1"));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    if !header("upgrade").is_some_and(|value| has_token(value, "websocket")) {
        return Err(Refusal::BadRequest(
            "not a WebSocket upgrade (Upgrade: websocket)",
        ));
    }
    if !header("connection").is_some_and(|value| has_token(value, "upgrade")) {
        return Err(Refusal::BadRequest(
            "not a WebSocket upgrade (Connection: Upgrade)",
        ));
    }
    if header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(Refusal::UpgradeRequired);
    }
    let key = header("sec-websocket-key")
        .and_then(|value| std::str::from_utf8(value.trim_ascii()).ok())
        .filter(|key| key.len() == 24 && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(Refusal::BadRequest(
            "Sec-WebSocket-Key is missing or malformed",
        ))?;
    Ok(Some(Request::Upgrade(Upgrade {
        key: key.to_string(),
        early: buffer[length..].to_vec(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/ws/handshake";

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut text = lines.join("\r\n");
        text.push_str("\r\n\r\n");
        text.into_bytes()
    }

    fn upgrade(path: &str) -> Vec<u8> {
        request(&[
            &format!("GET {path} HTTP/1.1"),
            "Host: 127.0.0.1:3000",
            "Upgrade: WebSocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ])
    }

    #[test]
    fn a_well_formed_upgrade_is_accepted_with_the_bytes_after_it() {
        let mut bytes = upgrade("/ws/handshake?agent=1");
        bytes.extend_from_slice(b"\x81\x05hello");
        let parsed = parse(&bytes, PATH);
        assert_eq!(
            parsed,
            Ok(Some(Request::Upgrade(Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
                early: b"\x81\x05hello".to_vec(),
            })))
        );
        // RFC 6455's own example of the accept key.
        let answer =
            String::from_utf8(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==")).unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn an_incomplete_header_waits_and_a_long_one_is_refused() {
        let bytes = upgrade(PATH);
        for cut in [0, 1, 20, bytes.len() - 1] {
            assert_eq!(parse(&bytes[..cut], PATH), Ok(None), "{cut}");
        }
        let mut long = b"GET /ws/handshake HTTP/1.1\r\nX-Padding: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES));
        assert_eq!(parse(&long, PATH), Err(Refusal::HeaderTooLarge));
    }

    #[test]
    fn every_other_request_is_refused_with_its_status() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (upgrade("/elsewhere"), 404),
            (b"not http at all\r\n\r\n".to_vec(), 400),
            (request(&["POST /ws/handshake HTTP/1.1", "Host: x"]), 405),
            (request(&["GET /ws/handshake HTTP/1.1", "Host: x"]), 400),
            (
                request(&[
                    "GET /ws/handshake HTTP/1.1",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Version: 8",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                ]),
                426,
            ),
            (
                request(&[
                    "GET /ws/handshake HTTP/1.1",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Version: 13",
                ]),
                400,
            ),
            (
                request(&[
                    "GET /ws/handshake HTTP/1.0",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                ]),
                400,
            ),
        ];
        for (bytes, status) in cases {
            let refusal = parse(&bytes, PATH).err();
            assert_eq!(
                refusal.map(Refusal::status),
                Some(status),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn the_logs_public_evidence_is_read_with_its_parameters_checked() {
        let get = |target: &str| request(&[&format!("GET {target} HTTP/1.1"), "Host: x"]);
        assert_eq!(
            parse(&get("/log/checkpoint"), PATH),
            Ok(Some(Request::Log(Ok(LogRoute::Checkpoint))))
        );
        assert_eq!(
            parse(&get("/log/consistency?from=3&to=10"), PATH),
            Ok(Some(Request::Log(Ok(LogRoute::Consistency {
                from: 3,
                to: 10
            }))))
        );
        for (target, reason) in [
            ("/log/consistency?from=3", "to is required"),
            ("/log/consistency?to=3", "from is required"),
            ("/log/consistency?from=0&to=3", "from must be a tree size"),
            ("/log/consistency?from=+1&to=3", "from must be a tree size"),
            ("/log/consistency?from=1&to=x", "to must be a tree size"),
            ("/log/consistency?from=1&from=2&to=3", "from is given twice"),
            ("/log/consistency?from=1&to=3&seq=2", "unknown parameter"),
            ("/log/checkpoint?x=1", "takes no parameter"),
        ] {
            match parse(&get(target), PATH) {
                Ok(Some(Request::Log(Err(said)))) => {
                    assert!(said.contains(reason), "{target}: {said}")
                }
                other => panic!("{target}: {other:?}"),
            }
        }
        let post = request(&["POST /log/checkpoint HTTP/1.1", "Host: x"]);
        assert_eq!(parse(&post, PATH), Err(Refusal::MethodNotAllowed));
        assert_eq!(parse(&get("/log/records"), PATH), Err(Refusal::NotFound));
    }

    #[test]
    fn a_refusal_closes_the_connection_and_says_when_to_retry() {
        let text = String::from_utf8(Refusal::Unavailable { retry_after: 30 }.response())
            .unwrap_or_default();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 30\r\n") && text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nno handshake slot available"));
    }
}
