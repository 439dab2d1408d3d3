//! Automatic failover under Patroni (docs/replication.md), against three real PostgreSQL 15 nodes
//! run from docs/patroni/node.yml (`synchronous_mode: quorum`, strict) and the real `neuron`
//! binary given the three nodes in one URL:
//!
//! - the leader's machine lost (Patroni, postmaster and backends SIGKILLed) under load: the
//!   Neuron stops rather than guess; Patroni promotes a standby of the quorum on its own; the
//!   Neuron, restarted as a supervisor would with the same configuration, takes the log over on
//!   the new leader and serves; every handshake acknowledged before and after is in the log;
//! - the lost node, started again, rejoins as a standby, and the log read on it alone verifies
//!   with the leader's head.
//!
//! Without PostgreSQL 15, etcd or Patroni these tests say loudly that they did not run (and fail
//! in CI).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::acknowledged::{
    holds_every_acknowledged, load_until_failure, serve_config, until_acknowledged, verify_intact,
};
use common::patroni::Patroni;
use common::postgres::write_config;
use common::served::Served;

/// Starts `neuron serve` as a supervisor with `Restart=always` would: again, a few seconds
/// apart, until it serves (a leader just elected may still be finishing its promotion).
fn serve_until_up(data: &Path, config: &Path, first_run: usize) -> Served {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut run = first_run;
    loop {
        match serve_config(data, config, run) {
            Ok(served) => return served,
            Err(output) => {
                assert!(
                    Instant::now() < deadline,
                    "the Neuron did not start on the new leader: {output}"
                );
                std::thread::sleep(Duration::from_secs(2));
                run += 1;
            }
        }
    }
}

#[test]
fn patroni_fails_over_on_its_own_and_the_restarted_neuron_loses_no_acknowledged_handshake() {
    let Some(cluster) = Patroni::start("patroni_fails_over_on_its_own") else {
        return;
    };
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(&data, &url, "main", "");
    let server = serve_config(&data, &config, 0).unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let loading = load_until_failure(server.url.clone(), 16, acknowledged.clone(), stop.clone());
    until_acknowledged(&acknowledged, 200);

    let lost = cluster.leader();
    cluster.kill_node(lost);
    // The server cannot know whether its batch committed: it stops rather than guess.
    let (status, output) = server.wait();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("the event log could not be written"),
        "{output}"
    );
    stop.store(true, Ordering::SeqCst);
    loading.join().unwrap();

    // No one promotes anything: Patroni does, once the lost leader's key expires.
    let leader = cluster.leader();
    assert_ne!(leader, lost);
    let server = serve_until_up(&data, &config, 1);
    let before = acknowledged.lock().unwrap().len();
    stop.store(false, Ordering::SeqCst);
    let loading = load_until_failure(server.url.clone(), 16, acknowledged.clone(), stop.clone());
    until_acknowledged(&acknowledged, before + 100);
    stop.store(true, Ordering::SeqCst);
    loading.join().unwrap();
    server.signal(libc::SIGTERM);
    let (status, output) = server.wait();
    assert!(status.success(), "{output}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    holds_every_acknowledged(&url, &acknowledged);
    let on_leader = verify_intact(&url);
    assert_eq!(
        on_leader["report"]["tree"]["stored"], "checked",
        "{on_leader}"
    );

    // The lost machine comes back: Patroni rewinds it and it follows the new leader; the log read
    // on it alone is the same log.
    cluster.start_node(lost);
    cluster.streaming(2);
    let on_returned = verify_intact(&cluster.node_url(lost, "main"));
    assert_eq!(on_returned["report"]["head"], on_leader["report"]["head"]);
    assert_eq!(on_returned["report"]["tree"], on_leader["report"]["tree"]);
}
