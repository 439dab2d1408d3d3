//! Configuration (SPEC §5): built-in defaults, then a TOML file, then `NEURON_<SECTION>__<KEY>`
//! environment variables, then command-line flags. Unknown keys and bad values stop start-up with
//! a message naming the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use neuron_handshake::npi;

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
    /// A request's header must arrive within this, from the connection's admission (from its
    /// promotion when it was queued); on the operator listener, also the longest idle keep-alive
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
    /// Where the log, the key and the address files live.
    pub data_dir: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

/// `[audit]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// A signed checkpoint whenever the next seq is a multiple of this.
    pub checkpoint_every: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
        }
    }
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

const SECTIONS: &[(&str, &[&str])] = &[
    ("organization", &["npi", "name"]),
    (
        "server",
        &[
            "host",
            "port",
            "public_url",
            "header_timeout_ms",
            "max_connections",
            "shutdown_grace_ms",
        ],
    ),
    (
        "admin",
        &[
            "host",
            "port",
            "token_hashes",
            "allowed_hosts",
            "allowed_origins",
            "max_connections",
            "max_exports",
        ],
    ),
    (
        "websocket",
        &[
            "path",
            "max_concurrent_handshakes",
            "max_queued",
            "auth_timeout_ms",
            "challenge_timeout_ms",
            "queue_timeout_ms",
            "max_payload_bytes",
            "write_timeout_ms",
        ],
    ),
    ("storage", &["data_dir"]),
    ("audit", &["checkpoint_every"]),
];

