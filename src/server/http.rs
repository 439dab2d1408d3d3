//! The little HTTP the gateway reads itself, before hyper has the connection (SPEC §2.5): a
//! connection that finds no free slot must have sent its whole request (at most
//! [`MAX_WAITING_REQUEST_BYTES`]) before it takes a place in the queue. hyper cannot say that
//! before a place exists: serving a connection is what it does with a request it has read, and a
//! connection it serves holds its buffers and a task for as long as it waits. So admission only
//! finds where the request's head ends, with `httparse` (the parser hyper itself uses), and keeps
//! the bytes; hyper reads them again when the connection is promoted, and everything the request
//! means (its path, method, headers, the upgrade) is hyper's and warp's. What admission answers
//! itself: 503 when there is no room, 431 for a request too long to wait, 400 for one that is not
//! HTTP. Pure: bytes in, bytes out.

/// The largest request header hyper reads on the handshake port (its smallest buffer); a longer
/// one is answered 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The most headers a request on the handshake port may have: more are answered 431.
pub const MAX_HEADERS: usize = 32;

/// The most of a request a connection that finds no free slot may send: it is held while the
/// connection waits in the queue (SPEC §2.5). Legitimate upgrade requests are a few hundred bytes.
pub const MAX_WAITING_REQUEST_BYTES: usize = 2 * 1024;

/// Why admission answers a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 400: not an HTTP/1.1 request.
    NotHttp,
    /// 431: more than [`MAX_HEADERS`] headers.
    TooManyHeaders,
    /// 431: a request longer than [`MAX_WAITING_REQUEST_BYTES`] from a connection that has to
    /// wait for a slot.
    TooLargeToWait,
    /// 503: no slot, no queue place, or the server is stopping.
    Unavailable {
        /// Seconds to wait before trying again.
        retry_after: u64,
    },
}

impl Answer {
    /// The status line's code.
    pub fn status(self) -> u16 {
        match self {
            Self::NotHttp => 400,
            Self::TooManyHeaders | Self::TooLargeToWait => 431,
            Self::Unavailable { .. } => 503,
        }
    }

    /// The whole answer: a short text body, `Connection: close`, and `Retry-After` for a 503.
    pub fn response(self) -> Vec<u8> {
        let (reason, body, extra) = match self {
            Self::NotHttp => ("Bad Request", "not an HTTP/1.1 request", String::new()),
            Self::TooManyHeaders => (
                "Request Header Fields Too Large",
                "the request has too many headers",
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

/// Whether `buffer` holds a whole request head: `Ok(false)` while it does not yet.
///
/// # Errors
/// [`Answer::NotHttp`] for bytes that are no HTTP/1 request head, whatever follows;
/// [`Answer::TooManyHeaders`] past [`MAX_HEADERS`].
pub fn head_complete(buffer: &[u8]) -> Result<bool, Answer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buffer) {
        Ok(httparse::Status::Complete(_)) => Ok(true),
        Ok(httparse::Status::Partial) => Ok(false),
        // Too many for hyper too, which would answer the same once the connection had waited.
        Err(httparse::Error::TooManyHeaders) => Err(Answer::TooManyHeaders),
        Err(_) => Err(Answer::NotHttp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws/handshake HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn a_head_is_complete_at_its_empty_line_and_garbage_is_not_http() {
        for cut in [0, 1, 20, UPGRADE.len() - 1] {
            assert_eq!(head_complete(&UPGRADE[..cut]), Ok(false), "{cut}");
        }
        assert_eq!(head_complete(UPGRADE), Ok(true));
        // What follows the head (a first frame) does not matter.
        assert_eq!(
            head_complete(&[UPGRADE, b"\x81\x05hello"].concat()),
            Ok(true)
        );
        assert_eq!(
            head_complete(b"not http at all\r\n\r\n"),
            Err(Answer::NotHttp)
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(head_complete(many.as_bytes()), Err(Answer::TooManyHeaders));
    }

    #[test]
    fn an_answer_closes_the_connection_and_says_when_to_retry() {
        let text = String::from_utf8(Answer::Unavailable { retry_after: 30 }.response())
            .unwrap_or_default();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 30\r\n") && text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nno handshake slot available"));
        let text = String::from_utf8(Answer::TooLargeToWait.response()).unwrap_or_default();
        assert!(
            text.starts_with("HTTP/1.1 431 ") && text.contains("2 KiB"),
            "{text}"
        );
    }
}
