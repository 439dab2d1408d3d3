//! The sled 0.34 store behind [`SledLog`]: one tree, record keys the seq in big-endian, the head
//! file beside it, `fdatasync` after sled's flush, and fail-stop after a failed append.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::checkpoint::sync_directory;
use crate::evidence::HeadFile;
use crate::record::Digest;
use crate::store::Acknowledged;
use crate::Error;

use std::sync::Arc;

use crate::tree::{Hash, Node};

use super::{pick_nodes, Appended, Log, LogHead, LogReader, StoredRecord, MAX_SEQ};

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

/// The key under which stores written before head files kept the head of their last batch,
/// inside the same atomic batch. Record keys are exactly 8 bytes (the seq, big-endian), so this
/// 5-byte key never collides with one and sorts after every record whose seq is below 2^56. It is
/// read only to adopt such a store ([`Acknowledged::Legacy`]) and no longer written.
const LEGACY_HEAD_KEY: &[u8] = b"\xffhead";

/// The first byte of a tree key: `0xfe` ‖ the 8-byte big-endian seq of the first record of a
/// block of [`TREE_BLOCK`] records (seqs `16k + 1 ..= 16k + 16`). The value holds, for each record
/// of the block in turn, one byte (how many tree hashes it has; 0 for none stored) and then those
/// hashes. A key per block, not per record: a sled key costs about as much as a record, and a key
/// per record halved the rate of large batches; blocks at fixed places let a read go straight to
/// its key. Record keys begin with `0x00` (seqs below 2^56), so every tree key sorts after every
/// record and before the legacy head key.
const TREE_PREFIX: u8 = 0xfe;

/// Records per tree block.
const TREE_BLOCK: u64 = 16;

