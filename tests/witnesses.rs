//! Witnesses (SPEC §3.5): the Neuron sends its checkpoints to the witnesses it is configured with
//! and records their cosignatures in the log; a witness that misbehaves never delays a handshake
//! and never counts; a log rolled back behind a witness's view is refused until an operator
//! acknowledges the loss, which stays in the log. Against a witness of our own that can be made to
//! misbehave, and against a real third-party one, `aics-witness` from PyPI, whose companion
//! `aics-tlog` also checks our witnessed checkpoints and receipts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::witness::{Behaviour, FakeWitness};
use common::{ada, config, neuron, said, url, NOW, PROVIDER};
use neuron::config::Config;
use neuron::server::{Options, Server, ServerError};
use neuron::tools::client::{self, Patient};
use neuron_events::journal::DEMO_ORIGIN;
use neuron_events::note::{self, Note};
use neuron_events::testing::{fixed_clock, neuron_key};

fn log_vkey() -> neuron_events::note::VerifierKey {
    neuron_key().verifier_key(DEMO_ORIGIN).unwrap()
}

fn witnessed_config(dir: &Path, witnesses: Vec<neuron::config::Witness>) -> Config {
    let mut config = config(dir);
    config.audit.witness_interval_ms = 100;
    config.audit.witnesses = witnesses;
    config
}

async fn start_with(
    config: Config,
    seed: u64,
    acknowledge_rollback: bool,
) -> Result<Server, ServerError> {
    Server::start(
        config,
        Options {
            clock: std::sync::Arc::new(fixed_clock()),
            ids: std::sync::Arc::new(neuron::ids::SeededIds::new(seed)),
            key: Some(neuron_key()),
            acknowledge_rollback,
            start_over: neuron::server::StartOver::Nothing,
        },
    )
    .await
}

async fn complete(server: &Server, patient: &Patient) {
    let done = client::handshake(&url(server), None, patient, PROVIDER, NOW)
        .await
        .unwrap();
    assert!(done.completed(), "{done:?}");
}

