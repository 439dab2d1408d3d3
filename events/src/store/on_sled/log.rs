//! [`SledLog`]: opened (its files synced, its head file read or created), how it makes a batch
//! durable, and the faults and tampering only tests may cause.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::keys::{legacy_head, LEGACY_HEAD_KEY};
use super::recover::{held_by_another, recover, LOCK_WAIT, SLED_CACHE_BYTES};
use super::tree_blocks::TREE_PREFIX;
use crate::checkpoint::sync_directory;
use crate::evidence::HeadFile;
use crate::store::{Acknowledged, LogHead};
use crate::Error;

/// How hard [`SledLog::append`] works to make a batch durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// sled's flush followed by `fdatasync` of the store's files: survives power loss. Servers use
    /// this.
    PowerLoss,
    /// sled's flush alone (`sync_file_range` on Linux): survives a process crash, not a power loss.
    /// Only for measuring what `fdatasync` costs.
    ProcessCrash,
}

/// A step of [`SledLog::append`] that a test can make fail (`SledLog::fail_at`, feature
/// `test-support`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendStep {
    /// sled took the batch into memory, then reported an error.
    Apply,
    /// sled's flush failed after writing the batch.
    Flush,
    /// `fdatasync` failed after sled's flush.
    Sync,
    /// The head file could not be written after the batch was durable.
    Evidence,
}

/// The sled 0.34 store: one tree, record keys the seq in big-endian, and the head file beside it.
pub struct SledLog {
    pub(super) db: sled::Db,
    pub(super) path: PathBuf,
    pub(super) data_file: File,
    pub(super) durability: Durability,
    pub(super) synced_blobs: HashSet<std::ffi::OsString>,
    pub(super) acknowledged: Acknowledged,
    pub(super) head_file: Option<HeadFile>,
    /// A failure a test injected: the step, and how many appends succeed before it strikes. Not
    /// in a build without `test-support`: the server's appends check nothing of the kind.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fault: Option<(AppendStep, u64)>,
}

impl SledLog {
    /// Opens (or creates) the log in directory `path`, with power-loss durability.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds it; [`Error::Store`] when sled cannot open
    /// it; [`Error::Io`] when its files cannot be synced or its head file read or created.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, Durability::PowerLoss)
    }

    /// Opens the log with a chosen durability.
    ///
    /// # Errors
    /// As [`SledLog::open`].
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, Error> {
        // The log is append-only and read back only at start-up and by investigators: a small
        // page cache keeps the server's memory bounded without slowing appends. No background
        // flusher: every batch is flushed when it is appended, and after a failed append nothing
        // may be flushed behind the journal's back (fail-stop, SPEC 3.4). The flusher is also
        // sled's only garbage collector; without it a million records take 668 MiB instead of
        // 569 MiB and a reopen reads the extra (measured with `cargo bench --bench log`).
        let existed = path.join("db").exists();
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(None);
        // sled releases its file lock only when its background threads let go of the store, a
        // moment after the last handle is dropped: a log reopened at once (a restart in the same
        // process) waits for that rather than failing.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        while held_by_another(path) {
            if std::time::Instant::now() >= deadline {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let db = recover(&config, path)??;
        let data_path = path.join("db");
        let data_file = File::open(&data_path).map_err(|source| Error::Io {
            action: "open",
            path: data_path,
            source,
        })?;
        // A store just created: make its files' directory entries durable. (Not for one that
        // existed: on ext4 a directory sync also writes out every file's new data, which for a
        // freshly copied store is all of it.)
        if !existed {
            sync_directory(path)?;
        }
        let (acknowledged, head_file) = match HeadFile::read(path)? {
            Some(found) => {
                let file = matches!(found, Acknowledged::Head(_))
                    .then(|| HeadFile::open(path))
                    .transpose()?;
                (found, file)
            }
            None => match (db.get_lt([TREE_PREFIX])?, db.get(LEGACY_HEAD_KEY)?) {
                (None, _) => {
                    let file = HeadFile::create(path, LogHead::EMPTY)?;
                    (Acknowledged::Head(LogHead::EMPTY), Some(file))
                }
                (Some(_), Some(value)) => (Acknowledged::Legacy(legacy_head(&value)?), None),
                (Some(_), None) => (Acknowledged::Missing, None),
            },
        };
        Ok(Self {
            db,
            path: path.to_path_buf(),
            data_file,
            durability,
            synced_blobs: HashSet::new(),
            acknowledged,
            head_file,
            #[cfg(any(test, feature = "test-support"))]
            fault: None,
        })
    }

    /// Makes everything sled has flushed durable on the device. sled's own flush ends in
    /// `sync_file_range`, which neither empties the device cache nor writes the file's metadata,
    /// and sled never syncs the blob files it writes for very large values.
    pub(super) fn sync_files(&mut self) -> Result<(), Error> {
        let io = |action, path: &Path, source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        self.data_file
            .sync_data()
            .map_err(|e| io("fdatasync", &self.path.join("db"), e))?;
        let blobs = self.path.join("blobs");
        let Ok(entries) = std::fs::read_dir(&blobs) else {
            return Ok(());
        };
        let mut present = HashSet::new();
        let mut new_blob = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                let path = entry.path();
                File::open(&path)
                    .and_then(|file| file.sync_data())
                    .map_err(|e| io("fdatasync", &path, e))?;
                new_blob = true;
            }
            present.insert(name);
        }
        if new_blob {
            sync_directory(&blobs)?;
        }
        self.synced_blobs = present;
        Ok(())
    }

    /// Records `head` as acknowledged in the head file (creating it for a store adopted from
    /// before head files).
    pub(super) fn write_evidence(&mut self, head: LogHead) -> Result<(), Error> {
        let file = match &mut self.head_file {
            Some(file) => file,
            None => self.head_file.insert(HeadFile::create(&self.path, head)?),
        };
        file.write(head)?;
        self.acknowledged = Acknowledged::Head(head);
        Ok(())
    }

    /// Makes the `nth` append from now (0: the next) fail at `step`, as a failing disk would:
    /// only for tests of fail-stop.
    #[cfg(any(test, feature = "test-support"))]
    pub fn fail_at(&mut self, step: AppendStep, nth: u64) {
        self.fault = Some((step, nth));
    }

    /// Whether the injected fault, if any, strikes at `step` of this append.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn injected(&self, step: AppendStep) -> Result<(), Error> {
        match self.fault {
            Some((at, 0)) if at == step => Err(Error::Io {
                action: "write (injected failure)",
                path: self.path.join("db"),
                source: std::io::Error::from_raw_os_error(5),
            }),
            _ => Ok(()),
        }
    }

    /// Without `test-support` no fault can be injected: every step goes on.
    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    pub(super) fn injected(&self, _: AppendStep) -> Result<(), Error> {
        Ok(())
    }

    /// One append more has succeeded: an injected fault comes one nearer.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn count_down_fault(&mut self) {
        if let Some((_, countdown)) = &mut self.fault {
            *countdown = countdown.wrapping_sub(1);
        }
    }

    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    pub(super) fn count_down_fault(&mut self) {}
}
