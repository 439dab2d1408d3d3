//! The log never lies, proved against the real `neuron` binary on loopback:
//!
//! - a server SIGKILLed under load restarts cleanly every time (no false alarm), and the
//!   investigators read the store it left behind without changing a byte of it;
//! - a stopped server's store that lost records is refused by `serve` and reported by `verify`,
//!   naming what is missing;
//! - a full disk (a file size limit) stops the server at once with the real cause, and the log
//!   verifies after a restart;
//! - under a small open-file limit it cannot raise, idle sockets never take the descriptors the
//!   operator API and new clients need.

mod common;

use common::{neuron, said};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::served::{serve, serve_with, Limit};

fn load(url: &str, total: u64) -> neuron::tools::loadgen::Summary {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(neuron::tools::loadgen::run(neuron::tools::loadgen::Load {
        url: url.to_string(),
        total,
        concurrency: 8,
        mode: neuron::tools::loadgen::Mode::New,
        provider: "1234567893".into(),
        receipt: false,
    }))
}

/// Every file under `dir` with the blake3 hash of its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), "folder".into());
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    files
}

fn public_key(data: &Path) -> String {
    neuron_events::NeuronKey::load(&data.join("neuron.key"))
        .unwrap()
        .public_b64()
}

/// A small deterministic generator for kill delays, so that a failing round can be reproduced.
fn next_delay(state: &mut u64) -> Duration {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    Duration::from_millis(20 + (*state >> 33) % 300)
}

