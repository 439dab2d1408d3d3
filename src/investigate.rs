//! The investigator's commands that read a log offline: `neuron verify` and `neuron export`. A log
//! is named by a path: a server's data directory (its `log/` inside), a sled log directory, or a
//! JSONL export file.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use neuron_events::{
    b64, verify_jsonl, verify_log, Digest, LogHead, Report, SledLog, VerifyOptions,
};

/// Why a log could not be read at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    /// Nothing at the path.
    #[error("{path}: no such file or directory")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A directory that holds no log.
    #[error("{path}: not a data directory, a sled log or a JSONL export")]
    NotALog {
        /// The path.
        path: PathBuf,
    },
    /// The store could not be opened or read.
    #[error("{path}: cannot read the log ({reason}); a running server holds its log locked: verify a copy or an export")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A trusted key or an expected head that is not one.
    #[error("{what}: {reason}")]
    BadArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A log to investigate.
pub enum Source {
    /// A sled log directory.
    Sled(PathBuf),
    /// A JSONL export.
    Jsonl(PathBuf),
}

impl Source {
    /// Finds the log at `path`.
    ///
    /// # Errors
    /// [`InvestigateError::Missing`] or [`InvestigateError::NotALog`].
    pub fn locate(path: &Path) -> Result<Self, InvestigateError> {
        let metadata = std::fs::metadata(path).map_err(|_| InvestigateError::Missing {
            path: path.to_path_buf(),
        })?;
        if metadata.is_file() {
            return Ok(Self::Jsonl(path.to_path_buf()));
        }
        if path.join("log").join("conf").is_file() {
            return Ok(Self::Sled(path.join("log")));
        }
        if path.join("conf").is_file() && path.join("db").is_file() {
            return Ok(Self::Sled(path.to_path_buf()));
        }
        Err(InvestigateError::NotALog {
            path: path.to_path_buf(),
        })
    }

    /// Where the log is, and what kind.
    pub fn describe(&self) -> String {
        match self {
            Self::Sled(path) => format!("{} (sled)", path.display()),
            Self::Jsonl(path) => format!("{} (JSONL export)", path.display()),
        }
    }

    fn open_sled(path: &Path) -> Result<SledLog, InvestigateError> {
        SledLog::open(path).map_err(|error| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
    }

    /// Verifies the log.
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when it cannot be read.
    pub fn verify(&self, options: &VerifyOptions) -> Result<Report, InvestigateError> {
        let unreadable = |path: &Path, reason: String| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        match self {
            Self::Sled(path) => verify_log(&Self::open_sled(path)?, options)
                .map_err(|error| unreadable(path, error.to_string())),
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(path, error.to_string()))?;
                verify_jsonl(file, options).map_err(|error| unreadable(path, error.to_string()))
            }
        }
    }

    /// Writes the records with `from <= seq <= to` as JSONL, byte for byte, and returns how many.
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when the log cannot be read or the output written.
    pub fn export(&self, from: u64, to: u64, out: &mut dyn Write) -> Result<u64, InvestigateError> {
        match self {
            Self::Sled(path) => {
                neuron_events::export::export(&Self::open_sled(path)?, from, to, out).map_err(
                    |error| InvestigateError::Unreadable {
                        path: path.clone(),
                        reason: error.to_string(),
                    },
                )
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| InvestigateError::Unreadable {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
                let mut written = 0;
                for entry in neuron_events::export::read_jsonl(BufReader::new(file)) {
                    let entry = entry.map_err(|error| InvestigateError::Unreadable {
                        path: path.clone(),
                        reason: error.to_string(),
                    })?;
                    let seq = neuron_events::record::Envelope::parse(&entry.bytes)
                        .map(|envelope| envelope.seq)
                        .unwrap_or(0);
                    if (from..=to).contains(&seq) {
                        out.write_all(&entry.bytes)
                            .and_then(|()| out.write_all(b"\n"))
                            .map_err(|error| InvestigateError::Unreadable {
                                path: path.clone(),
                                reason: error.to_string(),
                            })?;
                        written += 1;
                    }
                }
                Ok(written)
            }
        }
    }
}

/// Reads a trusted key: base64url of the 32-byte public key, or a file holding that.
///
/// # Errors
/// [`InvestigateError::BadArgument`] when it is neither.
pub fn trusted_key(argument: &str) -> Result<VerifyingKey, InvestigateError> {
    let text = match std::fs::read_to_string(argument) {
        Ok(contents) => contents.trim().to_string(),
        Err(_) => argument.trim().to_string(),
    };
    let bad = |reason: &str| InvestigateError::BadArgument {
        what: "--trusted-key",
        reason: reason.to_string(),
    };
    let bytes: [u8; 32] = b64::decode(&text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            bad("not the base64url of a 32-byte Ed25519 public key (nor a file holding one)")
        })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a valid Ed25519 public key"))
}

/// Reads an expected head `SEQ:HEX`.
///
/// # Errors
/// [`InvestigateError::BadArgument`] when it is not one.
pub fn expected_head(argument: &str) -> Result<LogHead, InvestigateError> {
    let bad = || InvestigateError::BadArgument {
        what: "--expect-head",
        reason: "expected SEQ:HEX64".into(),
    };
    let (seq, hash) = argument.split_once(':').ok_or_else(bad)?;
    Ok(LogHead {
        seq: seq.parse().map_err(|_| bad())?,
        hash: Digest::from_hex(hash).map_err(|_| bad())?,
    })
}

/// The human report of a verification.
pub fn report_text(source: &Source, report: &Report, trusted: bool) -> String {
    let mut text = format!(
        "log:             {}\nrecords checked: {}\n",
        source.describe(),
        report.records
    );
    let at = report
        .last_at
        .map(|at| at.to_string())
        .unwrap_or_else(|| "-".into());
    text.push_str(&format!(
        "head:            {} (seq {}, at {})\n",
        report.head, report.last_seq, at
    ));
    match &report.last_checkpoint {
        Some(checkpoint) => text.push_str(&format!(
            "last checkpoint: seq {} covering up to seq {}, signed by {}{}\n",
            checkpoint.seq,
            checkpoint.upto,
            checkpoint.signer,
            if trusted {
                " (the trusted key)"
            } else {
                " (no trusted key given: signer not checked)"
            }
        )),
        None => text.push_str("last checkpoint: none\n"),
    }
    match &report.problem {
        None => text.push_str("result:          INTACT\n"),
        Some(problem) => text.push_str(&format!(
            "result:          NOT INTACT at seq {}{}: {}\n",
            problem.seq,
            problem
                .kind
                .as_ref()
                .map(|kind| format!(" ({kind})"))
                .unwrap_or_default(),
            problem.fault.describe()
        )),
    }
    text
}
