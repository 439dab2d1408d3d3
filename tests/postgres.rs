//! The log on replicated PostgreSQL (SPEC §3.6), against a real three-node cluster (a primary and
//! two synchronous standbys, `ANY 1 (s1, s2)`) and the real `neuron` binary, with a load that
//! records every handshake the server acknowledged (every `handshake.complete` it sent):
//!
//! - the primary SIGKILLed under load (c = 64), a standby promoted, the Neuron started on it:
//!   every acknowledged handshake is in the log, the chain and the tree verify, and the server's
//!   views equal a replay;
//! - a second `neuron serve` on the same log fences the first, which stops at its next batch;
//!   the writer's connection killed from the server side (`pg_terminate_backend`) stops the
//!   writer too; each restart holds everything acknowledged, and the log verifies;
//! - one standby down: handshakes go on; both down: nothing more is acknowledged, and the server
//!   stops after the commit timeout;
//! - bad input (a wrong URL or password, a database whose tables are not a log, a log of another
//!   origin) is named, exits non-zero and writes nothing;
//! - a log moves from sled to PostgreSQL and back byte for byte.
//!
//! Without PostgreSQL 15 these tests say loudly that they did not run (and fail in CI).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::acknowledged::{
    holds_every_acknowledged, load_until_failure, serve_config as serve, until_acknowledged,
    verify_intact,
};
use common::postgres::{write_config, Cluster};
use common::served::Served;
use common::{neuron, said};

/// Waits (generously) for a server expected to stop on its own; its exit status and output.
fn stopped_on_its_own(server: Served) -> (std::process::ExitStatus, String) {
    server.wait()
}

