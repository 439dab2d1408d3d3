//! What admission reads of a socket itself, before hyper has it (SPEC §2.5): a request's head,
//! up to where it ends, read straight from the kernel or through the runtime; what a queued
//! connection sent meanwhile; and whether a socket nobody reads has been closed by its peer.

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::http::{self, Answer};
use super::live::{Stop, StopPhase};
use super::timed::TimedWrites;

/// Why a connection's request was not an upgrade to serve.
pub(super) enum Unserved {
    /// Answered with this status, then closed.
    Answered(Answer),
    /// Its header did not arrive in time.
    TimedOut,
    /// The client went away.
    Left,
    /// The server is stopping.
    Stopping,
}

/// Reads a request's head until it is complete, the deadline passes, the client leaves or
/// the server stops (`stopping`), holding at most `limit` bytes of it (and what came behind it).
pub(super) async fn read_head(
    stream: &mut TimedWrites<TcpStream>,
    deadline: tokio::time::Instant,
    limit: usize,
    mut buffer: Vec<u8>,
    mut stopping: Stop,
) -> Result<Box<[u8]>, Unserved> {
    if let Some(done) = take_head(stream.get_ref(), &mut buffer, limit, Reading::Kernel) {
        return done.map(|()| buffer.into());
    }
    Box::pin(async {
        loop {
            tokio::select! {
                ready = stream.get_ref().readable() => if ready.is_err() {
                    return Err(Unserved::Left);
                },
                () = tokio::time::sleep_until(deadline) => return Err(Unserved::TimedOut),
                () = stopping.reached(StopPhase::Stopping) => return Err(Unserved::Stopping),
            }
            if let Some(done) = take_head(stream.get_ref(), &mut buffer, limit, Reading::Runtime) {
                return done.map(|()| std::mem::take(&mut buffer).into());
            }
        }
    })
    .await
}

/// Takes what `stream` holds now into `buffer` (at most `limit` bytes in all) and looks for the
/// end of the request's head: found, or why the request is not served, or `None` to wait for
/// more.
pub(super) fn take_head(
    stream: &TcpStream,
    buffer: &mut Vec<u8>,
    limit: usize,
    reading: Reading,
) -> Option<Result<(), Unserved>> {
    let mut chunk = [0u8; 2048];
    loop {
        let room = limit.saturating_sub(buffer.len()).min(chunk.len());
        if room == 0 {
            return Some(Err(Unserved::Answered(Answer::TooLargeToWait)));
        }
        let read = match reading {
            Reading::Kernel => recv_now(stream, &mut chunk[..room]),
            Reading::Runtime => stream.try_read(&mut chunk[..room]),
        };
        let read = match read {
            Ok(0) => return Some(Err(Unserved::Left)),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Some(Err(Unserved::Left)),
        };
        // Sized to what arrived: ten thousand of these wait at once.
        buffer.reserve_exact(read);
        buffer.extend_from_slice(&chunk[..read]);
        match http::head_complete(buffer) {
            Ok(true) => return Some(Ok(())),
            Ok(false) => {}
            Err(answer) => return Some(Err(Unserved::Answered(answer))),
        }
    }
}

/// How [`take_head`] reads a socket.
#[derive(Clone, Copy)]
pub(super) enum Reading {
    /// Straight from the kernel, whatever the runtime believes of the socket's readiness (which
    /// it learns only once its driver has polled the socket): for a first look.
    Kernel,
    /// Through the runtime, which clears its readiness when nothing is there: for reads that wait
    /// for readiness between them.
    Runtime,
}

/// Reads what the kernel holds for `stream` into `chunk` now, without waiting and whatever the
/// runtime believes of its readiness: `Ok(0)` at the peer's end, `WouldBlock` when nothing is
/// there.
fn recv_now(stream: &TcpStream, chunk: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: recv writes at most `chunk.len()` bytes into `chunk`, which it borrows mutably.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            chunk.as_mut_ptr().cast(),
            chunk.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(read).map_err(|_| std::io::Error::last_os_error())
}

/// Takes what the kernel holds for `stream` now into `buffer`, up to `limit` bytes in all: how
/// many it took (`Ok(0)` at the peer's end), `WouldBlock` when nothing is there.
pub(super) fn read_waiting(
    stream: &TcpStream,
    buffer: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; 2048];
    let mut total = 0;
    loop {
        let room = limit.saturating_sub(buffer.len()).min(chunk.len());
        if room == 0 {
            return Ok(total.max(1));
        }
        match recv_now(stream, &mut chunk[..room]) {
            Ok(0) => return Ok(total),
            Ok(read) => {
                buffer.extend_from_slice(&chunk[..read]);
                total += read;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock && total > 0 => {
                return Ok(total)
            }
            Err(error) => return Err(error),
        }
    }
}

/// Resolves when the peer of a socket nobody reads has gone: its end closed or reset. Data it
/// sends meanwhile stays in the kernel; readiness for it is cleared so that only a later event
/// (more data, or the end) wakes this again.
pub(super) async fn gone(stream: &TcpStream) {
    loop {
        match stream.ready(Interest::READABLE).await {
            Ok(ready) if ready.is_read_closed() => return,
            Ok(_) => {
                let _ = stream.try_io(Interest::READABLE, || {
                    Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                });
            }
            Err(_) => return,
        }
    }
}
