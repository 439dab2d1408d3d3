//! `neuron restore`: rebuilds a data directory from an export (the operator's backup: `neuron
//! export`, or the operator API's `GET /v1/audit/export`).
//!
//! A restore is an investigator's judgement written down, so it takes nothing on trust: the export
//! must verify with trusted coverage (SPEC §3.2) under the key it is given, every record under a
//! checkpoint that key signed. A tail no such checkpoint covers is restored only when the operator
//! accepts it, and then it is named as unverified in a `log.restored` record that every restore
//! appends: no later checkpoint can vouch for those records, and `verify` keeps naming them.
//!
//! The store is written in a staging folder beside the target (`.neuron-restore-{target}-…`,
//! holding a lock for as long as the restore runs), verified again as a store, and only then moved
//! into place, so a half-restored directory never looks like a data directory. A restore killed
//! midway leaves its staging folder unlocked: the next restore, or `serve` on that target, removes
//! it and says so ([`remove_abandoned_staging`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use neuron_events::event::{EventData, LogRestored, ServerClockBehind};
use neuron_events::record::{encode, Envelope};
use neuron_events::store::Appended;
use neuron_events::store::{PostgresLocation, PostgresLog};
use neuron_events::{
    b64, verify_jsonl, verify_log, Clock, Event, Log, LogHead, NeuronKey, Report, SledLog,
    VerifyOptions,
};

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The target already holds something: a restore never writes over a data directory.
    #[error("{path} is not empty: restore into a new or empty directory")]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// A key file was given for a restore into PostgreSQL, but no data directory to put it in.
    #[error("--key restores the Neuron's key too: name the server's data directory to write it into with --data-dir (the log goes to --to)")]
    NoKeyPlace,
    /// No key says who must have signed the export.
    #[error("say which key signed the log: --key (the Neuron's key file, restored with it) or --trusted-key; a restore without one would let the next checkpoint vouch for whatever the export holds")]
    NoTrustedKey,
    /// `--key` and `--trusted-key` name different keys.
    #[error("--key {path} holds the key {key}, but --trusted-key names {trusted}")]
    KeysDisagree {
        /// The key file.
        path: PathBuf,
        /// Its public half.
        key: String,
        /// The trusted key given.
        trusted: String,
    },
    /// The export holds no record: there is nothing to restore, and an empty store would pass for
    /// a new log.
    #[error("the export {path} holds no record: nothing to restore")]
    Empty {
        /// The export.
        path: PathBuf,
    },
    /// The export does not verify, or not with trusted coverage: restoring it would make a
    /// damaged or unvouched log look whole.
    #[error("the export does not verify: {problem}")]
    NotIntact {
        /// What `neuron verify` would say.
        problem: String,
    },
    /// The export, the key or the new store could not be read or written.
    #[error("{action} {path}: {reason}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl RestoreError {
    /// Whether the export itself was found wanting (exit 1), rather than the restore being
    /// impossible (exit 2).
    pub fn is_about_the_export(&self) -> bool {
        matches!(self, Self::NotIntact { .. } | Self::Empty { .. })
    }
}

/// Where a restore writes the log.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A new data directory (it must not exist or be empty): the sled log, and the key when one
    /// is restored.
    DataDir(&'a Path),
    /// A new log in PostgreSQL (`neuron restore --to postgres://…?log=NAME`), written in one
    /// transaction; the key, when one is restored, goes into the data directory given with it.
    Postgres {
        /// The database and the log's name: a log that holds records is refused.
        location: &'a PostgresLocation,
        /// Where the key file goes (a new or empty directory).
        data_dir: Option<&'a Path>,
    },
}

impl Target<'_> {
    /// The data directory the restore writes into, if any.
    fn data_dir(&self) -> Option<&Path> {
        match self {
            Self::DataDir(path) => Some(path),
            Self::Postgres { data_dir, .. } => *data_dir,
        }
    }

    /// Where the log goes, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::DataDir(path) => path.display().to_string(),
            Self::Postgres { location, .. } => location.describe(),
        }
    }
}