/// The relationship ids the running server's operator API lists, every page.
fn listed_relationships(data: &Path) -> BTreeSet<String> {
    let admin: std::net::SocketAddr = std::fs::read_to_string(data.join("admin.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(after) => format!("/v1/relationships?limit=1000&after={after}"),
            None => "/v1/relationships?limit=1000".to_string(),
        };
        let (status, body) = runtime.block_on(common::get(admin, &path, None));
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        for relationship in page["relationships"].as_array().unwrap() {
            ids.insert(relationship["id"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return ids,
        }
    }
}

/// The relationship ids `neuron replay` finds in the log at `url`.
fn replayed_relationships(url: &str) -> BTreeSet<String> {
    let output = neuron(&["replay", url, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let views: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    views["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|relationship| relationship["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn killing_the_primary_under_load_loses_no_acknowledged_handshake() {
    let Some(mut cluster) = Cluster::start("killing_the_primary_under_load") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = cluster.config(&data, "main", "");
    let server = serve(&data, &config, 0).unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let loading = load_until_failure(server.url.clone(), 64, acknowledged.clone(), stop.clone());
    until_acknowledged(&acknowledged, 300);
    cluster.kill_primary();
    // The server cannot know whether its batch committed: it stops rather than guess.
    let (status, output) = stopped_on_its_own(server);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("the event log could not be written"),
        "{output}"
    );
    stop.store(true, Ordering::SeqCst);
    loading.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    cluster.promote();
    let config = cluster.config(&data, "main", "");
    let server = serve(&data, &config, 1).unwrap();
    holds_every_acknowledged(&cluster.url(), &acknowledged);
    let listed = listed_relationships(&data);
    assert!(listed.is_superset(&acknowledged));
    server.signal(libc::SIGTERM);
    let (status, output) = server.wait();
    assert!(status.success(), "{output}");
    assert_eq!(replayed_relationships(&cluster.url()), listed);
    let report = verify_intact(&cluster.url());
    assert_eq!(report["report"]["tree"]["stored"], "checked", "{report}");
}

#[test]
fn a_writer_that_lost_the_log_stops_and_the_next_holds_all_it_acknowledged() {
    let Some(cluster) = Cluster::start("a_writer_that_lost_the_log_stops") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (first_data, second_data) = (dir.path().join("first"), dir.path().join("second"));
    let first_config = cluster.config(&first_data, "main", "");
    let second_config = cluster.config(&second_data, "main", "");
    let first = serve(&first_data, &first_config, 0).unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let loading = load_until_failure(first.url.clone(), 16, acknowledged.clone(), stop.clone());
    until_acknowledged(&acknowledged, 100);

    // A second server on the same log (a standby machine with the same key) takes it over: the
    // first stops at its next batch, naming the epoch that took over.
    std::fs::create_dir_all(&second_data).unwrap();
    std::fs::copy(
        first_data.join("neuron.key"),
        second_data.join("neuron.key"),
    )
    .unwrap();
    let second = serve(&second_data, &second_config, 0).unwrap();
    let (status, output) = stopped_on_its_own(first);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains(
            "fenced: another writer took the log over (epoch 2, this writer held epoch 1)"
        ),
        "{output}"
    );
    stop.store(true, Ordering::SeqCst);
    loading.join().unwrap();
    holds_every_acknowledged(&cluster.url(), &acknowledged.lock().unwrap());
    let report = verify_intact(&cluster.url());
    // No record was written by both: one chain, each server's start recorded once.
    let exported = neuron(&["export", &cluster.url()]);
    let starts = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .filter(|line| line.contains("\"kind\":\"server.started\""))
        .count();
    assert_eq!(starts, 2, "{report}");

    // The writer's connection cut from the database's side, mid-load: the second server cannot
    // know whether its batch committed, and stops.
    let stop = Arc::new(AtomicBool::new(false));
    let loading = load_until_failure(second.url.clone(), 16, acknowledged.clone(), stop.clone());
    let before = acknowledged.lock().unwrap().len();
    until_acknowledged(&acknowledged, before + 100);
    let killed = cluster.sql(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'neuron writer (log main)') AS killed",
    );
    assert_eq!(killed, "1", "the writer's connection was not found");
    let (status, output) = stopped_on_its_own(second);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("the event log could not be written"),
        "{output}"
    );
    stop.store(true, Ordering::SeqCst);
    loading.join().unwrap();

    // The next start reads the head back and goes on from it.
    let third = serve(&second_data, &second_config, 1).unwrap();
    let after = neuron_tools_handshake(&third.url);
    acknowledged.lock().unwrap().insert(after);
    third.signal(libc::SIGTERM);
    assert!(third.wait().0.success());
    holds_every_acknowledged(&cluster.url(), &acknowledged.lock().unwrap());
    verify_intact(&cluster.url());
    // A standby answers investigators as the primary does.
    assert_eq!(
        verify_intact(&cluster.standby_url(1, "main"))["report"]["records"],
        verify_intact(&cluster.url())["report"]["records"]
    );
}

/// One handshake with a new patient; the relationship id it was acknowledged with.
fn neuron_tools_handshake(url: &str) -> String {
    let summary = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(neuron::tools::loadgen::run(neuron::tools::loadgen::Load {
            url: url.to_string(),
            total: 1,
            concurrency: 1,
            mode: neuron::tools::loadgen::Mode::New,
            provider: "1234567893".into(),
            receipt: false,
        }));
    assert_eq!(summary.completed, 1);
    summary.acknowledged[0].clone()
}

#[test]
fn with_one_standby_down_commits_go_on_and_with_both_down_the_server_stops() {
    let Some(cluster) = Cluster::start("with_one_standby_down") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = cluster.config(&data, "main", "");
    let server = serve(&data, &config, 0).unwrap();
    let mut acknowledged = BTreeSet::new();
    acknowledged.insert(neuron_tools_handshake(&server.url));

    cluster.stop_node(1);
    for _ in 0..5 {
        acknowledged.insert(neuron_tools_handshake(&server.url));
    }

    cluster.stop_node(2);
    let shared = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let loading = load_until_failure(server.url.clone(), 4, shared.clone(), stop.clone());
    let (status, output) = stopped_on_its_own(server);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("no synchronous standby confirmed the commit within 3000 ms"),
        "{output}"
    );
    stop.store(true, Ordering::SeqCst);
    loading.join().unwrap();
    let during = shared.lock().unwrap().clone();
    assert!(
        during.is_empty(),
        "acknowledged while no standby could confirm: {during:?}"
    );

    cluster.start_node(1);
    cluster.start_node(2);
    let server = serve(&data, &config, 1).unwrap();
    acknowledged.insert(neuron_tools_handshake(&server.url));
    server.signal(libc::SIGTERM);
    assert!(server.wait().0.success());
    holds_every_acknowledged(&cluster.url(), &acknowledged);
    verify_intact(&cluster.url());
}

#[test]
fn bad_input_is_named_exits_non_zero_and_writes_nothing() {
    let Some(cluster) = Cluster::start("bad_input_is_named") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let refused = |data: &Path, config: &Path, expected: &str| {
        let message = match serve(data, config, 0) {
            Err(message) => message,
            Ok(server) => panic!("served: {:?}", server.wait()),
        };
        assert!(message.contains(expected), "{message}");
        assert!(!data.exists(), "a refused start wrote {}", data.display());
    };

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let data = dir.path().join("nowhere");
    let config = write_config(
        &data,
        &format!("postgres://neuron@127.0.0.1:{port}/neuron"),
        "main",
        "",
    );
    refused(&data, &config, "postgres: could not connect to");

    // A wrong password.
    let data = dir.path().join("password");
    let config = write_config(
        &data,
        &format!(
            "postgres://neuron_secret:wrong@127.0.0.1:{}/neuron",
            cluster.primary
        ),
        "main",
        "",
    );
    refused(
        &data,
        &config,
        "password authentication failed for user \"neuron_secret\"",
    );

    // A database that holds no log, to an investigator; one whose tables of those names are
    // another application's, to a server, which adds nothing beside them.
    cluster.sql("CREATE DATABASE other OWNER neuron");
    let other = format!("postgres://neuron@127.0.0.1:{}/other", cluster.primary);
    let output = neuron(&["verify", &other]);
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(
        said(&output).contains("this database holds no Neuron log"),
        "{}",
        said(&output)
    );
    cluster.sql_in(
        "other",
        "CREATE TABLE neuron_records (id integer, payload text)",
    );
    cluster.sql_in("other", "ALTER TABLE neuron_records OWNER TO neuron");
    let data = dir.path().join("other");
    let config = write_config(&data, &other, "main", "");
    refused(&data, &config, "are not a Neuron log's tables");
    assert_eq!(
        cluster.sql_in(
            "other",
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "neuron_records"
    );

    // A log another origin holds: refused before anything changes, the writer row included.
    let data = dir.path().join("first");
    let config = cluster.config(&data, "main", "origin = \"hospital-a.example/neuron\"");
    let server = serve(&data, &config, 0).unwrap();
    server.signal(libc::SIGTERM);
    assert!(server.wait().0.success());
    let writer =
        cluster.sql("SELECT origin, epoch, head_seq FROM neuron_writers WHERE log = 'main'");
    assert!(
        writer.starts_with("hospital-a.example/neuron|1|"),
        "{writer}"
    );
    let data = dir.path().join("second");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(dir.path().join("first/neuron.key"), data.join("neuron.key")).unwrap();
    let config = cluster.config(&data, "main", "origin = \"hospital-b.example/neuron\"");
    let message = serve(&data, &config, 0).err().unwrap();
    assert!(
        message.contains("audit.origin is \"hospital-b.example/neuron\""),
        "{message}"
    );
    assert_eq!(
        cluster.sql("SELECT origin, epoch, head_seq FROM neuron_writers WHERE log = 'main'"),
        writer
    );

    // A cluster that does not wait for a standby: refused, unless the operator accepts the risk
    // (then the server says what it risks, once).
    cluster.sql("ALTER SYSTEM SET synchronous_standby_names = ''");
    cluster.sql("SELECT pg_reload_conf()");
    let data = dir.path().join("unreplicated");
    let config = cluster.config(&data, "other-log", "");
    refused(
        &data,
        &config,
        "the database does not wait for a synchronous standby",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "commit_timeout_ms = 3000\n",
            "commit_timeout_ms = 3000\nrequire_sync_standbys = false\n",
        ),
    )
    .unwrap();
    let server = serve(&data, &config, 0).unwrap();
    server.signal(libc::SIGTERM);
    let (status, output) = server.wait();
    assert!(status.success(), "{output}");
    assert_eq!(
        output
            .matches("an acknowledged handshake can be lost with the primary")
            .count(),
        1,
        "{output}"
    );
}

/// The records of the log at `source`, as `neuron export` writes them.
fn export_lines(source: &str) -> Vec<String> {
    let output = neuron(&["export", source]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Serves `data` (on `config` when given, else on its sled log), makes `count` handshakes and
/// stops gracefully.
fn serve_some(data: &Path, config: Option<&Path>, count: u64, run: usize) {
    let server = match config {
        Some(config) => serve(data, config, run).unwrap(),
        None => common::served::serve(data, run, None).unwrap(),
    };
    for _ in 0..count {
        neuron_tools_handshake(&server.url);
    }
    server.signal(libc::SIGTERM);
    let (status, output) = server.wait();
    assert!(status.success(), "{output}");
}

#[test]
fn a_log_moves_from_sled_to_postgres_and_back_byte_for_byte() {
    let Some(cluster) = Cluster::start("a_log_moves_from_sled_to_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = dir.path().join("sled");
    serve_some(&sled, None, 5, 0);
    let from_sled = export_lines(sled.to_str().unwrap());
    let export = dir.path().join("from-sled.jsonl");
    std::fs::write(&export, from_sled.join("\n") + "\n").unwrap();

    // Onto PostgreSQL, the key into the server's new data directory.
    let moved = format!("{}?log=moved", cluster.url());
    let pg_data = dir.path().join("pg-data");
    let key = sled.join("neuron.key");
    let restore = |export: &Path, to: &[&str], key: &Path| {
        let mut args = vec![
            "restore",
            export.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(to);
        neuron(&args)
    };
    let output = restore(
        &export,
        &["--to", &moved, "--data-dir", pg_data.to_str().unwrap()],
        &key,
    );
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let on_postgres = export_lines(&moved);
    assert_eq!(on_postgres[..from_sled.len()], from_sled[..]);
    assert_eq!(on_postgres.len(), from_sled.len() + 1);
    assert!(on_postgres[from_sled.len()].contains("\"kind\":\"log.restored\""));
    let head = neuron(&["verify", sled.to_str().unwrap(), "--format", "json"]);
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    let expected = format!(
        "{}:{}",
        head["report"]["last_seq"],
        head["report"]["head"].as_str().unwrap()
    );
    let public = neuron_events::NeuronKey::load(&key).unwrap().public_b64();
    let output = neuron(&[
        "verify",
        &moved,
        "--trusted-key",
        &public,
        "--expect-head",
        &expected,
        "--allow-unsigned-tail",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));

    // A log that holds records is never restored over.
    let output = restore(
        &export,
        &[
            "--to",
            &moved,
            "--data-dir",
            dir.path().join("again").to_str().unwrap(),
        ],
        &key,
    );
    assert_eq!(output.status.code(), Some(2), "{}", said(&output));
    assert!(said(&output).contains("already holds"), "{}", said(&output));
    assert_eq!(export_lines(&moved), on_postgres);

    // Served there, it goes on; then back onto sled.
    let config = cluster.config(&pg_data, "moved", "");
    serve_some(&pg_data, Some(&config), 3, 1);
    let served = export_lines(&moved);
    assert_eq!(served[..on_postgres.len()], on_postgres[..]);
    let export = dir.path().join("from-postgres.jsonl");
    std::fs::write(&export, served.join("\n") + "\n").unwrap();
    let back = dir.path().join("back");
    let output = restore(
        &export,
        &["--data-dir", back.to_str().unwrap()],
        &pg_data.join("neuron.key"),
    );
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let on_sled = export_lines(back.to_str().unwrap());
    assert_eq!(on_sled[..served.len()], served[..]);
    serve_some(&back, None, 1, 2);
    let output = neuron(&["verify", back.to_str().unwrap(), "--trusted-key", &public]);
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
}
