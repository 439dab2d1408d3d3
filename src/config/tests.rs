//! The configuration's layering, digest, template and refusals.

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
fn the_origin_is_derived_from_the_public_url_and_the_organization_unless_set() {
    let mut config = Config::default();
    assert_eq!(config.origin(), "localhost/neuron/1245319599");
    assert_eq!(config.origin(), neuron_events::journal::DEMO_ORIGIN);
    config.server.public_url = "https://user@broker.example.org:8443/base?x".into();
    assert_eq!(config.origin(), "broker.example.org/neuron/1245319599");
    config.server.public_url = "https://[::1]:8443".into();
    assert_eq!(config.origin(), "::1/neuron/1245319599");
    config.audit.origin = "example.org/our-log".into();
    assert_eq!(config.origin(), "example.org/our-log");
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
        ("[storage]\ndata_dir = \"\"\n", &[], "storage.data_dir"),
        ("", &[("NEURON_STORAGE__DATA_DIR", "")], "storage.data_dir"),
        ("[storage]\nbackend = \"tape\"\n", &[], "backend"),
        (
            "[storage]\nbackend = \"postgres\"\n",
            &[],
            "storage.postgres.url",
        ),
        (
            "[storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = \"mysql://x\"\n",
            &[],
            "storage.postgres.url",
        ),
        (
            "[storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = \"postgres://x/y?log=other\"\n",
            &[],
            "storage.postgres.url",
        ),
        (
            "[storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = \"postgres://x/y\"\nlog = \"a b\"\n",
            &[],
            "storage.postgres.log",
        ),
        ("[audit]\norigin = \"a b\"\n", &[], "audit.origin"),
        ("[audit]\norigin = \"a+b\"\n", &[], "audit.origin"),
        ("[audit]\nwitness_quorum = 1\n", &[], "audit.witness_quorum"),
        (
            "[audit]\nwitness_interval_ms = 0\n",
            &[],
            "audit.witness_interval_ms",
        ),
        (
            "[[audit.witnesses]]\nname = \"w\"\nvkey = \"w+00000000+AQ==\"\nurl = \"http://127.0.0.1:1/\"\n",
            &[],
            "audit.witnesses[0].vkey",
        ),
    ];
    for (text, environment, key) in cases {
        let message = match load_text(text, environment) {
            Ok(_) => panic!("{text:?} {environment:?} was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(message.contains(key), "{message:?} does not name {key}");
    }
}