#[test]
fn a_server_killed_under_load_restarts_cleanly_and_a_store_that_lost_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut state = 0x5eed_u64;
    let mut completed = 0;
    for round in 0..6 {
        let server = serve(&data, round, None)
            .unwrap_or_else(|error| panic!("round {round}: false alarm at restart: {error}"));
        // Load in small batches until the server is gone; it is killed once the first batch is
        // through, at a random moment of the ones that follow.
        let url = server.url.clone();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = done.clone();
        let loading = std::thread::spawn(move || loop {
            let summary = load(&url, 40);
            counted.fetch_add(summary.completed, std::sync::atomic::Ordering::SeqCst);
            if summary.failed > 0 {
                break;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no handshake completed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(next_delay(&mut state));
        server.signal(libc::SIGKILL);
        let _ = server.wait();
        loading.join().unwrap();
        completed += done.load(std::sync::atomic::Ordering::SeqCst);

        // The investigators read what the killed server left, and change none of it.
        let before = tree(&data);
        let key = public_key(&data);
        let path = data.to_str().unwrap();
        let verified = neuron(&["verify", path]);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "round {round}: {}",
            said(&verified)
        );
        // A killed server leaves records after its last checkpoint: accepted when asked, unless
        // no checkpoint was written at all (then nothing is signed by the trusted key).
        let trusted = neuron(&[
            "verify",
            path,
            "--trusted-key",
            &key,
            "--allow-unsigned-tail",
        ]);
        if said(&verified).contains("last checkpoint: none") {
            assert_eq!(
                trusted.status.code(),
                Some(1),
                "round {round}: {}",
                said(&trusted)
            );
            assert!(said(&trusted).contains("signed by no trusted checkpoint"));
        } else {
            assert_eq!(
                trusted.status.code(),
                Some(0),
                "round {round}: {}",
                said(&trusted)
            );
        }
        for args in [
            &["replay", path][..],
            &["timeline", path, "--provider", "1234567893"],
            &["export", path],
        ] {
            let output = neuron(args);
            assert_eq!(output.status.code(), Some(0), "{args:?}: {}", said(&output));
        }
        assert_eq!(tree(&data), before, "round {round}: an investigator wrote");
    }
    assert!(
        completed > 0,
        "no handshake completed: the test exercised nothing"
    );

    let server = serve(&data, 99, None).unwrap();
    server.signal(libc::SIGTERM);
    let (status, logged) = server.wait();
    assert!(status.success(), "{logged}");
    let key = public_key(&data);
    let path = data.to_str().unwrap();
    let verified = neuron(&["verify", path, "--trusted-key", &key]);
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
    let before = tree(&data);
    for args in [&["verify", path][..], &["replay", path], &["export", path]] {
        assert!(neuron(args).status.success());
    }
    assert_eq!(
        tree(&data),
        before,
        "an investigator wrote to a stopped server's store"
    );

    // A store cut short, as a bad disk or a careless copy leaves it, near its end and in its
    // middle. Whatever sled makes of a cut (it depends on where its segments fall), the store is
    // either refused and reported, naming what to do, or still holds the whole log.
    let whole = neuron(&["verify", path, "--format", "json"]);
    let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    for keep_per_cent in [99, 75, 50] {
        let copy = dir.path().join(format!("cut-{keep_per_cent}"));
        copy_tree(&data, &copy);
        let db = copy.join("log").join("db");
        let length = std::fs::metadata(&db).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        file.set_len(length * keep_per_cent / 100).unwrap();
        drop(file);
        let verified = neuron(&["verify", copy.to_str().unwrap(), "--format", "json"]);
        let report: serde_json::Value = serde_json::from_slice(&verified.stdout)
            .unwrap_or_else(|_| panic!("cut to {keep_per_cent}%: {}", said(&verified)));
        match verified.status.code() {
            Some(0) => {
                assert_eq!(
                    (&report["report"]["last_seq"], &report["report"]["head"]),
                    (&whole["report"]["last_seq"], &whole["report"]["head"]),
                    "cut to {keep_per_cent}%: verified as a different log"
                );
                let server = serve(&copy, 100, None).unwrap();
                server.signal(libc::SIGTERM);
                assert!(server.wait().0.success());
            }
            Some(1) => {
                assert!(report["report"]["problem"].is_object(), "{report}");
                let message = match serve(&copy, 100, None) {
                    Err(message) => message,
                    Ok(server) => panic!("served a damaged store: {:?}", server.wait()),
                };
                assert!(message.contains("refusing the log at"), "{message}");
                assert!(message.contains("neuron restore"), "{message}");
            }
            other => panic!(
                "cut to {keep_per_cent}%: exit {other:?}: {}",
                said(&verified)
            ),
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_full_disk_stops_the_server_with_its_cause_and_the_log_verifies_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, 0, Some(Limit::FileSize(1_500_000))).unwrap();
    let url = server.url.clone();
    let summary = load(&url, 5_000);
    let (status, logged) = server.wait();
    assert!(
        summary.completed > 0,
        "nothing completed before the disk filled"
    );
    assert!(summary.failed > 0, "the disk never filled");
    assert!(!status.success(), "{logged}");
    assert!(logged.contains("File too large"), "{logged}");
    assert!(logged.contains("fail-stop"), "{logged}");

    let server = serve(&data, 1, None).unwrap();
    let completed = load(&server.url, 20).completed;
    assert_eq!(completed, 20);
    server.signal(libc::SIGTERM);
    let (status, logged) = server.wait();
    assert!(status.success(), "{logged}");
    let key = public_key(&data);
    let verified = neuron(&["verify", data.to_str().unwrap(), "--trusted-key", &key]);
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
}

/// Sends `request` on a fresh connection to `addr` and reads the answer's first line (a generous
/// bound, so that a never fails the test rather than hangs it).
fn first_line(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn under_a_small_open_file_limit_idle_sockets_starve_neither_the_operator_api_nor_new_clients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Idle sockets are not closed for their silence or their wait during the test: what they
    // hold, they hold.
    let server = serve_with(
        &data,
        0,
        Some(Limit::OpenFiles(64)),
        &[
            ("NEURON_SERVER__HEADER_TIMEOUT_MS", "600000"),
            ("NEURON_WEBSOCKET__QUEUE_TIMEOUT_MS", "600000"),
        ],
    )
    .unwrap();
    let public = server.url["ws://".len()..]
        .trim_end_matches("/ws/handshake")
        .to_string();
    let admin = std::fs::read_to_string(data.join("admin.addr"))
        .unwrap()
        .trim()
        .to_string();
    // 55 sockets that never send a byte, then a look at the operator API and a new client.
    let idle: Vec<_> = (0..55)
        .map(|_| std::net::TcpStream::connect(&public).unwrap())
        .collect();
    let health = first_line(
        &admin,
        &format!("GET /health HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(health, "HTTP/1.1 200 OK");
    let upgrade = first_line(
        &public,
        "GET /ws/handshake HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(upgrade.starts_with("HTTP/1.1 "), "{upgrade:?}");
    drop(idle);
    server.signal(libc::SIGTERM);
    let (status, logged) = server.wait();
    assert!(status.success(), "{logged}");
    // The limit it could not raise, and the fewer connections it served, are logged.
    assert!(logged.contains("serving fewer"), "{logged}");
    let verified = neuron(&["verify", data.to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
}

#[test]
fn a_lost_log_or_a_lost_key_is_refused_unless_the_operator_starts_over_on_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, 0, None).unwrap();
    load(&server.url, 3);
    server.signal(libc::SIGTERM);
    assert!(server.wait().0.success());
    let first_key = public_key(&data);

    // The log gone, the key kept: refused, naming both and what to do; no empty log is made.
    std::fs::remove_dir_all(data.join("log")).unwrap();
    let refused = serve(&data, 1, None).err().unwrap();
    assert!(
        refused.contains("neuron.key exists but the log at"),
        "{refused}"
    );
    assert!(
        refused.contains("neuron restore") && refused.contains("--new-log"),
        "{refused}"
    );
    assert!(!data.join("log").exists(), "a refused start made a log");
    let started = common::served::serve_args(&data, 2, None, &[], &["--new-log"]).unwrap();
    started.signal(libc::SIGTERM);
    assert!(started.wait().0.success());
    let records = String::from_utf8(neuron(&["export", data.to_str().unwrap()]).stdout).unwrap();
    let first = records.lines().next().unwrap();
    assert!(first.contains("\"kind\":\"server.started\""), "{first}");
    assert!(
        first.contains(
            "\"decision\":\"a new, empty log beside the existing key (neuron serve --new-log)"
        ),
        "{first}"
    );
    assert!(first.contains(&first_key), "{first}");

    // The key gone, the log kept: refused; no key is made.
    std::fs::remove_file(data.join("neuron.key")).unwrap();
    let refused = serve(&data, 3, None).err().unwrap();
    assert!(refused.contains("neuron.key is missing"), "{refused}");
    assert!(refused.contains("--new-key"), "{refused}");
    assert!(
        !data.join("neuron.key").exists(),
        "a refused start made a key"
    );
    let started = common::served::serve_args(&data, 4, None, &[], &["--new-key"]).unwrap();
    started.signal(libc::SIGTERM);
    assert!(started.wait().0.success());
    let second_key = public_key(&data);
    assert_ne!(second_key, first_key);
    let records = String::from_utf8(neuron(&["export", data.to_str().unwrap()]).stdout).unwrap();
    let restart = records
        .lines()
        .rfind(|line| line.contains("\"kind\":\"server.started\""))
        .unwrap();
    assert!(restart.contains(&second_key), "{restart}");
    assert!(
        restart.contains("\"decision\":\"a new key for this log (neuron serve --new-key)"),
        "{restart}"
    );
    let verified = neuron(&["verify", data.to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
}
