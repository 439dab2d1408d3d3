//! A real three-node PostgreSQL 15 cluster for the tests of the replicated log (SPEC §3.6), run by
//! `scripts/pg-cluster.sh`: a primary and two synchronous standbys on loopback ports this process
//! picked, in a temporary directory, as the user `postgres`. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");
const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";

/// A running cluster.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    /// The port of node 0 (the first primary); standbys listen on the two after it.
    pub(crate) base: u16,
    /// The port of the primary now (another after a promotion).
    pub(crate) primary: u16,
}

impl Cluster {
    /// Starts a cluster, or, where PostgreSQL 15 is not installed, says so loudly and returns
    /// `None` (a failure under `NEURON_REQUIRE_EXTERNAL`, as in CI).
    pub(crate) fn start(test: &str) -> Option<Self> {
        let installed = Path::new(INITDB).exists();
        if !neuron_events::testing::external(
            installed,
            test,
            "PostgreSQL 15 (a primary and two standbys are started for it)",
            "apt-get install postgresql-15",
        ) {
            return None;
        }
        let mut last = String::new();
        // A port taken between the probe and the start: try others.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("neuron-pg-")
                .tempdir()
                .unwrap();
            let base = super::consecutive_free_ports(3);
            let output = Command::new(SCRIPT)
                .args(["start", dir.path().to_str().unwrap(), &base.to_string()])
                .output()
                .unwrap();
            if output.status.success() {
                return Some(Self {
                    dir,
                    base,
                    primary: base,
                });
            }
            last = String::from_utf8_lossy(&output.stderr).into_owned();
            let _ = Command::new(SCRIPT)
                .args(["stop", dir.path().to_str().unwrap()])
                .output();
        }
        panic!("the PostgreSQL cluster did not start: {last}");
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Runs the script with `args` after the command and the directory; its output.
    pub(crate) fn run(&self, command: &str, args: &[&str]) -> String {
        let output = Command::new(SCRIPT)
            .arg(command)
            .arg(self.dir())
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg-cluster.sh {command} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The URL of the database `neuron` on the primary, as the user `neuron`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://neuron@127.0.0.1:{}/neuron", self.primary)
    }

    /// The URL of log `log` on the standby `node` (1 or 2).
    pub(crate) fn standby_url(&self, node: u16, log: &str) -> String {
        format!(
            "postgres://neuron@127.0.0.1:{}/neuron?log={log}",
            self.base + node
        )
    }

    /// Runs SQL as the superuser in the database `neuron` on the primary; what it printed.
    pub(crate) fn sql(&self, sql: &str) -> String {
        self.sql_in("neuron", sql)
    }

    /// Runs SQL as the superuser in `database` on the primary; what it printed.
    pub(crate) fn sql_in(&self, database: &str, sql: &str) -> String {
        self.run("sql", &[&self.primary.to_string(), sql, database])
    }

    /// SIGKILLs the primary's postmaster: the machine is lost.
    pub(crate) fn kill_primary(&self) {
        self.run("kill-primary", &[]);
    }

    /// Promotes the standby that received the most WAL; the other follows it.
    pub(crate) fn promote(&mut self) {
        let port = self.run("promote", &[]);
        self.primary = port.parse().unwrap();
    }

    /// Stops node `node` (0 the first primary, 1 and 2 the standbys).
    pub(crate) fn stop_node(&self, node: u16) {
        self.run("stop-node", &[&node.to_string()]);
    }

    /// Starts node `node` again.
    pub(crate) fn start_node(&self, node: u16) {
        self.run("start-node", &[&node.to_string()]);
    }

    /// Writes a configuration for a server on log `log` of this cluster, its data in `data`, with
    /// `audit` more lines of its `[audit]` section; returns its path.
    pub(crate) fn config(&self, data: &Path, log: &str, audit: &str) -> PathBuf {
        write_config(data, &self.url(), log, audit)
    }
}

/// Writes `{data}.toml`: a server whose log is `log` at `url`, a commit timeout of 3 s, a
/// checkpoint every 50 records and `audit` more in `[audit]`, the default provider.
pub(crate) fn write_config(data: &Path, url: &str, log: &str, audit: &str) -> PathBuf {
    let path = data.with_extension("toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\ndata_dir = {data:?}\nbackend = \"postgres\"\n\n[storage.postgres]\nurl = {url:?}\nlog = {log:?}\ncommit_timeout_ms = 3000\n\n[audit]\ncheckpoint_every = 50\n{audit}\n[[providers]]\nnpi = \"1234567893\"\nname = \"Demo Provider\"\n"
        ),
    )
    .unwrap();
    path
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).args(["stop", self.dir()]).output();
    }
}
