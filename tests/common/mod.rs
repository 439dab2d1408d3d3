//! What the server's integration tests share: a loopback configuration on ports the test picks, a
//! server started with the injected clock, ids and key, the fixed patients, a generous wait for a
//! condition, the records of a stopped server's log (and their snapshot), and the `neuron` binary
//! run as a user would.

#![allow(dead_code)] // each test crate uses its own part of this

pub(crate) mod acknowledged;
pub(crate) mod patroni;
pub(crate) mod postgres;
pub(crate) mod served;
pub(crate) mod witness;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use neuron::config::Config;
use neuron::ids::SeededIds;
use neuron::server::{Options, Server};
use neuron::tools::client::Patient;
use neuron_events::testing::neuron_key;
use neuron_events::SteppingClock;
use neuron_projections::sessions::SessionStage;

/// The default configuration's provider.
pub(crate) const PROVIDER: &str = "1234567893";
/// The fixed clock's first instant, in seconds.
pub(crate) const NOW: i64 = 1_795_687_200;

/// The built-in defaults with both listeners on free loopback ports and the log in `dir`.
pub(crate) fn config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.admin.port = 0;
    config.storage.data_dir = dir.to_path_buf();
    config
}

/// Starts a server with `clock`, ids seeded with `seed` and the test key.
pub(crate) async fn start(config: Config, clock: SteppingClock, seed: u64) -> Server {
    let options = Options {
        clock: Arc::new(clock),
        ids: Arc::new(SeededIds::new(seed)),
        key: Some(neuron_key()),
        acknowledge_rollback: false,
        start_over: neuron::server::StartOver::Nothing,
    };
    match Server::start(config, options).await {
        Ok(server) => server,
        Err(error) => panic!("the server did not start: {error:?}"),
    }
}

/// The handshake URL of `server`.
pub(crate) fn url(server: &Server) -> String {
    format!("ws://{}/ws/handshake", server.local_addr())
}

pub(crate) fn ada() -> Patient {
    Patient::from_seed("patient-agent-ada", [0x21; 32])
}

pub(crate) fn bob() -> Patient {
    Patient::from_seed("patient-agent-bob", [0x22; 32])
}

/// Waits (generously, without depending on speed) until `condition` holds.
pub(crate) async fn until(server: &Server, condition: impl Fn(&Server) -> bool) {
    for _ in 0..2000 {
        if condition(server) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition never met: {:?}", server.active_sessions());
}

/// Waits until the server shows exactly `count` queued sessions.
pub(crate) async fn until_queued(server: &Server, count: usize) {
    until(server, |server| {
        server
            .active_sessions()
            .iter()
            .filter(|session| session.stage == SessionStage::Queued)
            .count()
            == count
    })
    .await;
}

/// Every record of a stopped server's log in `dir`, one per line; the log must verify under the
/// test key.
pub(crate) fn records(dir: &Path) -> String {
    neuron_events::testing::verified_records(&dir.join("log"))
}

/// Locks the records of a stopped server's log in `dir` as the snapshot `name`.
pub(crate) fn lock_log(name: &str, dir: &Path) {
    neuron_events::lock_records!(name, &records(dir));
}

/// What `neuron export DIR` prints for a stopped server's data directory; it must succeed.
pub(crate) fn exported(dir: &Path) -> Vec<u8> {
    // A server this process stopped may still be letting go of its store.
    neuron_events::testing::until_unlocked(&dir.join("log"));
    let output = neuron(&["export", &dir.display().to_string()]);
    assert!(output.status.success(), "{}", said(&output));
    output.stdout
}

/// Runs the `neuron` binary built for these tests with `args`; what it exited with and printed.
pub(crate) fn neuron(args: &[&str]) -> std::process::Output {
    match std::process::Command::new(env!("CARGO_BIN_EXE_neuron"))
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("cannot run neuron {args:?}: {error}"),
    }
}

/// What a run printed, standard output then standard error.
pub(crate) fn said(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// A plain HTTP/1.1 GET to `addr` (with a bearer token when given), read to the end: the status
/// and the body.
pub(crate) async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    // The operator listener may answer in chunks.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        let mut whole = String::new();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            whole.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        whole
    } else {
        body.to_string()
    };
    (status, body)
}

/// `count` consecutive loopback ports free now, for servers that take their ports from a base
/// (PostgreSQL nodes, etcd). Looked for below the kernel's ephemeral range, where no outgoing
/// connection takes one between this probe and the servers' binds (a machine that just made
/// tens of thousands of connections holds much of that range in TIME_WAIT).
pub(crate) fn consecutive_free_ports(count: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(count).max(10_001));
    // Spread the tries over the range, differently in each process, so that test binaries
    // running at once rarely probe the same ports.
    let mut next = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::from(since.subsec_nanos()));
    for _ in 0..1000 {
        next = next.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let base = low + ((next >> 33) % u64::from(high - low)) as u16;
        let held: Vec<_> = (0..count)
            .map(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no {count} consecutive free loopback ports between {low} and {high}");
}
