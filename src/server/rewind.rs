//! A socket with bytes already read from it put back in front: a queued connection's request,
//! which admission had to read whole before it gave the connection a place, is read again by
//! hyper as if it had just arrived.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, whose reads return `before` first.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    /// What is still to be read again, and how much of it was.
    before: Option<(Box<[u8]>, usize)>,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner` with `before` (possibly empty) read first.
    pub(crate) fn new(before: Box<[u8]>, inner: S) -> Self {
        Self {
            before: (!before.is_empty()).then_some((before, 0)),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((bytes, read)) = &mut self.before {
            let rest = &bytes[*read..];
            let taken = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..taken]);
            *read += taken;
            if *read == bytes.len() {
                // Given back whole: its memory is freed now, not with the connection.
                self.before = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_bytes_put_back_are_read_first_then_the_socket() {
        let (client, server) = tokio::io::duplex(64);
        let mut rewound = Rewind::new(
            b"GET / HTTP/1.1\r\n\r\n".to_vec().into_boxed_slice(),
            server,
        );
        let mut client = client;
        client.write_all(b"after").await.unwrap();
        drop(client);
        // Small reads take the bytes put back in pieces, in order.
        let mut first = [0u8; 4];
        rewound.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET ");
        let mut rest = Vec::new();
        rewound.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"/ HTTP/1.1\r\n\r\nafter");
        assert!(rewound.before.is_none());
    }

    #[tokio::test]
    async fn nothing_put_back_reads_the_socket_and_writes_go_through() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut rewound = Rewind::new(Box::default(), server);
        rewound.write_all(b"out").await.unwrap();
        let mut out = [0u8; 3];
        client.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"out");
        client.write_all(b"in").await.unwrap();
        let mut read = [0u8; 2];
        rewound.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"in");
    }
}
