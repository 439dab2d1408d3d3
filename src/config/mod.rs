//! Configuration (SPEC §5): built-in defaults, then a TOML file, then `NEURON_<SECTION>__<KEY>`
//! environment variables, then command-line flags. Unknown keys and bad values stop start-up with
//! a message naming the key.
//!
//! This file holds the keys (one struct per section, with its defaults) and the digest recorded in
//! `server.started`; `load` layers the sources, `validate` checks values and parses what the
//! server needs (`Checked`), `template` is the commented file `neuron init` writes.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod load;
mod template;
mod validate;

pub use template::TEMPLATE;

/// The demo organization's NPI, the built-in default (`organization.npi`).
pub const DEMO_ORGANIZATION_NPI: &str = "1245319599";
/// The demo provider's NPI, the one provider of the built-in defaults; the demo client and the
/// load tool consent to it unless told otherwise.
pub const DEMO_PROVIDER_NPI: &str = "1234567893";

/// Why a configuration was refused. The message always names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key is unknown or of the wrong type.
    #[error("invalid configuration{origin}: {message}")]
    Parse {
        /// Where the configuration came from.
        origin: String,
        /// What the parser said, naming the key.
        message: String,
    },
    /// An environment variable names no configuration key.
    #[error("unknown configuration key {key} (from environment variable {variable})")]
    UnknownVariable {
        /// The key it would set.
        key: String,
        /// The variable.
        variable: String,
    },
    /// A value of the right type that is not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The key, `section.key`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The values validation parsed ([`Config::validate`]): what the server uses instead of parsing
/// the text again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The public listener's address (`server.host`, `server.port`).
    pub server_addr: SocketAddr,
    /// The operator listener's address (`admin.host`, `admin.port`).
    pub admin_addr: SocketAddr,
    /// The accepted bearer tokens' hashes (`admin.token_hashes`); empty means `/v1/*` is open,
    /// which validation allows on loopback only.
    pub admin_tokens: Vec<blake3::Hash>,
}

/// `[organization]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Organization {
    /// The organization's NPI.
    pub npi: String,
    /// Its name.
    pub name: String,
}

impl Default for Organization {
    fn default() -> Self {
        Self {
            npi: DEMO_ORGANIZATION_NPI.into(),
            name: "Demo Clinic".into(),
        }
    }
}

/// `[server]`: the public WebSocket listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on.
    pub host: String,
    /// Port; 0 picks a free one and writes `{data_dir}/serve.addr`.
    pub port: u16,
    /// The public base URL that provider endpoints are built from.
    pub public_url: String,
    /// A request's header must arrive within this, from the connection's accept (queued or not);
    /// on the operator listener, also the longest idle keep-alive
    /// and the longest wait for a request body.
    pub header_timeout_ms: u64,
    /// Open connections on the public listener at most, queued ones included; past this a
    /// connection is answered 503 and closed.
    pub max_connections: u32,
    /// A graceful stop ends within this, whatever clients do.
    pub shutdown_grace_ms: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3000,
            public_url: "http://localhost:3000".into(),
            header_timeout_ms: 5000,
            max_connections: 20_000,
            shutdown_grace_ms: 5000,
        }
    }
}

/// `[admin]`: the operator listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address to listen on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// blake3 hex of accepted bearer tokens.
    pub token_hashes: Vec<String>,
    /// `Host` header values accepted besides the listener's own address and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed; a request with any other `Origin` header is refused.
    pub allowed_origins: Vec<String>,
    /// Open connections on the operator listener at most.
    pub max_connections: u32,
    /// Export streams at once at most; more get 503 with `Retry-After`.
    pub max_exports: u32,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3001,
            token_hashes: Vec::new(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_connections: 64,
            max_exports: 2,
        }
    }
}

/// `[websocket]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocket {
    /// The upgrade path.
    pub path: String,
    /// Live handshake sessions at most.
    pub max_concurrent_handshakes: u32,
    /// Waiting upgrades at most.
    pub max_queued: u32,
    /// Time allowed for `handshake.auth`.
    pub auth_timeout_ms: u64,
    /// Time allowed for the challenge response.
    pub challenge_timeout_ms: u64,
    /// Time an upgrade may wait for a slot.
    pub queue_timeout_ms: u64,
    /// Largest frame accepted.
    pub max_payload_bytes: usize,
    /// A frame a client does not take within this ends its session.
    pub write_timeout_ms: u64,
}

impl Default for WebSocket {
    fn default() -> Self {
        Self {
            path: "/ws/handshake".into(),
            max_concurrent_handshakes: 10,
            max_queued: 1000,
            auth_timeout_ms: 10_000,
            challenge_timeout_ms: 10_000,
            queue_timeout_ms: 30_000,
            max_payload_bytes: 65_536,
            write_timeout_ms: 5000,
        }
    }
}

/// `[storage]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Where the key, the address files and (with the sled backend) the log live.
    pub data_dir: PathBuf,
    /// Where the log lives: `sled` (embedded) or `postgres` (replicated, SPEC §3.6).
    pub backend: Backend,
    /// `[storage.postgres]`, for the `postgres` backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Postgres>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            backend: Backend::Sled,
            postgres: None,
        }
    }
}

/// `storage.backend`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// sled, embedded in the data directory: nothing to install.
    Sled,
    /// PostgreSQL with synchronous standbys.
    Postgres,
}

