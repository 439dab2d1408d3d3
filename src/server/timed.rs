//! A socket whose writes time out: a peer that does not read can hold a write for at most the
//! timeout, after which the write fails with `TimedOut` (SPEC §7). Both listeners wrap every
//! connection in one, so that no task, however its peer behaves, waits on a write for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` with a write timeout. Reads are untouched (their timers live with whoever reads).
#[derive(Debug)]
pub struct TimedWrites<S> {
    inner: S,
    timeout: Duration,
    /// Started when a write first had to wait; cleared when a write makes progress.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> TimedWrites<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            waiting: None,
        }
    }

    /// The socket inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The socket inside, its write timeout let go (a connection that only waits).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A write that is `Pending`: still within its time, or timed out.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took nothing for {} ms", timeout.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, outcome: io::Result<T>) -> Poll<io::Result<T>> {
        self.waiting = None;
        Poll::Ready(outcome)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(outcome) => self.progressed(outcome),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(outcome) => self.progressed(outcome),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(outcome) => self.progressed(outcome),
            Poll::Pending => self.pending(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_times_out_and_one_it_takes_does_not() {
        // A pipe whose far end is never read: 64 bytes fit, the rest wait.
        let (near, _far) = tokio::io::duplex(64);
        let mut timed = TimedWrites::new(near, Duration::from_secs(5));
        let outcome = timed.write_all(&[0u8; 1024]).await;
        assert_eq!(
            outcome.map_err(|error| error.kind()),
            Err(io::ErrorKind::TimedOut)
        );

        let (near, mut far) = tokio::io::duplex(64);
        let mut timed = TimedWrites::new(near, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut sink)
                .await
                .map(|_| sink.len())
        });
        timed
            .write_all(&[0u8; 1024])
            .await
            .map_err(|e| e.kind())
            .ok();
        drop(timed);
        assert_eq!(reader.await.ok().and_then(Result::ok), Some(1024));
    }
}