fn tree_key(seq: u64) -> [u8; 9] {
    let mut key = [TREE_PREFIX; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The first seq of the block that holds record `seq`'s tree hashes.
fn block_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / TREE_BLOCK * TREE_BLOCK + 1
}

/// Calls `visit` with the seq and stored hashes of each record of the block that starts at
/// `first` that has hashes stored, until it returns `false`; returns how many entries the block
/// holds.
///
/// # Errors
/// [`Error::TreeMissing`] for a block that is not a run of counted hashes.
fn walk_block(
    first: u64,
    value: &[u8],
    visit: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<u64, Error> {
    let (mut seq, mut rest) = (first, value);
    while let Some((&count, after)) = rest.split_first() {
        let length = usize::from(count) * 32;
        let hashes = after.get(..length).ok_or_else(|| Error::TreeMissing {
            reason: format!(
                "the tree hashes stored for records {first}..{} are damaged at record {seq}",
                first + TREE_BLOCK - 1
            ),
        })?;
        if count > 0 && !visit(seq, hashes) {
            return Ok(seq - first + 1);
        }
        rest = &after[length..];
        seq += 1;
    }
    Ok(seq - first)
}

/// Adds record `seq`'s hashes to its block's value, which holds the entries before it (records
/// without stored hashes in between get empty entries).
fn push_entry(first: u64, value: &mut Vec<u8>, seq: u64, hashes: &[u8]) -> Result<(), Error> {
    let held = walk_block(first, value, &mut |_, _| true)?;
    for _ in first + held..seq {
        value.push(0);
    }
    value.push(u8::try_from(hashes.len() / 32).unwrap_or(u8::MAX));
    value.extend_from_slice(hashes);
    Ok(())
}

/// The tree hashes stored with record `seq`.
fn stored_at(db: &sled::Db, seq: u64) -> Result<Option<Vec<u8>>, Error> {
    let first = block_of(seq);
    let Some(value) = db.get(tree_key(first))? else {
        return Ok(None);
    };
    let mut found = None;
    walk_block(first, &value, &mut |at, hashes| {
        if at == seq {
            found = Some(hashes.to_vec());
        }
        at < seq
    })?;
    Ok(found)
}

/// Calls `visit` with the stored tree hashes of every record `from..=to` that has them, in order.
fn scan_tree(
    db: &sled::Db,
    from: u64,
    to: u64,
    visit: &mut dyn FnMut(u64, &[u8]),
) -> Result<(), Error> {
    for entry in db.range(tree_key(block_of(from))..=tree_key(to.min(MAX_SEQ))) {
        let (key, value) = entry?;
        let first = key_seq(key.get(1..).unwrap_or_default())?;
        walk_block(first, &value, &mut |seq, hashes| {
            if seq >= from && seq <= to {
                visit(seq, hashes);
            }
            seq < to
        })?;
    }
    Ok(())
}

/// The blocks a run of records' tree hashes go into, each whole: the block the log's tree ends
/// in is read back (or taken from `tail`, the value this writer wrote last) and extended.
fn tree_blocks<'a>(
    db: &sled::Db,
    tail: Option<(u64, Vec<u8>)>,
    entries: impl Iterator<Item = (u64, &'a [u8])>,
) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let mut tail = tail;
    let mut blocks: Vec<(u64, Vec<u8>)> = Vec::new();
    for (seq, hashes) in entries {
        let first = block_of(seq);
        if blocks.last().is_none_or(|(open, _)| *open != first) {
            let value = match tail.take() {
                Some((cached, value)) if cached == first => value,
                _ => db
                    .get(tree_key(first))?
                    .map(|value| value.to_vec())
                    .unwrap_or_default(),
            };
            blocks.push((first, value));
        }
        if let Some((open, value)) = blocks.last_mut() {
            push_entry(*open, value, seq, hashes)?;
        }
    }
    Ok(blocks)
}

/// How long opening a log waits for a lock that a just-dropped handle still holds.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled's page cache size (sled's default is 1 GiB). The log is appended and read in order: a
/// larger cache made neither faster (4 and 16 MiB: the same appends, verify and replay times), and
/// it is resident in the server.
const SLED_CACHE_BYTES: u64 = 4 << 20;

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
    db: sled::Db,
    path: PathBuf,
    data_file: File,
    durability: Durability,
    synced_blobs: HashSet<std::ffi::OsString>,
    acknowledged: Acknowledged,
    head_file: Option<HeadFile>,
    /// A failure a test injected: the step, and how many appends succeed before it strikes. Not
    /// in a build without `test-support`: the server's appends check nothing of the kind.
    #[cfg(any(test, feature = "test-support"))]
    fault: Option<(AppendStep, u64)>,
    /// The tree block this log wrote last, as written: the next batch extends it without
    /// reading it back.
    tree_tail: Option<(u64, Vec<u8>)>,
}

thread_local! {
    /// Set while this thread has sled recover a store: a panic then is sled's way of saying that the
    /// store is damaged, and is reported as an error instead of printed.
    static RECOVERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Has sled open (and recover) a store. sled 0.34 panics on some damaged stores instead of
/// returning an error ("tried to serialize Uninitialized" for a zeroed range): that panic is caught
/// and becomes [`Error::Unrecoverable`], so a damaged store is refused by name rather than crashing
/// the server or the investigator. A panic hook, installed once and chained to the previous one,
/// keeps such a caught panic from printing; every other panic prints as before.
fn recover(config: &sled::Config, path: &Path) -> Result<sled::Result<sled::Db>, Error> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !RECOVERING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    RECOVERING.with(|recovering| recovering.set(true));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
    RECOVERING.with(|recovering| recovering.set(false));
    opened.map_err(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no reason given".into());
        Error::Unrecoverable {
            path: path.to_path_buf(),
            reason,
        }
    })
}