/// `[storage.postgres]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// The connection URL (libpq form; several hosts and `target_session_attrs=read-write` for a
    /// cluster).
    pub url: String,
    /// Which log in that database: one writer per log.
    #[serde(default = "default_log_name")]
    pub log: String,
    /// Refuse to start unless a synchronous standby is configured and `synchronous_commit` waits
    /// for it.
    #[serde(default = "default_true")]
    pub require_sync_standbys: bool,
    /// A commit that takes longer (no quorum of standbys) stops the server instead of hanging it.
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
}

fn default_log_name() -> String {
    "main".into()
}

fn default_true() -> bool {
    true
}

fn default_commit_timeout_ms() -> u64 {
    10_000
}

/// `[audit]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// A signed checkpoint whenever the next seq is a multiple of this.
    pub checkpoint_every: u64,
    /// The log's C2SP origin and key name; empty: `{public_url host}/neuron/{organization npi}`
    /// ([`Config::origin`]). Fixed once the log exists.
    pub origin: String,
    /// How often the latest checkpoint is sent to each witness.
    pub witness_interval_ms: u64,
    /// Cosignatures needed for a checkpoint to count as witnessed; 0: every listed witness.
    pub witness_quorum: u32,
    /// `[[audit.witnesses]]`
    pub witnesses: Vec<Witness>,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            origin: String::new(),
            witness_interval_ms: 10_000,
            witness_quorum: 0,
            witnesses: Vec::new(),
        }
    }
}

/// `[[audit.witnesses]]`: a C2SP tlog-witness the Neuron asks to cosign its checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    /// The witness's name (its key name).
    pub name: String,
    /// Its verifier key, type 0x04 (cosignature/v1).
    pub vkey: String,
    /// Its submission prefix: `add-checkpoint` is posted under it.
    pub url: String,
}

/// `[[providers]]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// The provider's NPI.
    pub npi: String,
    /// Its display name.
    pub name: String,
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[organization]`
    pub organization: Organization,
    /// `[server]`
    pub server: Server,
    /// `[admin]`
    pub admin: Admin,
    /// `[websocket]`
    pub websocket: WebSocket,
    /// `[storage]`
    pub storage: Storage,
    /// `[audit]`
    pub audit: Audit,
    /// `[[providers]]`
    pub providers: Vec<Provider>,
}

impl Default for Config {
    /// The built-in demo configuration: a demo organization with one demo provider.
    fn default() -> Self {
        Self {
            organization: Organization::default(),
            server: Server::default(),
            admin: Admin::default(),
            websocket: WebSocket::default(),
            storage: Storage::default(),
            audit: Audit::default(),
            providers: vec![Provider {
                npi: DEMO_PROVIDER_NPI.into(),
                name: "Demo Provider".into(),
            }],
        }
    }
}

/// Where the configuration came from, for the first log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// No file: the built-in demo defaults (possibly with environment overrides and flags).
    BuiltInDefaults,
    /// This file.
    File(PathBuf),
}

/// Command-line overrides.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--port`
    pub port: Option<u16>,
}

impl Config {
    /// The log's origin (SPEC §3.5): `audit.origin`, or `{public_url host}/neuron/{organization
    /// npi}` when it is empty.
    pub fn origin(&self) -> String {
        if !self.audit.origin.is_empty() {
            return self.audit.origin.clone();
        }
        let rest = self
            .server
            .public_url
            .split_once("://")
            .map_or(self.server.public_url.as_str(), |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        format!("{host}/neuron/{}", self.organization.npi)
    }

    /// blake3 hex of the configuration as TOML, leaving out `storage.data_dir` (where the log lives
    /// is not part of what the Neuron does): recorded in `server.started` so that a change of
    /// configuration shows in the log.
    pub fn digest(&self) -> String {
        let mut effective = self.clone();
        effective.storage.data_dir = PathBuf::new();
        // Which port the operator listener takes (often a free one picked at start) is not part
        // of what the Neuron does; its host and tokens are. Digested as if it were the default,
        // so digests recorded before the listener existed still compare.
        effective.admin.port = Admin::default().port;
        let text = toml::to_string(&effective).unwrap_or_default();
        // Keys added after digests were first recorded are left out while at their defaults, so
        // that the same configuration keeps the same digest: their lines are dropped from the
        // text, which is then what it was before they existed.
        let (Ok(table), Ok(defaults)) = (
            toml::Table::try_from(&effective),
            toml::Table::try_from(Config::default()),
        ) else {
            return String::new();
        };
        let value = |table: &toml::Table, section: &str, key: &str| {
            table.get(section).and_then(|s| s.get(key)).cloned()
        };
        let at_default: Vec<(&str, &str)> = LATER_KEYS
            .iter()
            .copied()
            .filter(|(section, key)| value(&table, section, key) == value(&defaults, section, key))
            .collect();
        let mut section = "";
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name;
            }
            let key = line.split(" = ").next().unwrap_or_default();
            if !at_default.contains(&(section, key)) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        blake3::hash(kept.as_bytes()).to_hex().to_string()
    }
}

/// Keys added after configuration digests were first recorded (see [`Config::digest`]).
const LATER_KEYS: &[(&str, &str)] = &[
    ("audit", "origin"),
    ("audit", "witness_interval_ms"),
    ("audit", "witness_quorum"),
    ("audit", "witnesses"),
    ("storage", "backend"),
    ("server", "header_timeout_ms"),
    ("server", "max_connections"),
    ("server", "shutdown_grace_ms"),
    ("admin", "allowed_hosts"),
    ("admin", "allowed_origins"),
    ("admin", "max_connections"),
    ("admin", "max_exports"),
    ("websocket", "write_timeout_ms"),
];

#[cfg(test)]
mod tests;
