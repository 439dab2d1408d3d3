//! The investigator's commands that read a log offline: `neuron verify`, `replay`, `timeline` and
//! `export`. A log is named by a path: a server's data directory (its `log/` inside), a sled log
//! directory, or a JSONL export file.
//!
//! Investigators never write to what they read. sled writes when it opens a store (it recovers
//! and snapshots), so a store is read from a private copy in the system's temporary directory
//! (`TMPDIR`), removed afterwards; a store a running server holds is refused, not copied.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use neuron_events::{
    b64, verify_jsonl, verify_log, Digest, LogHead, Report, SledLog, VerifyOptions,
};

/// A progress line on standard error while a long command reads a log: only when standard error is
/// a terminal, never on a pipe or in a file.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts one labelled `what`, counting records when `counting` (nothing is shown when stderr
    /// is not a terminal).
    pub fn start(what: &str, counting: bool) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(if counting {
                    "{spinner} {msg}: {human_pos} records ({per_sec}, {elapsed})"
                } else {
                    "{spinner} {msg} ({elapsed})"
                })
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// Counts one more record.
    pub fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Removes the line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

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
    /// A running server holds the store.
    #[error("{path}: a running server holds this log; read its export (GET /v1/audit/export) or stop the server")]
    Locked {
        /// The store.
        path: PathBuf,
    },
    /// The store's files are damaged beyond what its own recovery reads back.
    #[error("{path}: the store's files are damaged ({reason}); run neuron verify, and rebuild the data directory from an export with neuron restore")]
    Damaged {
        /// The store.
        path: PathBuf,
        /// What the store said.
        reason: String,
    },
    /// The store could not be opened or read.
    #[error("{path}: cannot read the log ({reason})")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A line of an export, or a record of a store, that is not a record.
    #[error("{path}: {undecodable}; run neuron verify to see what else is wrong")]
    Undecodable {
        /// The log.
        path: PathBuf,
        /// Where, and why.
        undecodable: neuron_events::export::Undecodable,
    },
    /// The output could not be written (a closed pipe, a full disk).
    #[error("writing the output: {reason}")]
    Output {
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

/// A sled store opened from a private copy, which is removed when this is dropped.
pub struct StoreCopy {
    log: SledLog,
    _copy: tempfile::TempDir,
}

impl std::ops::Deref for StoreCopy {
    type Target = SledLog;

    fn deref(&self) -> &SledLog {
        &self.log
    }
}

/// Copies the files and folders of `from` into the existing folder `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The bytes of the files under `dir`.
fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut size = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            size += tree_size(&entry.path())?;
        } else if kind.is_file() {
            size += entry.metadata()?.len();
        }
    }
    Ok(size)
}

