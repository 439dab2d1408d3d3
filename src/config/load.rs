//! Where a configuration comes from: the built-in defaults, a TOML file, `NEURON_<SECTION>__<KEY>`
//! variables and flags, in that order, each refused by the key it names.

use std::path::Path;

use super::{Config, ConfigError, Flags, Source};

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
}

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