impl Config {
    /// Loads the configuration: `file` if given, else `./neuron.toml` if present, else the built-in
    /// defaults; then `NEURON_*` variables from `environment`; then `flags`; then validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &Flags,
    ) -> Result<(Self, Source), ConfigError> {
        let default_file = Path::new("neuron.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        let (mut table, source) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut table: toml::Table =
                    toml::from_str(&text).map_err(|error| ConfigError::Parse {
                        origin: format!(" in {}", path.display()),
                        message: error.message().to_string(),
                    })?;
                // A file names its own providers: none when it lists none.
                table
                    .entry("providers")
                    .or_insert_with(|| toml::Value::Array(Vec::new()));
                (table, Source::File(path.to_path_buf()))
            }
            None => (toml::Table::new(), Source::BuiltInDefaults),
        };
        for (variable, value) in environment {
            let Some(rest) = variable.strip_prefix("NEURON_") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let known = SECTIONS
                .iter()
                .any(|(name, keys)| *name == section && keys.contains(&key.as_str()));
            if !known {
                return Err(ConfigError::UnknownVariable {
                    key: format!("{section}.{key}"),
                    variable,
                });
            }
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section_table) = entry {
                section_table.insert(key, environment_value(&value));
            }
        }
        // Deserialise from text so that an error shows the offending line, and so names the key.
        let merged = toml::to_string(&table).map_err(|error| ConfigError::Parse {
            origin: String::new(),
            message: error.to_string(),
        })?;
        let mut config: Config =
            toml::from_str(&merged).map_err(|error: toml::de::Error| ConfigError::Parse {
                origin: match &source {
                    Source::File(path) => format!(" in {} or the environment", path.display()),
                    Source::BuiltInDefaults => " in the environment".into(),
                },
                message: error.to_string().trim_end().to_string(),
            })?;
        if let Some(data_dir) = &flags.data_dir {
            config.storage.data_dir = data_dir.clone();
        }
        if let Some(port) = flags.port {
            config.server.port = port;
        }
        config.validate()?;
        Ok((config, source))
    }

    /// Checks every value that has the right type but may still be unusable, and returns the
    /// values that had to be parsed to be checked (addresses, token hashes), so that nothing is
    /// parsed twice.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<Checked, ConfigError> {
        self.check_npis()?;
        let server_addr = socket_addr("server.host", &self.server.host, self.server.port)?;
        let admin_addr = socket_addr("admin.host", &self.admin.host, self.admin.port)?;
        self.check_public_shape()?;
        self.check_positive()?;
        let admin_tokens = self.token_hashes()?;
        self.check_browser_lists()?;
        if !admin_addr.ip().is_loopback() && admin_tokens.is_empty() {
            return Err(invalid(
                "admin.token_hashes",
                format!(
                    "the operator API would listen on {}, off loopback, with no token: \
                     make one with `neuron admin-token` and list its hash here",
                    admin_addr.ip()
                ),
            ));
        }
        Ok(Checked {
            server_addr,
            admin_addr,
            admin_tokens,
        })
    }

    /// The organization's and the providers' NPIs, and the providers' names.
    fn check_npis(&self) -> Result<(), ConfigError> {
        if !npi::is_valid(&self.organization.npi) {
            return Err(invalid(
                "organization.npi",
                format!(
                    "{:?} is not a 10-digit NPI with a valid check digit",
                    self.organization.npi
                ),
            ));
        }
        for (index, provider) in self.providers.iter().enumerate() {
            let key = |field: &str| format!("providers[{index}].{field}");
            if !npi::is_valid(&provider.npi) {
                return Err(invalid(
                    &key("npi"),
                    format!(
                        "{:?} is not a 10-digit NPI with a valid check digit",
                        provider.npi
                    ),
                ));
            }
            if provider.name.trim().is_empty() {
                return Err(invalid(&key("name"), "must not be empty".into()));
            }
            if self.providers[..index]
                .iter()
                .any(|earlier| earlier.npi == provider.npi)
            {
                return Err(invalid(
                    &key("npi"),
                    format!("{} is listed twice", provider.npi),
                ));
            }
        }
        Ok(())
    }

    /// The URL handed to patients' agents and the path the handshake is served on.
    fn check_public_shape(&self) -> Result<(), ConfigError> {
        if !(self.server.public_url.starts_with("http://")
            || self.server.public_url.starts_with("https://"))
        {
            return Err(invalid(
                "server.public_url",
                format!("{:?} is not an http(s) URL", self.server.public_url),
            ));
        }
        if !self.websocket.path.starts_with('/')
            || self.websocket.path.contains(char::is_whitespace)
        {
            return Err(invalid(
                "websocket.path",
                format!("{:?} is not an absolute path", self.websocket.path),
            ));
        }
        Ok(())
    }

    /// Every limit, timeout and count that zero would make meaningless.
    fn check_positive(&self) -> Result<(), ConfigError> {
        let (server, admin, websocket) = (&self.server, &self.admin, &self.websocket);
        let positive = [
            (
                "websocket.max_concurrent_handshakes",
                u64::from(websocket.max_concurrent_handshakes),
            ),
            ("websocket.auth_timeout_ms", websocket.auth_timeout_ms),
            (
                "websocket.challenge_timeout_ms",
                websocket.challenge_timeout_ms,
            ),
            ("websocket.queue_timeout_ms", websocket.queue_timeout_ms),
            (
                "websocket.max_payload_bytes",
                websocket.max_payload_bytes as u64,
            ),
            ("audit.checkpoint_every", self.audit.checkpoint_every),
            ("server.header_timeout_ms", server.header_timeout_ms),
            ("server.max_connections", u64::from(server.max_connections)),
            ("server.shutdown_grace_ms", server.shutdown_grace_ms),
            ("websocket.write_timeout_ms", websocket.write_timeout_ms),
            ("admin.max_connections", u64::from(admin.max_connections)),
            ("admin.max_exports", u64::from(admin.max_exports)),
        ];
        match positive.into_iter().find(|&(_, value)| value == 0) {
            Some((key, _)) => Err(invalid(key, "must be greater than 0".into())),
            None => Ok(()),
        }
    }

    /// The accepted bearer tokens' hashes, parsed.
    fn token_hashes(&self) -> Result<Vec<blake3::Hash>, ConfigError> {
        self.admin
            .token_hashes
            .iter()
            .enumerate()
            .map(|(index, hash)| {
                let parsed = (hash.len() == 64)
                    .then(|| blake3::Hash::from_hex(hash).ok())
                    .flatten();
                parsed.ok_or_else(|| {
                    invalid(
                        &format!("admin.token_hashes[{index}]"),
                        "is not a 64-character blake3 hex hash".into(),
                    )
                })
            })
            .collect()
    }

    /// `admin.allowed_hosts` and `admin.allowed_origins`: Host header values and origins.
    fn check_browser_lists(&self) -> Result<(), ConfigError> {
        for (index, host) in self.admin.allowed_hosts.iter().enumerate() {
            if host.is_empty()
                || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/')
            {
                return Err(invalid(
                    &format!("admin.allowed_hosts[{index}]"),
                    format!("{host:?} is not a Host header value (host or host:port)"),
                ));
            }
        }
        for (index, origin) in self.admin.allowed_origins.iter().enumerate() {
            let rest = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let valid = rest.is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/')
            });
            if !valid {
                return Err(invalid(
                    &format!("admin.allowed_origins[{index}]"),
                    format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
                ));
            }
        }
        Ok(())
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
    ("server", "header_timeout_ms"),
    ("server", "max_connections"),
    ("server", "shutdown_grace_ms"),
    ("admin", "allowed_hosts"),
    ("admin", "allowed_origins"),
    ("admin", "max_connections"),
    ("admin", "max_exports"),
    ("websocket", "write_timeout_ms"),
];

