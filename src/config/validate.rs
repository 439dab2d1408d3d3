//! The checks a configuration of the right types must still pass, and the values they parse.

use std::net::{IpAddr, SocketAddr};

use neuron_handshake::npi;

use super::{Checked, Config, ConfigError};

impl Config {
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
        self.check_storage()?;
        self.check_audit()?;
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
            ("audit.witness_interval_ms", self.audit.witness_interval_ms),
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
}

impl Config {
    /// Where the log lives: a data directory that is a path, and the PostgreSQL settings the
    /// backend needs.
    fn check_storage(&self) -> Result<(), ConfigError> {
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "storage.data_dir",
                "must not be empty: name the directory for the key and the log (the default is ./data)".into(),
            ));
        }
        match (self.storage.backend, &self.storage.postgres) {
            (super::Backend::Postgres, None) => Err(invalid(
                "storage.postgres.url",
                "storage.backend is \"postgres\": [storage.postgres] must give the url".into(),
            )),
            (super::Backend::Postgres, Some(postgres)) => {
                if !(postgres.url.starts_with("postgres://")
                    || postgres.url.starts_with("postgresql://"))
                {
                    return Err(invalid(
                        "storage.postgres.url",
                        "is not a postgres:// URL".into(),
                    ));
                }
                match neuron_events::store::PostgresLocation::parse(&postgres.url) {
                    Ok(location) if location.url != postgres.url => return Err(invalid(
                        "storage.postgres.url",
                        "names the log with a log= parameter: name it with storage.postgres.log"
                            .into(),
                    )),
                    Ok(_) => {}
                    Err(error) => return Err(invalid("storage.postgres.url", error.to_string())),
                }
                if postgres.log.is_empty()
                    || postgres.log.len() > 64
                    || !postgres
                        .log
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(invalid(
                        "storage.postgres.log",
                        format!(
                            "{:?} is not a log name (1 to 64 letters, digits, '_' or '-')",
                            postgres.log
                        ),
                    ));
                }
                if postgres.commit_timeout_ms == 0 {
                    return Err(invalid(
                        "storage.postgres.commit_timeout_ms",
                        "must be greater than 0".into(),
                    ));
                }
                Ok(())
            }
            (super::Backend::Sled, _) => Ok(()),
        }
    }

    /// The log's origin and the witnesses: names that can be key names, keys that are
    /// cosignature keys, URLs, a quorum the list can reach.
    fn check_audit(&self) -> Result<(), ConfigError> {
        use neuron_events::note::{VerifierKey, COSIGNATURE_V1};
        let origin = self.origin();
        let origin_key = if self.audit.origin.is_empty() {
            "server.public_url"
        } else {
            "audit.origin"
        };
        if origin.is_empty()
            || origin.starts_with('/')
            || origin.contains('+')
            || origin.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                origin_key,
                format!(
                    "the log's origin would be {origin:?}: it must be non-empty, with no spaces or '+' (set audit.origin)"
                ),
            ));
        }
        for (index, witness) in self.audit.witnesses.iter().enumerate() {
            let key = |field: &str| format!("audit.witnesses[{index}].{field}");
            let vkey = VerifierKey::parse(&witness.vkey)
                .map_err(|error| invalid(&key("vkey"), error.to_string()))?;
            if vkey.signature_type != COSIGNATURE_V1 {
                return Err(invalid(
                    &key("vkey"),
                    "is not a cosignature/v1 key (signature type 0x04)".into(),
                ));
            }
            if vkey.name != witness.name {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "{:?} is not the name of its vkey ({:?})",
                        witness.name, vkey.name
                    ),
                ));
            }
            if !(witness.url.starts_with("http://") || witness.url.starts_with("https://")) {
                return Err(invalid(
                    &key("url"),
                    format!("{:?} is not an http(s) URL", witness.url),
                ));
            }
            if self.audit.witnesses[..index]
                .iter()
                .any(|earlier| earlier.name == witness.name)
            {
                return Err(invalid(
                    &key("name"),
                    format!("{:?} is listed twice", witness.name),
                ));
            }
        }
        if self.audit.witness_quorum as usize > self.audit.witnesses.len() {
            return Err(invalid(
                "audit.witness_quorum",
                format!(
                    "{} cosignatures cannot come from {} witnesses",
                    self.audit.witness_quorum,
                    self.audit.witnesses.len()
                ),
            ));
        }
        Ok(())
    }
}

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