/// What a restore is asked to do.
pub struct Request<'a> {
    /// The JSONL export.
    pub export: &'a Path,
    /// Where the log goes.
    pub target: Target<'a>,
    /// The Neuron's key file, restored with the log; its public half is the trusted key.
    pub key: Option<&'a Path>,
    /// The key the export's checkpoints must be signed by, when no key file is given (or the same
    /// key as the key file's).
    pub trusted_key: Option<VerifyingKey>,
    /// Restore records after the last trusted checkpoint, recorded as unverified.
    pub allow_unsigned_tail: bool,
    /// The clock `log.restored` is stamped with (never before the export's last record).
    pub clock: &'a dyn Clock,
}

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    /// The verification of the restored store, `log.restored` included.
    pub report: Report,
    /// The record appended to say what was restored.
    pub restored: LogRestored,
    /// Whether the Neuron's key was restored too.
    pub key_restored: bool,
    /// Staging folders of restores killed midway, removed before this one.
    pub removed_staging: Vec<PathBuf>,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl Fn(String) -> RestoreError + 'a {
    move |reason| RestoreError::Io {
        action,
        path: path.to_path_buf(),
        reason,
    }
}

fn verified(report: Report) -> Result<Report, RestoreError> {
    match &report.problem {
        None => Ok(report),
        Some(problem) => Err(RestoreError::NotIntact {
            problem: format!(
                "seq {}{}: {}",
                problem.seq,
                problem
                    .line
                    .map(|line| format!(" (line {line})"))
                    .unwrap_or_default(),
                problem.fault.describe()
            ),
        }),
    }
}

/// The lock file a restore holds in its staging folder while it runs.
const STAGING_LOCK: &str = "restoring.lock";

/// The name every staging folder of a restore into `target` begins with.
fn staging_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".neuron-restore-{name}-")
}