/// Where to make a private copy of a store of `size` bytes: `TMPDIR` when it is set; else
/// `/dev/shm` when that memory-backed folder and the memory available both have room for twice the
/// copy; else the system's temporary directory. sled syncs the store as it opens it, and on a
/// disk that writes the whole fresh copy out (~0.5 s for a million records here); in memory a
/// sync costs nothing.
fn copy_place(size: u64) -> PathBuf {
    if std::env::var_os("TMPDIR").is_some() {
        return std::env::temp_dir();
    }
    let shm = Path::new("/dev/shm");
    let room = |path: &Path| -> Option<u64> {
        let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: statvfs fills the struct it is given; the path is a valid C string.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        (unsafe { libc::statvfs(name.as_ptr(), &mut stats) } == 0)
            .then(|| stats.f_bavail.saturating_mul(stats.f_frsize))
    };
    let available_memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))
                .and_then(|kilobytes| {
                    kilobytes
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kilobytes| kilobytes.saturating_mul(1024));
    let wanted = size.saturating_mul(2);
    match (room(shm), available_memory) {
        (Some(room), Some(memory)) if room >= wanted && memory >= wanted => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// Opens the store at `path` from a private copy: the original is only read. A store that a running
/// server holds is refused (its files change as they are copied); the copy is made under a shared
/// lock, so that no server starts writing it meanwhile.
///
/// # Errors
/// [`InvestigateError::Locked`] when a server holds it; [`InvestigateError::Unreadable`] when it
/// cannot be copied or opened.
pub fn open_store_copy(path: &Path) -> Result<StoreCopy, InvestigateError> {
    let unreadable = |reason: String| InvestigateError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let data = File::open(path.join("db")).map_err(|error| unreadable(error.to_string()))?;
    match data.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(InvestigateError::Locked {
                path: path.to_path_buf(),
            })
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(unreadable(error.to_string())),
    }
    let size = tree_size(path).map_err(|error| unreadable(error.to_string()))?;
    let place = copy_place(size);
    let copy = tempfile::Builder::new()
        .prefix("neuron-investigate-")
        .tempdir_in(&place)
        .map_err(|error| {
            unreadable(format!(
                "creating a private copy in {}: {error}",
                place.display()
            ))
        })?;
    copy_tree(path, copy.path()).map_err(|error| {
        unreadable(format!(
            "copying the store to {}: {error}",
            copy.path().display()
        ))
    })?;
    drop(data);
    let log = SledLog::open(copy.path()).map_err(|error| {
        if error.is_damage() {
            InvestigateError::Damaged {
                path: path.to_path_buf(),
                reason: neuron_events::full_message(&error),
            }
        } else {
            unreadable(neuron_events::full_message(&error))
        }
    })?;
    Ok(StoreCopy { log, _copy: copy })
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

    fn open_sled(path: &Path) -> Result<StoreCopy, InvestigateError> {
        open_store_copy(path)
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
            Self::Sled(path) => {
                let log = match Self::open_sled(path) {
                    Ok(log) => log,
                    // A store too damaged to open is a log that is not intact, not an
                    // unreadable path.
                    Err(InvestigateError::Damaged { reason, .. }) => {
                        let acknowledged =
                            neuron_events::evidence::HeadFile::read(path).ok().flatten();
                        return Ok(Report::of_damaged_store(acknowledged.as_ref(), reason));
                    }
                    Err(error) => return Err(error),
                };
                match verify_log(&*log, options) {
                    Ok(report) => Ok(report),
                    Err(error) if error.is_damage() => Ok(Report::of_damaged_store(
                        Some(&neuron_events::Log::acknowledged(&*log)),
                        error.to_string(),
                    )),
                    Err(error) => Err(unreadable(path, error.to_string())),
                }
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(path, error.to_string()))?;
                verify_jsonl(file, options).map_err(|error| unreadable(path, error.to_string()))
            }
        }
    }

    /// Writes the records with `from <= seq <= to` as JSONL, byte for byte, and returns how many.
    /// Every line read must be a record (of any seq): the first that is not ends the export,
    /// named, rather than being copied or skipped.
    ///
    /// # Errors
    /// [`InvestigateError::Undecodable`] at the first line or stored record that is not a
    /// record; [`InvestigateError::Unreadable`] when the log cannot be read;
    /// [`InvestigateError::Output`] when the output cannot be written.
    pub fn export(&self, from: u64, to: u64, out: &mut dyn Write) -> Result<u64, InvestigateError> {
        let path = self.path();
        let unreadable = |reason: String| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let undecodable =
            |place: String, error: neuron_events::Error| InvestigateError::Undecodable {
                path: path.to_path_buf(),
                undecodable: neuron_events::export::Undecodable {
                    place,
                    reason: match error {
                        neuron_events::Error::Unparseable { reason } => reason,
                        other => other.to_string(),
                    },
                },
            };
        let mut written = 0;
        let mut write = |seq: u64, bytes: &[u8]| -> Result<(), InvestigateError> {
            if (from..=to).contains(&seq) {
                out.write_all(bytes)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|error| InvestigateError::Output {
                        reason: error.to_string(),
                    })?;
                written += 1;
            }
            Ok(())
        };
        match self {
            Self::Sled(path) => {
                let log = Self::open_sled(path)?;
                let mut outcome = Ok(());
                neuron_events::Log::scan(&*log, from.max(1), to, &mut |seq, bytes| {
                    if outcome.is_ok() {
                        outcome = neuron_events::record::check(bytes)
                            .map_err(|error| undecodable(format!("record {seq}"), error))
                            .and_then(|_| write(seq, bytes));
                    }
                })
                .map_err(|error| unreadable(error.to_string()))?;
                outcome?;
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(error.to_string()))?;
                for entry in neuron_events::export::read_jsonl(file) {
                    let entry = entry.map_err(|error| match error {
                        neuron_events::Error::LineTooLong { line, length } => {
                            InvestigateError::Undecodable {
                                path: path.to_path_buf(),
                                undecodable: neuron_events::export::Undecodable {
                                    place: format!("line {line}"),
                                    reason: neuron_events::jsonl::oversized_reason(length),
                                },
                            }
                        }
                        other => unreadable(other.to_string()),
                    })?;
                    let line = || format!("line {}", entry.line.unwrap_or_default());
                    let seq = neuron_events::record::check(&entry.bytes)
                        .map_err(|error| undecodable(line(), error))?;
                    write(seq, &entry.bytes)?;
                }
            }
        }
        out.flush().map_err(|error| InvestigateError::Output {
            reason: error.to_string(),
        })?;
        Ok(written)
    }

    /// The path of the log.
    pub fn path(&self) -> &Path {
        match self {
            Self::Sled(path) | Self::Jsonl(path) => path,
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

pub use neuron_events::narrate::{describe, safe};

/// The human report of a verification.
pub fn report_text(source: &Source, report: &Report, trusted: bool) -> String {
    let mut text = format!(
        "log:             {}\nrecords checked: {}\n",
        safe(&source.describe()),
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
    if let Some(acknowledged) = &report.acknowledged {
        text.push_str(&format!(
            "acknowledged:    seq {} ({})\n",
            acknowledged.seq,
            match acknowledged.anchor {
                neuron_events::verify::Anchor::StoreRecord => {
                    "recorded inside the store, which predates head files"
                }
                _ => "the store's head file",
            }
        ));
    }
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
    if let Some(tail) = &report.unsigned_tail {
        text.push_str(&format!(
            "unsigned tail:   {tail} signed by no trusted checkpoint (accepted: --allow-unsigned-tail)\n"
        ));
    }
    match &report.problem {
        None => text.push_str("result:          INTACT\n"),
        Some(problem) => text.push_str(&format!(
            "result:          NOT INTACT at seq {}{}{}: {}\n",
            problem.seq,
            problem
                .kind
                .as_ref()
                .map(|kind| format!(" ({})", safe(kind)))
                .unwrap_or_default(),
            problem
                .line
                .map(|line| format!(", line {line}"))
                .unwrap_or_default(),
            safe(&problem.fault.describe())
        )),
    }
    text
}

impl Source {
    /// Calls `visit` with every record, decoded, in log order. Stops at the first record that does
    /// not decode (verify the log to learn why).
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when the log cannot be read or a record not decoded.
    pub fn for_each_record(&self, visit: &mut dyn FnMut(Record)) -> Result<(), InvestigateError> {
        self.for_each_matching(&|_| true, neuron_events::export::Unpicked::Checked, visit)
    }

    /// As [`Source::for_each_record`], with a progress line on a terminal.
    ///
    /// # Errors
    /// As [`Source::for_each_record`].
    pub fn for_each_record_shown(
        &self,
        what: &str,
        visit: &mut dyn FnMut(Record),
    ) -> Result<(), InvestigateError> {
        let progress = Progress::start(what, true);
        let outcome = self.for_each_matching(
            &|_| true,
            neuron_events::export::Unpicked::Checked,
            &mut |record| {
                progress.tick();
                visit(record);
            },
        );
        progress.finish();
        outcome
    }

    /// As [`Source::for_each_record`], decoding only the records whose bytes `wanted` accepts (a
    /// cheap byte search saves decoding records that cannot matter); the others are checked to
    /// be records, or, in an export a first pass already checked, skipped (`unpicked`). Records
    /// are read and decoded on worker threads, and visited in order.
    ///
    /// # Errors
    /// As [`Source::for_each_record`].
    pub fn for_each_matching(
        &self,
        wanted: &(dyn Fn(&[u8]) -> bool + Sync),
        unpicked: neuron_events::export::Unpicked,
        visit: &mut dyn FnMut(Record),
    ) -> Result<(), InvestigateError> {
        let mut failure = None;
        let mut take = |decoded: Result<Record, neuron_events::export::Undecodable>| {
            if failure.is_some() {
                return;
            }
            match decoded {
                Ok(record) => visit(record),
                Err(undecodable) => failure = Some(undecodable),
            }
        };
        let path = self.path().to_path_buf();
        let unreadable = |reason: String| InvestigateError::Unreadable {
            path: path.clone(),
            reason,
        };
        match self {
            Self::Sled(path) => {
                let log = Self::open_sled(path)?;
                neuron_events::export::decode_log(&*log, wanted, &mut take)
                    .map_err(|error| unreadable(error.to_string()))?;
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(error.to_string()))?;
                neuron_events::export::decode_jsonl(file, wanted, unpicked, &mut take)
                    .map_err(|error| unreadable(error.to_string()))?;
            }
        }
        match failure {
            Some(undecodable) => Err(InvestigateError::Undecodable { path, undecodable }),
            None => Ok(()),
        }
    }
}

use neuron_events::event::EventData;
use neuron_events::Record;

/// The entity a timeline follows.
#[derive(Clone, Debug)]
pub enum Subject {
    /// One session.
    Session(String),
    /// Every session of a patient agent, and its relationships' terminations.
    Patient(String),
    /// A relationship: the session that established it, later sessions that reused it, its end.
    Relationship(String),
    /// Every record naming a provider, and the sessions that consented to it.
    Provider(String),
}

/// One line of a timeline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// The record's seq.
    pub seq: u64,
    /// Its time.
    pub at: neuron_events::Timestamp,
    /// Milliseconds since the previous line of the same session (or of the timeline, for records
    /// outside sessions).
    pub since_previous_ms: Option<i64>,
    /// The session, if any.
    pub session: Option<String>,
    /// The event kind.
    pub kind: &'static str,
    /// What happened, in words.
    pub description: String,
}

fn mentions(record: &Record, subject: &Subject) -> bool {
    match (subject, &record.event) {
        (Subject::Session(id), _) => record.session.as_deref() == Some(id.as_str()),
        (Subject::Patient(id), EventData::HandshakeStarted(data)) => &data.patient_agent_id == id,
        (Subject::Patient(id), EventData::ConsentVerified(data)) => &data.patient_agent_id == id,
        (Subject::Patient(id), EventData::RelationshipEstablished(data)) => {
            &data.patient_agent_id == id
        }
        (Subject::Relationship(id), EventData::RelationshipEstablished(data)) => {
            &data.relationship_id == id
        }
        (Subject::Relationship(id), EventData::HandshakeCompleted(data)) => {
            &data.relationship_id == id
        }
        (Subject::Relationship(id), EventData::ChallengeIssued(data)) => &data.relationship == id,
        (Subject::Relationship(id), EventData::RelationshipTerminated(data)) => {
            &data.relationship_id == id
        }
        (Subject::Provider(npi), EventData::ConsentVerified(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::HandshakeFailed(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::HandshakeCompleted(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::RelationshipTerminated(data)) => {
            &data.provider_npi == npi
        }
        (
            Subject::Provider(npi),
            EventData::ProviderRegistered(data) | EventData::ProviderRemoved(data),
        ) => &data.npi == npi,
        _ => false,
    }
}

/// The timeline of `subject`: every record touching it, in order, handed to `emit` line by line
/// (a long timeline is never held whole). Returns how many lines there were.
///
/// # Errors
/// As [`Source::for_each_record`]; lines already emitted stay emitted.
pub fn timeline(
    source: &Source,
    subject: &Subject,
    emit: &mut dyn FnMut(Step),
) -> Result<u64, InvestigateError> {
    let progress = Progress::start("following", false);
    let mut lines = Lines {
        emit,
        count: 0,
        previous_in_session: std::collections::HashMap::new(),
        previous_outside: None,
    };
    let outcome = timeline_steps(source, subject, &mut lines);
    progress.finish();
    outcome.map(|()| lines.count)
}

/// What a timeline has learned about its subject: the sessions and relationships that are its.
#[derive(Default)]
struct Followed {
    sessions: std::collections::HashSet<String>,
    relationships: std::collections::HashSet<String>,
}

impl Followed {
    /// Learns from a record that names the subject.
    fn note(&mut self, record: &Record, subject: &Subject) {
        let (session, relationship) = learned(record, subject);
        self.sessions.extend(session);
        self.relationships.extend(relationship);
    }

    /// Whether a record belongs in the timeline: it names the subject, belongs to one of its
    /// sessions, or ends one of its relationships.
    fn includes(&self, record: &Record, subject: &Subject) -> bool {
        record
            .session
            .as_ref()
            .is_some_and(|session| self.sessions.contains(session))
            || matches!(&record.event, EventData::RelationshipTerminated(data) if self.relationships.contains(&data.relationship_id))
            || mentions(record, subject)
    }
}

/// What a record teaches about the subject when it names it: its session, and the relationship it
/// establishes.
fn learned(record: &Record, subject: &Subject) -> (Option<String>, Option<String>) {
    if !mentions(record, subject) {
        return (None, None);
    }
    let relationship = match &record.event {
        EventData::RelationshipEstablished(data) => Some(data.relationship_id.clone()),
        _ => None,
    };
    (record.session.clone(), relationship)
}

/// The timeline's lines, with the time since the previous line of the same session.
struct Lines<'a> {
    emit: &'a mut dyn FnMut(Step),
    count: u64,
    previous_in_session: std::collections::HashMap<String, neuron_events::Timestamp>,
    previous_outside: Option<neuron_events::Timestamp>,
}

impl Lines<'_> {
    fn push(&mut self, record: &Record) {
        let previous = match &record.session {
            Some(session) => self.previous_in_session.insert(session.clone(), record.at),
            None => self.previous_outside.replace(record.at),
        };
        self.count += 1;
        (self.emit)(Step {
            seq: record.seq,
            at: record.at,
            since_previous_ms: previous.map(|earlier| record.at.millis() - earlier.millis()),
            session: record.session.clone(),
            kind: record.event.kind(),
            description: safe(&describe(&record.event)).into_owned(),
        });
    }
}

fn timeline_steps(
    source: &Source,
    subject: &Subject,
    lines: &mut Lines<'_>,
) -> Result<(), InvestigateError> {
    let needle = match subject {
        Subject::Session(id)
        | Subject::Patient(id)
        | Subject::Relationship(id)
        | Subject::Provider(id) => id.clone(),
    };
    let finder = memchr::memmem::Finder::new(needle.as_bytes()).into_owned();
    let termination = memchr::memmem::Finder::new(b"\"kind\":\"termination.").into_owned();
    if let Source::Sled(path) = source {
        return timeline_from_store(
            path,
            subject,
            &finder,
            &termination,
            lines,
            FETCH_BY_SEQ_MAX,
        );
    }
    // An export is read twice: the first pass finds the subject's sessions and relationships,
    // the second collects their records.
    let mut followed = Followed::default();
    use neuron_events::export::Unpicked;
    // The first pass checks every line; the second decodes what it picks and leaves the rest.
    source.for_each_matching(
        &|bytes| finder.find(bytes).is_some(),
        Unpicked::Checked,
        &mut |record| {
            followed.note(&record, subject);
        },
    )?;
    // The byte filter looks the record's session up in a set (a search per session would make
    // long timelines quadratic) and lets every termination through to be decoded.
    let session_keys: std::collections::HashSet<Vec<u8>> = followed
        .sessions
        .iter()
        .map(|session| escaped(session).into_bytes())
        .collect();
    let wanted = |bytes: &[u8]| {
        finder.find(bytes).is_some()
            || termination.find(bytes).is_some()
            || envelope_session(bytes).is_some_and(|session| {
                // An id written with escapes other than ours is decoded to be sure.
                session.contains(&b'\\') || session_keys.contains(session)
            })
    };
    source.for_each_matching(&wanted, Unpicked::Skipped, &mut |record| {
        if followed.includes(&record, subject) {
            lines.push(&record);
        }
    })
}

/// A session id as it is written inside a record (JSON string escapes, without the quotes).
fn escaped(session: &str) -> String {
    let quoted = serde_json::Value::from(session).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// A store is read once, on worker threads: records naming the subject (and terminations) are
/// decoded to learn its sessions and relationships; of every record only the seq is kept, with a
/// hash of its session. Then the timeline's records are fetched by seq, in order, and emitted.
fn timeline_from_store(
    path: &Path,
    subject: &Subject,
    finder: &memchr::memmem::Finder<'static>,
    termination: &memchr::memmem::Finder<'static>,
    lines: &mut Lines<'_>,
    max_fetched: usize,
) -> Result<(), InvestigateError> {
    use neuron_events::Log;
    use std::hash::BuildHasher;
    enum Item {
        /// A record that may belong in the timeline, with the session and the relationship it
        /// teaches (when it names the subject).
        Matched {
            seq: u64,
            session: Option<String>,
            relationship: Option<String>,
        },
        Undecodable(neuron_events::export::Undecodable),
        /// Any other record of a session.
        Other {
            seq: u64,
            session: u64,
        },
    }
    let unreadable = |reason: String| InvestigateError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let not_a_record = |seq: u64, error: neuron_events::Error| neuron_events::export::Undecodable {
        place: format!("record {seq}"),
        reason: match error {
            neuron_events::Error::Unparseable { reason } => reason,
            other => other.to_string(),
        },
    };
    let undecodable = |undecodable| InvestigateError::Undecodable {
        path: path.to_path_buf(),
        undecodable,
    };
    let log = Source::open_sled(path)?;
    let hasher = std::collections::hash_map::RandomState::new();
    let mut followed = Followed::default();
    let mut matched: Vec<u64> = Vec::new();
    let mut others: Vec<(u64, u64)> = Vec::new();
    let mut failure = None;
    neuron_events::export::scan_parallel(
        &*log,
        |seq, bytes, items| {
            let session = envelope_session(bytes);
            if finder.find(bytes).is_some()
                || termination.find(bytes).is_some()
                // An id written with escapes other than ours is decoded to be sure.
                || session.is_some_and(|session| session.contains(&b'\\'))
            {
                items.push(match Record::decode(bytes) {
                    Ok(record) => {
                        let (session, relationship) = learned(&record, subject);
                        Item::Matched {
                            seq,
                            session,
                            relationship,
                        }
                    }
                    Err(error) => Item::Undecodable(not_a_record(seq, error)),
                });
            } else if let Err(error) = neuron_events::record::check(bytes) {
                // Passed over, but never without knowing it is a record.
                items.push(Item::Undecodable(not_a_record(seq, error)));
            } else if let Some(session) = session {
                items.push(Item::Other {
                    seq,
                    session: hasher.hash_one(session),
                });
            }
        },
        |item| match item {
            Item::Matched {
                seq,
                session,
                relationship,
            } => {
                followed.sessions.extend(session);
                followed.relationships.extend(relationship);
                matched.push(seq);
            }
            Item::Undecodable(undecodable) => {
                failure.get_or_insert(undecodable);
            }
            Item::Other { seq, session } => others.push((seq, session)),
        },
    )
    .map_err(|error| unreadable(error.to_string()))?;
    if let Some(error) = failure {
        return Err(undecodable(error));
    }
    let ours: std::collections::HashSet<u64> = followed
        .sessions
        .iter()
        .map(|session| hasher.hash_one(escaped(session).as_bytes()))
        .collect();
    let mut seqs: Vec<u64> = others
        .into_iter()
        .filter(|(_, session)| ours.contains(session))
        .map(|(seq, _)| seq)
        .chain(matched)
        .collect();
    seqs.sort_unstable();
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    let mut emit = |seq: u64, decoded: Result<Record, neuron_events::Error>| {
        let record = decoded.map_err(|error| undecodable(not_a_record(seq, error)))?;
        if followed.includes(&record, subject) {
            lines.push(&record);
        }
        Ok::<(), InvestigateError>(())
    };
    if fetch_by_seq(seqs.len(), last - first + 1, max_fetched) {
        for seq in seqs {
            let mut decoded = None;
            log.scan(seq, seq, &mut |_, bytes| {
                decoded = Some(Record::decode(bytes))
            })
            .map_err(|error| unreadable(error.to_string()))?;
            if let Some(decoded) = decoded {
                emit(seq, decoded)?;
            }
        }
        return Ok(());
    }
    // Many records: reading their range again on worker threads beats fetching each by seq.
    let mut outcome = Ok(());
    neuron_events::export::scan_parallel_range(
        &*log,
        first,
        last,
        |seq, bytes, decoded| {
            if seqs.binary_search(&seq).is_ok() {
                decoded.push((seq, Record::decode(bytes)));
            }
        },
        |(seq, decoded)| {
            if outcome.is_ok() {
                outcome = emit(seq, decoded);
            }
        },
    )
    .map_err(|error| unreadable(error.to_string()))?;
    outcome
}

/// Records a timeline fetches one by one at most; past this, and when they are more than an
/// eighth of their range, the range is read again on worker threads instead.
const FETCH_BY_SEQ_MAX: usize = 10_000;

fn fetch_by_seq(wanted: usize, range: u64, max_fetched: usize) -> bool {
    wanted <= max_fetched || (wanted as u64).saturating_mul(8) <= range
}

/// The raw value of a record's `"session"` field, found by its place in the stored layout (it
/// comes before `"data"`, so the first occurrence is the envelope's); `None` without one.
fn envelope_session(bytes: &[u8]) -> Option<&[u8]> {
    use std::sync::LazyLock;
    const KEY: &[u8] = b"\"session\":\"";
    // Built once: building a searcher costs more than a search in a record.
    static DATA: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"data\":"));
    static SESSION: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let data = DATA.find(bytes)?;
    let start = SESSION.find(&bytes[..data])? + KEY.len();
    let length = memchr::memchr(b'"', &bytes[start..data])?;
    Some(&bytes[start..start + length])
}

/// One line of the human form of a timeline.
pub fn timeline_line(step: &Step) -> String {
    let delta = step
        .since_previous_ms
        .map(|ms| format!("+{:.3}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    format!(
        "{:>7}  {}  {:>9}  {:<12}  {}\n",
        step.seq,
        step.at,
        delta,
        safe(step.session.as_deref().unwrap_or("-")),
        step.description
    )
}

/// What the human form says when no record touches the subject.
pub const TIMELINE_EMPTY: &str = "no record touches it\n";

/// The views of the log as of `until`.
///
/// # Errors
/// As [`Source::for_each_record`].
pub fn replay(
    source: &Source,
    until: neuron_projections::Until,
) -> Result<neuron_projections::Views, InvestigateError> {
    // The state at a point: live sessions only (ended ones stay in the tallies; `timeline` tells
    // their story), so memory follows what was live, not the length of the log.
    let mut views = neuron_projections::Views::live_only();
    let mut done = false;
    source.for_each_record_shown("replaying", &mut |record| {
        if done || !until.includes(&record) {
            done = true;
            return;
        }
        views.apply(&record);
    })?;
    Ok(views)
}

/// The human form of a replay; at most `limit` rows per list.
pub fn replay_text(source: &Source, views: &neuron_projections::Views, limit: usize) -> String {
    use neuron_projections::relationships::Status;
    use neuron_projections::sessions::SessionStage;
    let mut text = format!(
        "log {} as of seq {} ({})\n",
        safe(&source.describe()),
        views.last_seq,
        views
            .last_at
            .map(|at| at.to_string())
            .unwrap_or_else(|| "empty".into())
    );
    if let Some(org) = &views.organization_npi {
        text.push_str(&format!(
            "organization {}, Neuron key {}\n",
            safe(org),
            safe(views.server_key.as_deref().unwrap_or("-"))
        ));
    }
    text.push_str("\nproviders\n");
    for provider in views.providers.all() {
        let state = match provider.removed_at {
            Some(at) if !provider.registered => format!("removed {at}"),
            _ => format!("registered {}", provider.registered_at),
        };
        text.push_str(&format!(
            "  {}  {:<24}  {}\n",
            safe(&provider.npi),
            safe(&provider.name),
            state
        ));
    }
    let (active, terminated) = views.relationships.counts();
    text.push_str(&format!(
        "\nrelationships: {active} active, {terminated} terminated\n"
    ));
    let shown = views
        .relationships
        .all()
        .take(limit)
        .filter_map(|summary| views.relationships.full(&summary));
    for relationship in shown {
        let status = match (&relationship.status, &relationship.termination) {
            (Status::Terminated, Some(end)) => {
                format!("terminated {} ({})", end.at, safe(&end.reason))
            }
            _ => "active".to_string(),
        };
        text.push_str(&format!(
            "  {}  {}  provider {}  established {}  {} later handshake(s)  {}\n",
            safe(&relationship.id),
            safe(&relationship.patient_agent_id),
            safe(&relationship.provider_npi),
            relationship.established_at,
            relationship.existing_handshakes,
            status
        ));
    }
    let total = active + terminated;
    if total > limit {
        text.push_str(&format!(
            "  … and {} more (--limit, or --format json)\n",
            total - limit
        ));
    }
    text.push_str(&format!(
        "\nlive sessions: {}\n",
        views.sessions.live_count()
    ));
    for session in views.sessions.live().take(limit) {
        text.push_str(&format!(
            "  {}  {}  patient {}  provider {}  since {}\n",
            safe(&session.id),
            match session.stage {
                SessionStage::Queued => "queued",
                SessionStage::Authenticating => "authenticating",
                SessionStage::Challenged => "challenged",
                SessionStage::Completed => "completed",
                SessionStage::Failed => "failed",
                SessionStage::Closed => "closed",
            },
            safe(session.patient_agent_id.as_deref().unwrap_or("-")),
            safe(session.provider_npi.as_deref().unwrap_or("-")),
            session.started
        ));
    }
    text.push_str(&format!("\nqueue: {} waiting\n", views.queue.len()));
    for position in views.queue.positions().take(limit) {
        text.push_str(&format!(
            "  {:>4}  {}  {}  since {}\n",
            position.position,
            safe(&position.waiting.session),
            safe(&position.waiting.peer),
            position.waiting.since
        ));
    }
    let tally = views.sessions.tally();
    let failed: Vec<String> = tally
        .failed
        .iter()
        .map(|(code, count)| format!("{} {count}", code.as_str()))
        .collect();
    let rejected: Vec<String> = tally
        .rejected
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    let refused: String = tally
        .refused
        .iter()
        .map(|(reason, count)| format!("; refused before a session {reason} {count}"))
        .collect();
    text.push_str(&format!(
        "\nhandshakes: completed {} ({} new, {} existing); failed {} [{}]; closed {}; queue timeouts {}; rejected [{}]; interrupted {}{refused}\n",
        tally.completed_new + tally.completed_existing,
        tally.completed_new,
        tally.completed_existing,
        tally.failed.values().sum::<u64>(),
        failed.join(", "),
        tally.closed,
        tally.queue_timeouts,
        rejected.join(", "),
        tally.interrupted
    ));
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/server_run.jsonl"
    );

    fn lines_of(run: impl FnOnce(&mut Lines<'_>) -> Result<(), InvestigateError>) -> Vec<String> {
        let mut found = Vec::new();
        let mut emit = |step: Step| found.push(serde_json::to_string(&step).unwrap());
        let mut lines = Lines {
            emit: &mut emit,
            count: 0,
            previous_in_session: std::collections::HashMap::new(),
            previous_outside: None,
        };
        run(&mut lines).unwrap();
        found
    }

    #[test]
    fn a_store_timeline_is_the_same_whether_records_are_fetched_by_seq_or_scanned_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = SledLog::open(dir.path()).unwrap();
            let file = std::io::BufReader::new(File::open(FIXTURE).unwrap());
            neuron_events::export::import(file, &mut log).unwrap();
        }
        let finder = |text: &str| memchr::memmem::Finder::new(text.as_bytes()).into_owned();
        let termination = finder("\"kind\":\"termination.");
        for subject in [
            Subject::Patient("patient-agent-ada".into()),
            Subject::Provider("1234567893".into()),
            Subject::Session("session-5".into()),
        ] {
            let needle = match &subject {
                Subject::Patient(id) | Subject::Provider(id) | Subject::Session(id) => finder(id),
                Subject::Relationship(id) => finder(id),
            };
            let by_seq = lines_of(|lines| {
                timeline_from_store(
                    dir.path(),
                    &subject,
                    &needle,
                    &termination,
                    lines,
                    usize::MAX,
                )
            });
            let scanned = lines_of(|lines| {
                timeline_from_store(dir.path(), &subject, &needle, &termination, lines, 0)
            });
            let exported =
                lines_of(|lines| timeline_steps(&Source::Jsonl(FIXTURE.into()), &subject, lines));
            assert!(!exported.is_empty(), "{subject:?}");
            assert_eq!(by_seq, exported, "{subject:?} fetched by seq");
            assert_eq!(scanned, exported, "{subject:?} scanned again");
        }
        assert!(fetch_by_seq(5, 1_000_000, FETCH_BY_SEQ_MAX));
        assert!(!fetch_by_seq(300_000, 1_000_000, FETCH_BY_SEQ_MAX));
        assert!(fetch_by_seq(20_000, 1_000_000, FETCH_BY_SEQ_MAX));
    }

    #[test]
    fn the_envelope_session_is_found_by_its_place_and_not_inside_data() {
        let with = br#"{"seq":3,"at":"2026-11-26T10:00:00.500Z","kind":"connection.accepted","session":"session-1","data":{"peer":"p"},"prev":"00"}"#;
        assert_eq!(envelope_session(with), Some(&b"session-1"[..]));
        let without = br#"{"seq":9,"at":"2026-11-26T10:00:00.500Z","kind":"server.stopping","data":{"reason":"\"session\":\"x\""},"prev":"00"}"#;
        assert_eq!(envelope_session(without), None);
        assert_eq!(envelope_session(b"not a record"), None);
    }
}
