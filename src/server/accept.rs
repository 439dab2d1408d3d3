//! The accept loop both listeners run: connections handed on until the stop reaches a phase,
//! accept errors (out of file descriptors, most likely) logged at most once a second and retried
//! after a short pause, so that a failing `accept` never spins a core or floods the log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::live::{Stop, StopPhase};

/// How long an accept error pauses the loop.
const PAUSE: Duration = Duration::from_millis(20);
/// How often an accept error is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Accepts from `listener` until `stop` reaches `until`, handing each connection to `admit`.
/// `listener_name` (`handshake`, `operator`) names the listener in the log.
pub(crate) async fn accept_until(
    listener: &TcpListener,
    mut stop: Stop,
    until: StopPhase,
    listener_name: &'static str,
    mut admit: impl FnMut(TcpStream, SocketAddr),
) {
    let mut last_logged: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        let accepted = tokio::select! {
            () = stop.reached(until) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => admit(stream, peer),
            Err(error) => {
                if last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    warn!(%error, suppressed, "the {listener_name} listener cannot accept a connection");
                    last_logged = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::live::StopSignal;

    #[tokio::test]
    async fn connections_are_handed_on_until_the_stop_reaches_the_phase() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (signal, stop) = StopSignal::new();
        let (sender, mut admitted) = tokio::sync::mpsc::unbounded_channel();
        let accepting = tokio::spawn(async move {
            accept_until(
                &listener,
                stop,
                StopPhase::Stopping,
                "test",
                |stream, peer| {
                    let _ = sender.send((stream, peer));
                },
            )
            .await;
        });
        let client = TcpStream::connect(addr).await.unwrap();
        let (_stream, peer) = admitted.recv().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());

        // An earlier phase does not end it; the one asked for does.
        signal.advance(StopPhase::Draining);
        let _second = TcpStream::connect(addr).await.unwrap();
        assert!(
            admitted.recv().await.is_some(),
            "still accepting while draining"
        );
        signal.advance(StopPhase::Stopping);
        tokio::time::timeout(Duration::from_secs(30), accepting)
            .await
            .expect("the loop ends at its phase")
            .unwrap();
        assert!(admitted.recv().await.is_none(), "nothing handed on after");
    }
}
