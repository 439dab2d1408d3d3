//! Where a log is read from: a data directory, a sled log (read from a private copy) or a JSONL
//! export; the arguments that anchor a verification (a trusted key, an expected head).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use neuron_events::store::{PostgresLocation, PostgresLog};
use neuron_events::Record;
use neuron_events::{
    b64, verify_jsonl, verify_log, Digest, LogHead, Report, SledLog, VerifyOptions,
};

use super::{InvestigateError, Progress, ReadFailure};

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
pub(super) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
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
pub(super) fn tree_size(dir: &Path) -> std::io::Result<u64> {
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
pub(super) fn copy_place(size: u64) -> PathBuf {
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
    let unreadable = |source: ReadFailure| InvestigateError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let data = File::open(path.join("db")).map_err(|error| unreadable(error.into()))?;
    match data.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(InvestigateError::Locked {
                path: path.to_path_buf(),
            })
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(unreadable(error.into())),
    }
    let size = tree_size(path).map_err(|error| unreadable(error.into()))?;
    let place = copy_place(size);
    let copy = tempfile::Builder::new()
        .prefix("neuron-investigate-")
        .tempdir_in(&place)
        .map_err(|source| {
            unreadable(ReadFailure::Copy {
                place: place.clone(),
                source,
            })
        })?;
    copy_tree(path, copy.path()).map_err(|source| {
        unreadable(ReadFailure::Copy {
            place: copy.path().to_path_buf(),
            source,
        })
    })?;
    drop(data);
    let log = SledLog::open(copy.path()).map_err(|error| {
        if error.is_damage() {
            InvestigateError::Damaged {
                path: path.to_path_buf(),
                source: error,
            }
        } else {
            unreadable(error.into())
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
    /// A log in PostgreSQL (`postgres://…[?log=NAME]`), read in one read-only transaction.
    Postgres(PostgresLocation),
}

impl Source {
    /// Finds the log at `path`.
    ///
    /// # Errors
    /// [`InvestigateError::Missing`] or [`InvestigateError::NotALog`].
    pub fn locate(path: &Path) -> Result<Self, InvestigateError> {
        if let Some(url) = path
            .to_str()
            .filter(|text| text.starts_with("postgres://") || text.starts_with("postgresql://"))
        {
            return PostgresLocation::parse(url)
                .map(Self::Postgres)
                .map_err(|error| InvestigateError::BadArgument {
                    what: "the log's URL",
                    reason: error.to_string(),
                });
        }
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
            Self::Postgres(location) => format!("{} (PostgreSQL)", location.describe()),
        }
    }

    /// Runs `work` on the log of a store (sled or PostgreSQL).
    fn with_store(
        &self,
        work: &mut dyn FnMut(&dyn neuron_events::Log) -> Result<(), InvestigateError>,
    ) -> Result<(), InvestigateError> {
        match self {
            Self::Sled(path) => work(&*Self::open_sled(path)?),
            Self::Postgres(location) => work(&Self::open_postgres(location)?),
            Self::Jsonl(path) => Err(InvestigateError::NotALog { path: path.clone() }),
        }
    }

    fn open_postgres(location: &PostgresLocation) -> Result<PostgresLog, InvestigateError> {
        PostgresLog::open_reader(location).map_err(|error| InvestigateError::Unreadable {
            path: PathBuf::from(location.describe()),
            source: error.into(),
        })
    }

    pub(super) fn open_sled(path: &Path) -> Result<StoreCopy, InvestigateError> {
        open_store_copy(path)
    }

    /// Verifies the log.
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when it cannot be read.
    pub fn verify(&self, options: &VerifyOptions) -> Result<Report, InvestigateError> {
        let unreadable = |path: &Path, source: ReadFailure| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        match self {
            Self::Sled(path) => {
                let log = match Self::open_sled(path) {
                    Ok(log) => log,
                    // A store too damaged to open is a log that is not intact, not an
                    // unreadable path.
                    Err(InvestigateError::Damaged { source, .. }) => {
                        let acknowledged =
                            neuron_events::evidence::HeadFile::read(path).ok().flatten();
                        return Ok(Report::of_damaged_store(
                            acknowledged.as_ref(),
                            neuron_events::full_message(&source),
                        ));
                    }
                    Err(error) => return Err(error),
                };
                match verify_log(&*log, options) {
                    Ok(report) => Ok(report),
                    Err(error) if error.is_damage() => Ok(Report::of_damaged_store(
                        Some(&neuron_events::Log::acknowledged(&*log)),
                        error.to_string(),
                    )),
                    Err(error) => Err(unreadable(path, error.into())),
                }
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(path, error.into()))?;
                verify_jsonl(file, options).map_err(|error| unreadable(path, error.into()))
            }
            Self::Postgres(location) => {
                let log = Self::open_postgres(location)?;
                match verify_log(&log, options) {
                    Ok(report) => Ok(report),
                    Err(error) if error.is_damage() => Ok(Report::of_damaged_store(
                        Some(&neuron_events::Log::acknowledged(&log)),
                        error.to_string(),
                    )),
                    Err(error) => Err(unreadable(&self.path(), error.into())),
                }
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
        let path = path.as_path();
        let unreadable = |source: ReadFailure| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        let undecodable =
            |place: String, error: neuron_events::Error| InvestigateError::Undecodable {
                path: path.to_path_buf(),
                undecodable: neuron_events::export::Undecodable::new(place, error),
            };
        let mut written = 0;
        let mut write = |seq: u64, bytes: &[u8]| -> Result<(), InvestigateError> {
            if (from..=to).contains(&seq) {
                out.write_all(bytes)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|source| InvestigateError::Output { source })?;
                written += 1;
            }
            Ok(())
        };
        match self {
            Self::Sled(_) | Self::Postgres(_) => self.with_store(&mut |log| {
                let mut outcome = Ok(());
                log.scan(from.max(1), to, &mut |seq, bytes| {
                    if outcome.is_ok() {
                        outcome = neuron_events::record::check(bytes)
                            .map_err(|error| undecodable(format!("record {seq}"), error))
                            .and_then(|_| write(seq, bytes));
                    }
                })
                .map_err(|error| unreadable(error.into()))?;
                outcome
            })?,
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(error.into()))?;
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
                        other => unreadable(other.into()),
                    })?;
                    let line = || format!("line {}", entry.line.unwrap_or_default());
                    let seq = neuron_events::record::check(&entry.bytes)
                        .map_err(|error| undecodable(line(), error))?;
                    write(seq, &entry.bytes)?;
                }
            }
        }
        out.flush()
            .map_err(|source| InvestigateError::Output { source })?;
        Ok(written)
    }

    /// Where the log is, for messages: its path, or its URL (password left out) and name.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Sled(path) | Self::Jsonl(path) => path.clone(),
            Self::Postgres(location) => PathBuf::from(location.describe()),
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
        let path = self.path();
        let unreadable = |source: ReadFailure| InvestigateError::Unreadable {
            path: path.clone(),
            source,
        };
        match self {
            Self::Sled(_) | Self::Postgres(_) => self.with_store(&mut |log| {
                neuron_events::export::decode_log(log, wanted, &mut take)
                    .map_err(|error| unreadable(error.into()))
            })?,
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(error.into()))?;
                neuron_events::export::decode_jsonl(file, wanted, unpicked, &mut take)
                    .map_err(|error| unreadable(error.into()))?;
            }
        }
        match failure {
            Some(undecodable) => Err(InvestigateError::Undecodable { path, undecodable }),
            None => Ok(()),
        }
    }
}
