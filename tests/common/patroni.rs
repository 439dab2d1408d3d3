//! Three PostgreSQL 15 nodes under Patroni and one etcd, run by `scripts/patroni-cluster.sh` from
//! docs/patroni/node.yml, on loopback ports this process picked, in a temporary directory, as the
//! user `postgres`. Stopped when dropped.

use std::path::Path;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/patroni-cluster.sh");
const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";
const ETCD: &str = "/usr/bin/etcd";
/// The folder holding `patroni` and `patronictl` (CI installs Patroni there, from PyPI).
const PATRONI_BIN: &str = "NEURON_PATRONI_BIN";
/// The ports the script takes: etcd's two, then each node's PostgreSQL and REST API.
const PORTS: u16 = 8;

/// A running Patroni cluster.
pub(crate) struct Patroni {
    dir: tempfile::TempDir,
    bin: String,
    /// etcd's port; node N's PostgreSQL listens on `base + 2 + N`.
    pub(crate) base: u16,
}

impl Patroni {
    /// Starts a cluster with a leader and both standbys streaming in its quorum, or, where
    /// PostgreSQL 15, etcd or Patroni is missing, says so loudly and returns `None` (a failure
    /// under `NEURON_REQUIRE_EXTERNAL`, as in CI).
    pub(crate) fn start(test: &str) -> Option<Self> {
        let bin = std::env::var(PATRONI_BIN).unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/patroni-venv/bin").to_string()
        });
        let installed = Path::new(INITDB).exists()
            && Path::new(ETCD).exists()
            && Path::new(&bin).join("patroni").exists();
        if !neuron_events::testing::external(
            installed,
            test,
            "PostgreSQL 15, etcd and Patroni 4 (three nodes under Patroni are started for it)",
            "apt-get install postgresql-15 etcd-server; /usr/bin/python3 -m venv target/patroni-venv; \
             target/patroni-venv/bin/pip install 'patroni[etcd3,psycopg3]==4.1.5' 'psycopg[binary]' \
             (or set NEURON_PATRONI_BIN to the folder holding patroni)",
        ) {
            return None;
        }
        let mut last = String::new();
        // A port taken between the probe and the start: try others.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("neuron-patroni-")
                .tempdir()
                .unwrap();
            let base = super::consecutive_free_ports(PORTS);
            let output = Command::new(SCRIPT)
                .args(["start", dir.path().to_str().unwrap(), &base.to_string()])
                .env("PATRONI_BIN", &bin)
                .output()
                .unwrap();
            let cluster = Self {
                dir,
                bin: bin.clone(),
                base,
            };
            if output.status.success() {
                return Some(cluster);
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr),
                cluster.logs()
            );
        }
        panic!("the Patroni cluster did not start: {last}");
    }

    /// Runs the script with `args` after the command and the directory; its output.
    fn run(&self, command: &str, args: &[&str]) -> String {
        let output = Command::new(SCRIPT)
            .arg(command)
            .arg(self.dir.path())
            .args(args)
            .env("PATRONI_BIN", &self.bin)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "patroni-cluster.sh {command} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The last lines of each node's Patroni log, for a failure's message.
    fn logs(&self) -> String {
        let mut said = String::new();
        for node in 0..3 {
            let log = std::fs::read_to_string(self.dir.path().join(format!("n{node}.log")))
                .unwrap_or_default();
            let lines: Vec<_> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            said.push_str(&format!("\n--- node {node}:\n{tail}"));
        }
        said
    }

    /// The URL the Neuron is given: the three nodes, whichever is read-write.
    pub(crate) fn url(&self) -> String {
        self.run("url", &[])
    }

    /// The URL of log `log` on node `node` alone (a standby serves investigators).
    pub(crate) fn node_url(&self, node: u16, log: &str) -> String {
        let password = std::fs::read_to_string(self.dir.path().join("neuron.password")).unwrap();
        format!(
            "postgres://neuron:{}@127.0.0.1:{}/neuron?log={log}",
            password.trim(),
            self.base + 2 + node
        )
    }

    /// The node that leads, once one does (the script waits up to 120 s).
    pub(crate) fn leader(&self) -> u16 {
        self.run("leader", &[]).parse().unwrap()
    }

    /// SIGKILLs node `node`'s Patroni, postmaster and backends: its machine is lost.
    pub(crate) fn kill_node(&self, node: u16) {
        self.run("kill-node", &[&node.to_string()]);
    }

    /// Starts node `node`'s Patroni again.
    pub(crate) fn start_node(&self, node: u16) {
        self.run("start-node", &[&node.to_string()]);
    }

    /// Waits (up to 120 s) until the leader has `count` standbys streaming in its quorum.
    pub(crate) fn streaming(&self, count: u16) {
        self.run("streaming", &[&count.to_string()]);
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .args(["stop", self.dir.path().to_str().unwrap()])
            .output();
    }
}