fn is_lock_error(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(error) if error.to_string().contains("could not acquire lock"))
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
        let db = loop {
            match recover(&config, path)? {
                Ok(db) => break db,
                Err(error) if is_lock_error(&error) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(error) if is_lock_error(&error) => {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                    })
                }
                Err(error) => return Err(error.into()),
            }
        };
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
            tree_tail: None,
        })
    }

    /// Makes everything sled has flushed durable on the device. sled's own flush ends in
    /// `sync_file_range`, which neither empties the device cache nor writes the file's metadata,
    /// and sled never syncs the blob files it writes for very large values.
    fn sync_files(&mut self) -> Result<(), Error> {
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
    fn write_evidence(&mut self, head: LogHead) -> Result<(), Error> {
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
    fn injected(&self, step: AppendStep) -> Result<(), Error> {
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
    fn injected(&self, _: AppendStep) -> Result<(), Error> {
        Ok(())
    }

    /// One append more has succeeded: an injected fault comes one nearer.
    #[cfg(any(test, feature = "test-support"))]
    fn count_down_fault(&mut self) {
        if let Some((_, countdown)) = &mut self.fault {
            *countdown = countdown.wrapping_sub(1);
        }
    }

    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    fn count_down_fault(&mut self) {}
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn key_seq(key: &[u8]) -> Result<u64, Error> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Error::Corrupt {
        reason: format!("record key of {} bytes, not 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn legacy_head(value: &[u8]) -> Result<LogHead, Error> {
    let corrupt = || Error::Corrupt {
        reason: format!("recorded head of {} bytes, not 40", value.len()),
    };
    let seq: [u8; 8] = value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    let hash: [u8; 32] = value
        .get(8..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    Ok(LogHead {
        seq: u64::from_be_bytes(seq),
        hash: Digest(hash),
    })
}

impl Log for SledLog {
    fn append(&mut self, records: &[Appended]) -> Result<(), Error> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for appended in records {
            batch.insert(&seq_key(appended.seq), appended.bytes.as_slice());
        }
        let flat: Vec<Vec<u8>> = records
            .iter()
            .map(|appended| appended.tree.iter().flat_map(|hash| hash.0).collect())
            .collect();
        let mut blocks = tree_blocks(
            &self.db,
            self.tree_tail.take(),
            records
                .iter()
                .zip(&flat)
                .map(|(appended, hashes)| (appended.seq, hashes.as_slice())),
        )?;
        for (first, value) in &blocks {
            batch.insert(&tree_key(*first), value.as_slice());
        }
        self.tree_tail = blocks.pop();
        self.db.apply_batch(batch)?;
        self.injected(AppendStep::Apply)?;
        self.db.flush()?;
        self.injected(AppendStep::Flush)?;
        if self.durability == Durability::PowerLoss {
            self.sync_files()?;
        }
        self.injected(AppendStep::Sync)?;
        let head = LogHead {
            seq: last.seq,
            hash: Digest::of(&last.bytes),
        };
        self.injected(AppendStep::Evidence)?;
        self.write_evidence(head)?;
        self.count_down_fault();
        Ok(())
    }

    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, Error>> + '_> {
        let to = to.min(MAX_SEQ);
        if from > to {
            return Box::new(std::iter::empty());
        }
        Box::new(self.db.range(seq_key(from)..=seq_key(to)).map(|entry| {
            let (key, value) = entry?;
            Ok((key_seq(&key)?, value.to_vec()))
        }))
    }

    fn scan(&self, from: u64, to: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<(), Error> {
        let to = to.min(MAX_SEQ);
        if from > to {
            return Ok(());
        }
        for entry in self.db.range(seq_key(from)..=seq_key(to)) {
            let (key, value) = entry?;
            visit(key_seq(&key)?, &value);
        }
        Ok(())
    }

    fn head(&self) -> Result<LogHead, Error> {
        match self.db.get_lt([TREE_PREFIX])? {
            None => Ok(LogHead::EMPTY),
            Some((key, value)) => Ok(LogHead {
                seq: key_seq(&key)?,
                hash: Digest::of(&value),
            }),
        }
    }

    fn last_key(&self) -> Result<u64, Error> {
        match self.db.get_lt([TREE_PREFIX])? {
            None => Ok(0),
            Some((key, _)) => key_seq(&key),
        }
    }

    fn tree_size(&self) -> Result<u64, Error> {
        let last_block = self
            .db
            .range(tree_key(0)..=tree_key(MAX_SEQ))
            .next_back()
            .transpose()?;
        let Some((key, value)) = last_block else {
            return Ok(0);
        };
        let first = key_seq(key.get(1..).unwrap_or_default())?;
        let mut last = first.saturating_sub(1);
        walk_block(first, &value, &mut |seq, _| {
            last = seq;
            true
        })?;
        Ok(last)
    }

    fn scan_tree(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), Error> {
        scan_tree(&self.db, from, to, visit)
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        read_nodes(&self.db, nodes)
    }

    fn add_tree(&mut self, first_seq: u64, tree: &[Vec<Hash>]) -> Result<(), Error> {
        let flat: Vec<Vec<u8>> = tree
            .iter()
            .map(|hashes| hashes.iter().flat_map(|hash| hash.0).collect())
            .collect();
        let blocks = tree_blocks(
            &self.db,
            None,
            (first_seq..).zip(flat.iter().map(Vec::as_slice)),
        )?;
        let mut batch = sled::Batch::default();
        for (first, value) in &blocks {
            batch.insert(&tree_key(*first), value.as_slice());
        }
        self.db.apply_batch(batch)?;
        self.tree_tail = None;
        self.db.flush()?;
        if self.durability == Durability::PowerLoss {
            self.sync_files()?;
        }
        Ok(())
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(SledReader {
            db: self.db.clone(),
        })
    }

    fn acknowledged(&self) -> Acknowledged {
        self.acknowledged.clone()
    }

    fn sync_evidence(&mut self) -> Result<(), Error> {
        match &self.head_file {
            Some(file) => file.sync(),
            None => Ok(()),
        }
    }

    fn abandon(&mut self) {
        // sled flushes whatever it still holds in memory when its last handle is dropped: a
        // handle that is never dropped keeps that from happening. The process exits soon after.
        std::mem::forget(self.db.clone());
    }
}

/// A read-only handle on a [`SledLog`] that others may hold while a journal owns the log: the
/// live server streams its log to operators through one. It sees whatever sled has applied,
/// which may run ahead of what is durable: callers bound their reads by the journal's durable
/// head.
#[derive(Clone)]
pub struct SledReader {
    db: sled::Db,
}

fn read_nodes(db: &sled::Db, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
    pick_nodes(nodes, &mut |seq| stored_at(db, seq))
}

impl LogReader for SledReader {
    fn scan_while(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        let to = to.min(MAX_SEQ);
        if from > to {
            return Ok(());
        }
        for entry in self.db.range(seq_key(from)..=seq_key(to)) {
            let (key, value) = entry?;
            if !visit(key_seq(&key)?, &value) {
                break;
            }
        }
        Ok(())
    }

    fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<Hash>, Error> {
        read_nodes(&self.db, nodes)
    }
}

impl SledLog {
    /// Overwrites or removes raw entries, bypassing the chain: only for tests that tamper with a
    /// log on purpose.
    #[cfg(any(test, feature = "test-support"))]
    pub fn tamper(&self, seq: u64, bytes: Option<&[u8]>) -> Result<(), Error> {
        match bytes {
            Some(bytes) => self.db.insert(seq_key(seq), bytes)?,
            None => self.db.remove(seq_key(seq))?,
        };
        self.db.flush()?;
        Ok(())
    }

    /// Overwrites or removes the tree hashes stored with record `seq`: only for tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn tamper_tree(&self, seq: u64, hashes: Option<&[u8]>) -> Result<(), Error> {
        // Every stored entry read, the one changed, and the blocks written again.
        let mut entries = std::collections::BTreeMap::new();
        scan_tree(&self.db, 1, MAX_SEQ, &mut |at, stored| {
            entries.insert(at, stored.to_vec());
        })?;
        match hashes {
            Some(hashes) => entries.insert(seq, hashes.to_vec()),
            None => entries.remove(&seq),
        };
        for key in self.db.range(tree_key(0)..=tree_key(u64::MAX)).keys() {
            self.db.remove(key?)?;
        }
        let blocks = tree_blocks(
            &self.db,
            None,
            entries.iter().map(|(at, stored)| (*at, stored.as_slice())),
        )?;
        for (first, value) in blocks {
            self.db.insert(tree_key(first), value)?;
        }
        self.db.flush()?;
        Ok(())
    }
}
