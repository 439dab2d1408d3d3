//! `neuron restore`: rebuilds a data directory from an export (the operator's backup: `neuron
//! export`, or the operator API's `GET /v1/audit/export`). The export is verified first; the store
//! is written in a staging folder beside the target, verified again as a store, and only then
//! moved into place, so a half-restored directory never looks like a data directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use neuron_events::{verify_jsonl, verify_log, Log, NeuronKey, Report, SledLog, VerifyOptions};

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The target already holds something: a restore never writes over a data directory.
    #[error("{path} is not empty: restore into a new or empty directory")]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The export does not verify: restoring it would make a damaged log look whole.
    #[error("the export does not verify: {problem}")]
    NotIntact {
        /// What `neuron verify` would say.
        problem: String,
    },
    /// The key given does not sign this log's checkpoints.
    #[error("{path}: this key did not sign the export's checkpoints (signed by {signer})")]
    ForeignKey {
        /// The key file.
        path: PathBuf,
        /// The key that did sign them.
        signer: String,
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

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    /// The verification of the restored store.
    pub report: Report,
    /// Whether the Neuron's key was restored too.
    pub key_restored: bool,
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

/// Restores the export at `export` into the data directory `data_dir` (created; it must not exist
/// or be empty), verifying it under `options` first. With `key`, the Neuron's key file is restored
/// too, after checking that it signed the export's checkpoints; without it, the restored server
/// creates a new key at its first start (and records it in `server.started`).
///
/// # Errors
/// [`RestoreError`] saying why nothing was restored.
pub fn restore(
    export: &Path,
    data_dir: &Path,
    options: &VerifyOptions,
    key: Option<&Path>,
) -> Result<Restored, RestoreError> {
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
    let open = || File::open(export).map_err(|error| io("open", export)(error.to_string()));
    let report = verify_jsonl(open()?, options)
        .map_err(|error| io("read", export)(error.to_string()))
        .and_then(verified)?;
    let key = key
        .map(|path| {
            let key = NeuronKey::load(path).map_err(|error| io("load", path)(error.to_string()))?;
            match &report.last_checkpoint {
                Some(checkpoint) if checkpoint.signer != key.public_b64() => {
                    Err(RestoreError::ForeignKey {
                        path: path.to_path_buf(),
                        signer: checkpoint.signer.clone(),
                    })
                }
                _ => Ok(key),
            }
        })
        .transpose()?;

    // The store is written beside the target, on the same file system, and renamed into place.
    let parent = match data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|error| io("create", &parent)(error.to_string()))?;
    let staging = tempfile::Builder::new()
        .prefix(".neuron-restore-")
        .tempdir_in(&parent)
        .map_err(|error| io("create a staging folder in", &parent)(error.to_string()))?;
    let log_dir = staging.path().join("log");
    let restored_report = {
        let mut log = SledLog::open(&log_dir)
            .map_err(|error| io("create", &log_dir)(neuron_events::full_message(&error)))?;
        neuron_events::export::import(open()?, &mut log)
            .map_err(|error| io("import", export)(neuron_events::full_message(&error)))?;
        log.close()
            .map_err(|error| io("sync", &log_dir)(neuron_events::full_message(&error)))?;
        verify_log(&log, options)
            .map_err(|error| io("verify", &log_dir)(error.to_string()))
            .and_then(verified)?
    };
    if (restored_report.last_seq, restored_report.head) != (report.last_seq, report.head) {
        return Err(RestoreError::NotIntact {
            problem: format!(
                "the restored store ends at seq {} with head {}, the export at seq {} with head {}",
                restored_report.last_seq, restored_report.head, report.last_seq, report.head
            ),
        });
    }
    if let Some(key) = &key {
        key.write_new(staging.path())
            .map_err(|error| io("write the key into", staging.path())(error.to_string()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, data_dir).map_err(|error| {
        let _ = std::fs::remove_dir_all(&staged);
        io("move the restored store to", data_dir)(error.to_string())
    })?;
    neuron_events::checkpoint::sync_directory(&parent)
        .map_err(|error| io("sync", &parent)(error.to_string()))?;
    Ok(Restored {
        report: restored_report,
        key_restored: key.is_some(),
    })
}