/// An environment value as TOML: a number, boolean or array when it reads as one, else a string.
fn environment_value(text: &str) -> toml::Value {
    let wrapped = format!("value = {text}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => table
            .remove("value")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

/// The commented `neuron.toml` that `neuron init` writes.
pub const TEMPLATE: &str = r#"# Neuron configuration. Every key is shown with its default.
# Environment variables override keys: NEURON_<SECTION>__<KEY>, e.g. NEURON_WEBSOCKET__MAX_QUEUED=5000.

[organization]
npi = "1245319599"              # 10 digits, Luhn-valid (prefix 80840)
name = "Demo Clinic"

[server]                        # the public WebSocket listener
host = "127.0.0.1"
port = 3000                     # 0 = pick a free port; the bound address is written to {data_dir}/serve.addr
public_url = "http://localhost:3000"   # provider endpoints are {public_url}/ws/provider/{npi}
header_timeout_ms = 5000        # a request's header must arrive within this (from promotion when queued);
                                # on the operator listener also the idle keep-alive and body limit
max_connections = 20000         # open connections on this listener, queued ones included; then 503
shutdown_grace_ms = 5000        # a graceful stop ends within this, whatever clients do

[admin]                         # the operator listener: health, metrics, views, providers, export
host = "127.0.0.1"
port = 3001                     # 0 = pick a free port; written to {data_dir}/admin.addr
token_hashes = []               # blake3 hex of bearer tokens (`neuron admin-token` makes one);
                                # with any listed, /v1/* needs one; required off loopback
allowed_hosts = []              # Host header values accepted besides the listener's address and localhost
allowed_origins = []            # browser origins allowed; a request with any other Origin gets 403
max_connections = 64            # open connections on the operator listener
max_exports = 2                 # export streams at once; more get 503 with Retry-After

[websocket]
path = "/ws/handshake"
max_concurrent_handshakes = 10  # live handshakes; more wait in a FIFO queue without their HTTP 101
max_queued = 1000               # past this, HTTP 503 at once
auth_timeout_ms = 10000
challenge_timeout_ms = 10000
queue_timeout_ms = 30000        # a queued upgrade waiting longer gets HTTP 503 with Retry-After
max_payload_bytes = 65536       # larger frames are refused with close 1009
write_timeout_ms = 5000         # a frame the client does not take within this ends its session

[storage]
data_dir = "./data"             # the event log, the Neuron's key (neuron.key, mode 0600), serve.addr

[audit]
checkpoint_every = 1000         # a signed log.checkpoint whenever the next seq is a multiple of this

# The organization's providers. Changes are recorded as events at start-up.
[[providers]]
npi = "1234567893"
name = "Demo Provider"
"#;

/// `host:port` as a socket address, `key` named when the host is not an IP address.
fn socket_addr(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| invalid(key, format!("{host:?} is not an IP address")))?;
    Ok(SocketAddr::new(ip, port))
}

/// The refusal of `key`'s value, saying why.
fn invalid(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_text(text: &str, environment: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: "tmp".into(),
            source,
        })?;
        let path = dir.path().join("neuron.toml");
        std::fs::write(&path, text).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::load(Some(&path), env(environment), &Flags::default()).map(|(config, _)| config)
    }

    #[test]
    fn the_template_is_the_default_configuration() {
        let config = load_text(TEMPLATE, &[]).map_err(|e| e.to_string());
        assert_eq!(config, Ok(Config::default()));
    }

    #[test]
    fn environment_overrides_file_and_flags_override_both() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "[websocket]\nmax_queued = 7\n").unwrap_or_else(|e| panic!("{e}"));
        let flags = Flags {
            data_dir: Some("/tmp/x".into()),
            port: Some(0),
        };
        let (config, source) = Config::load(
            Some(&path),
            env(&[
                ("NEURON_WEBSOCKET__MAX_CONCURRENT_HANDSHAKES", "500"),
                ("NEURON_SERVER__PORT", "4000"),
                ("OTHER", "x"),
            ]),
            &flags,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source, Source::File(path));
        assert_eq!(
            (
                config.websocket.max_queued,
                config.websocket.max_concurrent_handshakes
            ),
            (7, 500)
        );
        assert_eq!(
            (config.server.port, config.storage.data_dir),
            (0, PathBuf::from("/tmp/x"))
        );
        assert!(
            config.providers.is_empty(),
            "a file without providers has none"
        );
    }

    #[test]
    fn keys_added_later_change_the_digest_only_when_they_leave_their_defaults() {
        let default = Config::default();
        let mut set = default.clone();
        set.server.header_timeout_ms = 6000;
        assert_ne!(set.digest(), default.digest());
        set.server.header_timeout_ms = default.server.header_timeout_ms;
        assert_eq!(set.digest(), default.digest());
        set.admin.allowed_origins = vec!["https://console.example".into()];
        assert_ne!(set.digest(), default.digest());
        // The digest of a configuration that names none of the later keys is the one recorded
        // before they existed (the paths' snapshots lock it in their server.started records).
        let text = toml::to_string(&default).unwrap_or_default();
        assert!(text.contains("header_timeout_ms"));
    }

    #[test]
    fn the_operator_api_may_leave_loopback_only_with_a_token() {
        let hash = blake3::hash(b"token").to_hex().to_string();
        let text = format!("[admin]\nhost = \"0.0.0.0\"\ntoken_hashes = [\"{hash}\"]\n");
        let config = load_text(&text, &[]).map_err(|e| e.to_string());
        assert!(config.is_ok(), "{config:?}");
        let loopback = load_text("[admin]\nhost = \"::1\"\n", &[]).map_err(|e| e.to_string());
        assert!(loopback.is_ok(), "{loopback:?}");
    }

    #[test]
    fn bad_configurations_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("[websocket]\nmax_queud = 3\n", &[], "max_queud"),
            ("[websocket]\nmax_queued = \"many\"\n", &[], "max_queued"),
            (
                "[organization]\nnpi = \"1234567890\"\n",
                &[],
                "organization.npi",
            ),
            (
                "[[providers]]\nnpi = \"1234567894\"\nname = \"X\"\n",
                &[],
                "providers[0].npi",
            ),
            (
                "[websocket]\nauth_timeout_ms = 0\n",
                &[],
                "websocket.auth_timeout_ms",
            ),
            ("[server]\nhost = \"not an address\"\n", &[], "server.host"),
            ("", &[("NEURON_WEBSOCKET__NOPE", "1")], "websocket.nope"),
            (
                "",
                &[("NEURON_AUDIT__CHECKPOINT_EVERY", "0")],
                "audit.checkpoint_every",
            ),
            ("[surprise]\nx = 1\n", &[], "surprise"),
            ("[admin]\nhost = \"0.0.0.0\"\n", &[], "admin.token_hashes"),
            (
                "[admin]\ntoken_hashes = [\"abc\"]\n",
                &[],
                "admin.token_hashes[0]",
            ),
            (
                "[admin]\nallowed_origins = [\"console.example\"]\n",
                &[],
                "admin.allowed_origins[0]",
            ),
            (
                "[admin]\nallowed_hosts = [\"a b\"]\n",
                &[],
                "admin.allowed_hosts[0]",
            ),
            (
                "",
                &[("NEURON_SERVER__HEADER_TIMEOUT_MS", "0")],
                "server.header_timeout_ms",
            ),
            (
                "[server]\nmax_connections = 0\n",
                &[],
                "server.max_connections",
            ),
            (
                "[websocket]\nwrite_timeout_ms = 0\n",
                &[],
                "websocket.write_timeout_ms",
            ),
            ("[admin]\nmax_exports = 0\n", &[], "admin.max_exports"),
        ];
        for (text, environment, key) in cases {
            let message = match load_text(text, environment) {
                Ok(_) => panic!("{text:?} {environment:?} was accepted"),
                Err(error) => error.to_string(),
            };
            assert!(message.contains(key), "{message:?} does not name {key}");
        }
    }
}