/// The folder a data directory's staging folders are made in: its parent.
fn parent_of(data_dir: &Path) -> PathBuf {
    match data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes the staging folders that restores into `data_dir` left behind when they were killed
/// midway (no process holds their lock any longer), and returns them. A restore running now
/// holds its lock and is left alone.
///
/// # Errors
/// [`RestoreError::Io`] when the parent folder cannot be read or a folder removed.
pub fn remove_abandoned_staging(data_dir: &Path) -> Result<Vec<PathBuf>, RestoreError> {
    let parent = parent_of(data_dir);
    let prefix = staging_prefix(data_dir);
    let entries = match std::fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io("read", &parent)(error.to_string())),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let is_staging = entry.file_name().to_string_lossy().starts_with(&prefix)
            && entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !is_staging {
            continue;
        }
        let path = entry.path();
        let running = File::open(path.join(STAGING_LOCK))
            .map(|lock| lock.try_lock().is_err())
            .unwrap_or(false);
        if running {
            continue;
        }
        std::fs::remove_dir_all(&path).map_err(|error| io("remove", &path)(error.to_string()))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The key the export must be signed by: the key file's public half, or the trusted key given
/// (the same key when both are).
fn trusted(request: &Request<'_>) -> Result<(VerifyingKey, Option<NeuronKey>), RestoreError> {
    let key = request
        .key
        .map(|path| NeuronKey::load(path).map_err(|error| io("load", path)(error.to_string())))
        .transpose()?;
    match (&key, request.trusted_key) {
        (Some(key), Some(trusted)) if key.verifying_key() != trusted => {
            Err(RestoreError::KeysDisagree {
                path: request.key.map(Path::to_path_buf).unwrap_or_default(),
                key: key.public_b64(),
                trusted: b64::encode(trusted.as_bytes()),
            })
        }
        (Some(file), _) => Ok((file.verifying_key(), key)),
        (None, Some(trusted)) => Ok((trusted, None)),
        (None, None) => Err(RestoreError::NoTrustedKey),
    }
}

/// blake3 of the export's bytes.
fn digest_of(export: &Path) -> Result<String, RestoreError> {
    let mut file = File::open(export).map_err(|error| io("open", export)(error.to_string()))?;
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0; 1 << 20];
    loop {
        let read = file
            .read(&mut block)
            .map_err(|error| io("read", export)(error.to_string()))?;
        if read == 0 {
            break;
        }
        hasher.update(&block[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Restores the export into a new data directory, as `request` says.
///
/// # Errors
/// [`RestoreError`] saying why nothing was restored.
pub fn restore(request: &Request<'_>) -> Result<Restored, RestoreError> {
    let export = request.export;
    if let Some(data_dir) = request.target.data_dir() {
        match std::fs::read_dir(data_dir).map(|mut entries| entries.next().is_some()) {
            Ok(true) => {
                return Err(RestoreError::TargetNotEmpty {
                    path: data_dir.to_path_buf(),
                })
            }
            Ok(false) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io("read", data_dir)(error.to_string())),
        }
    }
    let removed_staging = match request.target.data_dir() {
        Some(data_dir) => remove_abandoned_staging(data_dir)?,
        None => Vec::new(),
    };
    let (trusted_key, key) = trusted(request)?;
    if let (Target::Postgres { data_dir: None, .. }, Some(_)) = (request.target, &key) {
        return Err(RestoreError::NoKeyPlace);
    }
    let options = VerifyOptions {
        trusted_key: Some(trusted_key),
        expected_head: None,
        allow_unsigned_tail: request.allow_unsigned_tail,
    };
    let open = || File::open(export).map_err(|error| io("open", export)(error.to_string()));
    let report =
        verify_jsonl(open()?, &options).map_err(|error| io("read", export)(error.to_string()))?;
    if report.records == 0 && report.problem.is_none() {
        return Err(RestoreError::Empty {
            path: export.to_path_buf(),
        });
    }
    let report = verified(report)?;
    let restored = LogRestored {
        from: digest_of(export)?,
        records: report.records,
        trusted_key: b64::encode(trusted_key.as_bytes()),
        unverified: report.unsigned_tail,
    };

    let checked = Checked {
        report,
        restored,
        options,
    };
    let (restored_report, restored) = match request.target {
        Target::DataDir(data_dir) => {
            restore_into_directory(request, data_dir, key.as_ref(), checked)?
        }
        Target::Postgres { location, data_dir } => {
            restore_into_postgres(request, location, data_dir, key.as_ref(), checked)?
        }
    };
    Ok(Restored {
        report: restored_report,
        restored,
        key_restored: key.is_some(),
        removed_staging,
    })
}

/// The export, verified, and what the restore will record of it.
struct Checked {
    /// The export's verification.
    report: Report,
    /// The `log.restored` record's contents.
    restored: LogRestored,
    /// The options it was verified with.
    options: VerifyOptions,
}

impl Checked {
    /// Imports the export into `log`, appends `log.restored`, and verifies the log: it must be the
    /// export, record for record, with `log.restored` after it (an unsigned tail: nothing has
    /// signed it yet). Returns the log's verification.
    fn write_into(
        &self,
        request: &Request<'_>,
        log: &mut dyn Log,
        place: &Path,
    ) -> Result<Report, RestoreError> {
        let export = request.export;
        let file = File::open(export).map_err(|error| io("open", export)(error.to_string()))?;
        neuron_events::export::import(file, log)
            .map_err(|error| io("import", export)(neuron_events::full_message(&error)))?;
        let appended = append_restored(log, &self.restored, request.clock)
            .map_err(|error| io("write log.restored to", place)(error))?;
        let store_options = VerifyOptions {
            expected_head: Some(LogHead {
                seq: self.report.last_seq,
                hash: self.report.head,
            }),
            allow_unsigned_tail: true,
            ..self.options.clone()
        };
        let written = verify_log(log, &store_options)
            .map_err(|error| io("verify", place)(error.to_string()))
            .and_then(verified)?;
        if written.last_seq != self.report.last_seq + appended {
            return Err(RestoreError::NotIntact {
                problem: format!(
                    "the restored log ends at seq {}, the export at seq {} and {appended} record(s) after it",
                    written.last_seq, self.report.last_seq
                ),
            });
        }
        Ok(written)
    }
}

/// Writes the log in a staging folder beside `data_dir`, and renames it into place.
fn restore_into_directory(
    request: &Request<'_>,
    data_dir: &Path,
    key: Option<&NeuronKey>,
    checked: Checked,
) -> Result<(Report, LogRestored), RestoreError> {
    // The store is written beside the target, on the same file system, and renamed into place.
    let parent = parent_of(data_dir);
    std::fs::create_dir_all(&parent).map_err(|error| io("create", &parent)(error.to_string()))?;
    let staging = tempfile::Builder::new()
        .prefix(&staging_prefix(data_dir))
        .tempdir_in(&parent)
        .map_err(|error| io("create a staging folder in", &parent)(error.to_string()))?;
    let lock_path = staging.path().join(STAGING_LOCK);
    let lock = File::create(&lock_path)
        .and_then(|lock| lock.lock().map(|()| lock))
        .map_err(|error| io("lock", &lock_path)(error.to_string()))?;
    let log_dir = staging.path().join("log");
    let restored_report = {
        let mut log = SledLog::open(&log_dir)
            .map_err(|error| io("create", &log_dir)(neuron_events::full_message(&error)))?;
        let written = checked.write_into(request, &mut log, &log_dir)?;
        log.close()
            .map_err(|error| io("sync", &log_dir)(neuron_events::full_message(&error)))?;
        written
    };
    if let Some(key) = key {
        key.write_new(staging.path())
            .map_err(|error| io("write the key into", staging.path())(error.to_string()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, data_dir).map_err(|error| {
        let _ = std::fs::remove_dir_all(&staged);
        io("move the restored store to", data_dir)(error.to_string())
    })?;
    // Held until the folder is in place: until then a `serve` or another restore would take it
    // for one a killed restore left behind.
    let _ = std::fs::remove_file(data_dir.join(STAGING_LOCK));
    drop(lock);
    neuron_events::checkpoint::sync_directory(&parent)
        .map_err(|error| io("sync", &parent)(error.to_string()))?;
    Ok((restored_report, checked.restored))
}

/// Writes the log into a new PostgreSQL log in one transaction (a restore stopped midway commits
/// nothing), and the key, if any, into `data_dir`.
fn restore_into_postgres(
    request: &Request<'_>,
    location: &PostgresLocation,
    data_dir: Option<&Path>,
    key: Option<&NeuronKey>,
    checked: Checked,
) -> Result<(Report, LogRestored), RestoreError> {
    let place = PathBuf::from(location.describe());
    let failed = |action| {
        let place = place.clone();
        move |error: neuron_events::Error| io(action, &place)(neuron_events::full_message(&error))
    };
    let mut log = PostgresLog::begin_restore(location, POSTGRES_RESTORE_COMMIT_TIMEOUT)
        .map_err(failed("create the log in"))?;
    let written = checked.write_into(request, &mut log, &place)?;
    if let (Some(key), Some(data_dir)) = (key, data_dir) {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| io("create", data_dir)(error.to_string()))?;
        key.write_new(data_dir)
            .map_err(|error| io("write the key into", data_dir)(error.to_string()))?;
    }
    log.commit_restore()
        .map_err(failed("commit the restore in"))?;
    Ok((written, checked.restored))
}

/// How long the commit of a restore into PostgreSQL may wait for the synchronous standbys.
const POSTGRES_RESTORE_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Appends `log.restored` after the imported records, chained to the last one and stamped with
/// the clock; a clock behind the last record is recorded first (`server.clock_behind`), as the
/// journal's writer does. Returns how many records it appended.
fn append_restored(
    log: &mut dyn Log,
    restored: &LogRestored,
    clock: &dyn Clock,
) -> Result<u64, String> {
    let message = |error: neuron_events::Error| neuron_events::full_message(&error);
    let head = log.head().map_err(message)?;
    let last_at = log
        .read(head.seq, head.seq)
        .next()
        .transpose()
        .map_err(message)?
        .and_then(|(_, bytes)| Envelope::time_of(&bytes));
    let now = clock.now();
    let mut events = Vec::with_capacity(2);
    if let Some(step) = last_at.and_then(|last_at| ServerClockBehind::between(last_at, now)) {
        events.push(Event::global(EventData::ServerClockBehind(step)));
    }
    events.push(Event::global(EventData::LogRestored(restored.clone())));
    let mut frontier = neuron_events::store::frontier_of(log).map_err(message)?;
    let (mut seq, mut prev) = (head.seq, head.hash);
    let mut appended = Vec::with_capacity(events.len());
    for event in &events {
        seq += 1;
        let bytes = encode(seq, now, event, &prev).map_err(message)?;
        prev = neuron_events::Digest::of(&bytes);
        let tree = frontier.append(neuron_events::tree::leaf_hash(&bytes));
        appended.push(Appended { seq, bytes, tree });
    }
    log.append(&appended).map_err(message)?;
    Ok(seq - head.seq)
}