/// Waits (generously) until `witness` has cosigned a tree of at least `size` records in the
/// server's views.
async fn until_cosigned(server: &Server, witness: &str, size: u64) {
    for _ in 0..2000 {
        let views = server.views();
        if views
            .witnesses
            .cosigned(witness)
            .is_some_and(|c| c.size >= size)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{witness} never cosigned a tree of {size} records");
}

/// The kinds of a stopped server's records, read without verification (a start refused for a
/// conflict signs no checkpoint over what it recorded).
fn kinds(dir: &Path) -> Vec<String> {
    use neuron_events::Log;
    neuron_events::testing::until_unlocked(&dir.join("log"));
    let log = neuron_events::SledLog::open(&dir.join("log")).unwrap();
    let mut kinds = Vec::new();
    log.scan(1, u64::MAX, &mut |_, bytes| {
        kinds.push(
            neuron_events::Record::decode(bytes)
                .unwrap()
                .event
                .kind()
                .to_string(),
        );
    })
    .unwrap();
    kinds
}

#[tokio::test]
async fn an_honest_witness_cosigns_and_its_cosignatures_land_in_the_log() {
    let witness =
        FakeWitness::start("witness.example/w1", 0x31, log_vkey(), Behaviour::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        witnessed_config(dir.path(), vec![witness.config()]),
        31,
        false,
    )
    .await
    .unwrap();
    complete(&server, &ada()).await;
    let size = server.views().last_seq;
    until_cosigned(&server, &witness.name, size.saturating_sub(2)).await;

    // The served checkpoint is the witnessed one: the witness's cosignature verifies in it.
    let (status, served) = common::get(server.local_addr(), "/log/checkpoint", None).await;
    assert_eq!(status, 200);
    let served = Note::parse(&served).unwrap();
    let verified = note::verify(&served, &[log_vkey(), witness.vkey()]).unwrap();
    assert_eq!(verified.len(), 2, "{served:?}");
    let (_, metrics) = common::get(server.admin_addr(), "/metrics", None).await;
    assert!(
        metrics.contains("neuron_witness_cosignatures_total{witness=\"witness.example/w1\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("neuron_witness_conflict 0"), "{metrics}");
    server.stop("test over").await.unwrap();

    // The shutdown's checkpoint went to the witness too; the log verifies, cosignatures and all.
    let kinds = kinds(dir.path());
    assert!(
        kinds.iter().filter(|kind| *kind == "log.cosigned").count() >= 2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("log.checkpoint"));
    let verified = neuron(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
}

#[tokio::test]
async fn witnesses_that_misbehave_never_count_and_never_delay_a_handshake() {
    let garbage =
        FakeWitness::start("garbage.example/w", 0x41, log_vkey(), Behaviour::Garbage).await;
    let silent = FakeWitness::start("silent.example/w", 0x42, log_vkey(), Behaviour::Silent).await;
    let forger =
        FakeWitness::start("forger.example/w", 0x43, log_vkey(), Behaviour::WrongKey).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        witnessed_config(
            dir.path(),
            vec![garbage.config(), silent.config(), forger.config()],
        ),
        41,
        false,
    )
    .await
    .unwrap();
    // Handshakes complete while every witness misbehaves (the silent one holds its connections
    // far past the interval).
    for index in 0..3u8 {
        complete(
            &server,
            &Patient::from_seed(&format!("patient-{index}"), [index + 1; 32]),
        )
        .await;
    }
    // Rounds go on; after ten without a cosignature each is named by /ready, which stays 200.
    let mut ready = String::new();
    for _ in 0..500 {
        let (status, body) = common::get(server.admin_addr(), "/ready", None).await;
        assert_eq!(status, 200, "{body}");
        ready = body;
        if ready.contains("garbage.example/w") && ready.contains("forger.example/w") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ready.contains("garbage.example/w") && ready.contains("forger.example/w"),
        "{ready}"
    );
    let (_, metrics) = common::get(server.admin_addr(), "/metrics", None).await;
    for name in ["garbage.example/w", "forger.example/w"] {
        assert!(
            metrics.lines().any(|line| line
                .starts_with(&format!("neuron_witness_failures{{witness=\"{name}\"}}"))
                && !line.ends_with(" 0")),
            "{metrics}"
        );
    }
    assert!(garbage.requests.lock().unwrap().to_owned() > 0);
    server.stop("test over").await.unwrap();
    let kinds = kinds(dir.path());
    assert!(
        !kinds.iter().any(|kind| kind == "log.cosigned"),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|kind| kind == "log.witness_conflict"),
        "{kinds:?}"
    );
}

/// Copies a stopped server's data directory, head file and all.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The attack: copy the whole data directory, let the log grow and a witness see it, put the old
/// copy back. The next start is refused, the conflict recorded; only an operator's
/// acknowledgement lets it serve, and that stays in the log.
async fn rolled_back_behind(
    witness: &neuron::config::Witness,
    witness_size: impl Fn() -> u64,
    seed: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let config = witnessed_config(dir.path(), vec![witness.clone()]);
    let server = start_with(config.clone(), seed, false).await.unwrap();
    complete(&server, &ada()).await;
    server.stop("first run").await.unwrap();
    neuron_events::testing::until_unlocked(&dir.path().join("log"));
    copy_dir(dir.path(), old.path());
    let seen_before = witness_size();

    let server = start_with(config.clone(), seed + 1, false).await.unwrap();
    complete(
        &server,
        &Patient::from_seed("patient-agent-bob", [0x22; 32]),
    )
    .await;
    server.stop("second run").await.unwrap();
    neuron_events::testing::until_unlocked(&dir.path().join("log"));
    let seen = witness_size();
    assert!(
        seen > seen_before,
        "the witness saw the grown log: {seen} > {seen_before}"
    );

    // The old copy put back, head file included.
    std::fs::remove_dir_all(dir.path()).unwrap();
    copy_dir(old.path(), dir.path());
    let refused = start_with(config.clone(), seed + 2, false)
        .await
        .err()
        .unwrap();
    let message = refused.to_string();
    assert!(
        matches!(refused, ServerError::RolledBack { .. })
            && message.contains(&format!("{seen} records")),
        "{message}"
    );
    assert!(message.contains("--acknowledge-rollback"), "{message}");
    neuron_events::testing::until_unlocked(&dir.path().join("log"));
    assert!(kinds(dir.path())
        .iter()
        .any(|kind| kind == "log.witness_conflict"));
    // verify names the conflict as long as no one has acknowledged it.
    let verified = neuron(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(1), "{}", said(&verified));
    assert!(
        said(&verified).contains("rolled back or forked, and not acknowledged"),
        "{}",
        said(&verified)
    );

    // Refused again on the next start, from the log alone.
    let again = start_with(config.clone(), seed + 3, false)
        .await
        .err()
        .unwrap();
    assert!(matches!(again, ServerError::RolledBack { .. }), "{again}");

    // Acknowledged: it serves, and the loss is in the log for good.
    neuron_events::testing::until_unlocked(&dir.path().join("log"));
    let server = start_with(config, seed + 4, true).await.unwrap();
    complete(&server, &ada()).await;
    server.stop("acknowledged").await.unwrap();
    let kinds = kinds(dir.path());
    assert!(
        kinds.iter().any(|kind| kind == "log.rollback_acknowledged"),
        "{kinds:?}"
    );
    let verified = neuron(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
    assert!(
        said(&verified).contains("rollback:        witnesses had seen trees of"),
        "{}",
        said(&verified)
    );
}

#[tokio::test]
async fn a_data_directory_restored_from_an_older_copy_is_refused_until_the_loss_is_acknowledged() {
    let witness =
        FakeWitness::start("witness.example/w2", 0x51, log_vkey(), Behaviour::Honest).await;
    let state = witness.state.clone();
    rolled_back_behind(&witness.config(), move || state.lock().unwrap().0, 51).await;
}

/// The `aics-witness` and `aics-tlog` commands: from `NEURON_AICS_BIN` (a venv's bin, as CI
/// makes it), `target/aics-venv/bin`, or installed now into a venv in `scratch`.
fn aics_bin(scratch: &Path) -> Option<PathBuf> {
    let candidates = std::env::var_os("NEURON_AICS_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aics-venv/bin")]);
    for bin in candidates {
        if bin.join("aics-witness").exists() && bin.join("aics-tlog").exists() {
            return Some(bin);
        }
    }
    let venv = scratch.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--ignore-requires-python",
                "aics-witness==0.1.0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    made.then(|| venv.join("bin"))
}

/// A running `aics-witness`, stopped when dropped.
struct Aics {
    child: Child,
    config: PathBuf,
    bin: PathBuf,
    name: String,
    vkey: String,
    url: String,
}

impl Drop for Aics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Aics {
    fn start(bin: &Path, dir: &Path, name: &str) -> Self {
        let config = dir.join("witness.json");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let run = |args: &[&str]| {
            let output = Command::new(bin.join("aics-witness"))
                .args(args)
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "aics-witness {args:?}: {}",
                said(&output)
            );
            String::from_utf8(output.stdout).unwrap()
        };
        let vkey = run(&["init", "--name", name, "--listen", &listen])
            .trim()
            .to_string();
        run(&[
            "add-log",
            "--origin",
            DEMO_ORIGIN,
            "--vkey",
            &log_vkey().to_text(),
        ]);
        let child = Command::new(bin.join("aics-witness"))
            .args(["serve", "--listen", &listen, "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            config,
            bin: bin.to_path_buf(),
            name: name.to_string(),
            vkey,
            url: format!("http://{listen}"),
        }
    }

    fn witness(&self) -> neuron::config::Witness {
        neuron::config::Witness {
            name: self.name.clone(),
            vkey: self.vkey.clone(),
            url: self.url.clone(),
        }
    }

    /// The size it last cosigned for the log, from its own status.
    fn size(&self) -> u64 {
        let output = Command::new(self.bin.join("aics-witness"))
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        status["logs"][0]["size"].as_u64().unwrap_or(0)
    }
}

#[tokio::test]
async fn a_third_party_witness_cosigns_and_its_tools_check_our_checkpoints_and_receipts() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = aics_bin(scratch.path());
    if !neuron_events::testing::external(
        bin.is_some(),
        "a_third_party_witness_cosigns_and_its_tools_check_our_checkpoints_and_receipts",
        "aics-witness 0.1.0 (PyPI) in NEURON_AICS_BIN or target/aics-venv/bin",
        "python3 -m venv target/aics-venv && target/aics-venv/bin/pip install --ignore-requires-python aics-witness==0.1.0",
    ) {
        return;
    }
    let bin = bin.unwrap();
    let witness = Aics::start(&bin, scratch.path(), "witness.example/aics");
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        witnessed_config(dir.path(), vec![witness.witness()]),
        61,
        false,
    )
    .await
    .unwrap();
    let payload = ada().claims(PROVIDER, NOW - 60, NOW + 3600);
    let done = client::handshake_with(
        &url(&server),
        None,
        &ada(),
        ada().auth_frame_with_receipt(&payload),
    )
    .await
    .unwrap();
    let receipt = done.received[1]["receipt"].as_str().unwrap().to_string();
    let size = server.views().last_seq;
    until_cosigned(&server, &witness.name, size.saturating_sub(2)).await;
    let (_, witnessed) = common::get(server.local_addr(), "/log/checkpoint", None).await;
    server.stop("test over").await.unwrap();
    assert!(witness.size() > 0);
    assert!(kinds(dir.path()).iter().any(|kind| kind == "log.cosigned"));

    // aics-tlog checks the witnessed checkpoint with a quorum of one: its own witness's.
    let write = |name: &str, bytes: &[u8]| {
        let path = scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let note_file = write("witnessed.note", witnessed.as_bytes());
    let tlog = |args: &[&str]| {
        Command::new(bin.join("aics-tlog"))
            .args(args)
            .output()
            .unwrap()
    };
    let checked = tlog(&[
        "verify-checkpoint",
        "--note",
        &note_file,
        "--log-key",
        &log_vkey().to_text(),
        "--witness-key",
        &witness.vkey,
        "--quorum",
        "1",
    ]);
    assert!(checked.status.success(), "{}", said(&checked));

    // And our receipt: the record, the proof and the checkpoint taken apart, as aics-tlog wants.
    let parsed = neuron_events::receipt::Receipt::parse(&receipt).unwrap();
    let leaf = write("leaf.bin", parsed.extra.as_deref().unwrap());
    let proof: String = parsed
        .proof
        .iter()
        .map(|hash| format!("{}\n", hash.to_base64()))
        .collect();
    let proof = write("proof.txt", proof.as_bytes());
    let checkpoint = write("receipt.note", parsed.checkpoint.as_bytes());
    let included = tlog(&[
        "verify-inclusion",
        "--leaf",
        &leaf,
        "--index",
        &parsed.index.to_string(),
        "--checkpoint",
        &checkpoint,
        "--proof",
        &proof,
        "--log-key",
        &log_vkey().to_text(),
    ]);
    assert!(included.status.success(), "{}", said(&included));
    // A changed record is refused by it too.
    let mut forged = parsed.extra.clone().unwrap();
    let last = forged.len() - 3;
    forged[last] ^= 1;
    let forged = write("forged.bin", &forged);
    let refused = tlog(&[
        "verify-inclusion",
        "--leaf",
        &forged,
        "--index",
        &parsed.index.to_string(),
        "--checkpoint",
        &checkpoint,
        "--proof",
        &proof,
        "--log-key",
        &log_vkey().to_text(),
    ]);
    assert!(!refused.status.success(), "{}", said(&refused));
}

#[tokio::test]
async fn a_rollback_is_caught_by_a_third_party_witness_too() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = aics_bin(scratch.path());
    if !neuron_events::testing::external(
        bin.is_some(),
        "a_rollback_is_caught_by_a_third_party_witness_too",
        "aics-witness 0.1.0 (PyPI) in NEURON_AICS_BIN or target/aics-venv/bin",
        "python3 -m venv target/aics-venv && target/aics-venv/bin/pip install --ignore-requires-python aics-witness==0.1.0",
    ) {
        return;
    }
    let witness = Aics::start(&bin.unwrap(), scratch.path(), "witness.example/aics2");
    let config = witness.witness();
    rolled_back_behind(&config, || witness.size(), 71).await;
}
