//! Evidence of the acknowledged head, kept outside the store's own recovery (SPEC §3.4).
//!
//! sled recovers a damaged store by discarding everything after the first bad segment, and a head
//! the store records about itself is discarded with it: a truncated or damaged store then looks
//! like a shorter intact log. So the log also keeps, in a small file of its own beside the store,
//! the seq and hash of the last record it acknowledged. The file is rewritten after every durable
//! batch (never before the batch is durable, so a crash can only leave it behind the store, never
//! ahead of it) and synced at every checkpoint and when the log is closed. Opening compares the
//! store with it: a store that lacks an acknowledged record, or holds other bytes under its seq,
//! is refused.
//!
//! The file holds two fixed-size text slots, written alternately, each with its own check hash:
//! a torn write damages at most the slot being written, and the other still holds the head before
//! it. `cat head` shows both.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::record::Digest;
use crate::store::{Acknowledged, Log, LogHead};
use crate::Error;

/// The evidence file's name inside a sled log's directory.
pub const HEAD_FILE: &str = "head";

/// Bytes of one slot.
const SLOT: usize = 128;

/// The first word of a slot.
const MAGIC: &str = "neuron-head-v1";

/// Checks a log's store against the evidence of its acknowledged head, and returns the store's
/// head. Records beyond the acknowledged head are fine: a batch can be durable in the store when
/// a crash keeps its head from reaching the file.
///
/// # Errors
/// [`Error::AcknowledgedButAbsent`] when the store ends before the acknowledged head;
/// [`Error::Corrupt`] when it holds other bytes under that seq; [`Error::HeadEvidence`] when the
/// evidence is missing or unreadable; the store's error.
pub fn check(log: &dyn Log) -> Result<LogHead, Error> {
    let head = log.head()?;
    let acknowledged = match log.acknowledged() {
        Acknowledged::Head(acknowledged) | Acknowledged::Legacy(acknowledged) => acknowledged,
        Acknowledged::NotKept => return Ok(head),
        Acknowledged::Missing => {
            return Err(Error::HeadEvidence {
                reason: format!(
                    "the store holds records up to seq {} but its {HEAD_FILE} file is missing, so a lost tail could not be detected",
                    head.seq
                ),
            })
        }
        Acknowledged::Damaged { reason } => {
            return Err(Error::HeadEvidence {
                reason: format!("the {HEAD_FILE} file is damaged ({reason})"),
            })
        }
    };
    if acknowledged.seq == 0 {
        return Ok(head);
    }
    if acknowledged.seq > head.seq {
        return Err(Error::AcknowledgedButAbsent {
            first: head.seq + 1,
            last: acknowledged.seq,
        });
    }
    match log
        .read(acknowledged.seq, acknowledged.seq)
        .next()
        .transpose()?
    {
        Some((_, bytes)) if Digest::of(&bytes) == acknowledged.hash => Ok(head),
        Some(_) => Err(Error::Corrupt {
            reason: format!(
                "record {} is not the record acknowledged under its seq (hash {})",
                acknowledged.seq, acknowledged.hash
            ),
        }),
        None => Err(Error::AcknowledgedButAbsent {
            first: acknowledged.seq,
            last: acknowledged.seq,
        }),
    }
}

/// The open head file of a log.
#[derive(Debug)]
pub struct HeadFile {
    file: File,
    path: PathBuf,
    next_slot: u64,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl HeadFile {
    /// Reads the head file in `dir`: `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be read.
    pub fn read(dir: &Path) -> Result<Option<Acknowledged>, Error> {
        let path = dir.join(HEAD_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        Ok(Some(parse(&bytes)))
    }

    /// Creates the head file of a new, empty store and makes it durable (file and directory
    /// entry). Fails if one exists.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created or synced.
    pub fn create(dir: &Path, head: LogHead) -> Result<Self, Error> {
        let path = dir.join(HEAD_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("create", &path))?;
        let mut created = Self {
            file,
            path,
            next_slot: 0,
        };
        // Both slots hold the head: whichever a torn write later damages, the other is sound.
        created.write(head)?;
        created.write(head)?;
        created.sync()?;
        crate::checkpoint::sync_directory(dir)?;
        Ok(created)
    }

    /// Opens an existing head file for writing. The first write goes to the slot that does not
    /// hold the newest head, so that a torn write cannot take that one.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be opened or read.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(HEAD_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut bytes = [0u8; 2 * SLOT];
        let seqs: Vec<Option<u64>> = match file.read_exact_at(&mut bytes, 0) {
            Ok(()) => bytes
                .chunks_exact(SLOT)
                .map(|slot| parse_slot(slot).map(|head| head.seq))
                .collect(),
            Err(_) => vec![None, None],
        };
        let newest_is_first = seqs.first() >= seqs.get(1);
        Ok(Self {
            file,
            path,
            next_slot: if newest_is_first { 1 } else { 0 },
        })
    }

    /// Writes `head` into the next slot (not synced).
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub fn write(&mut self, head: LogHead) -> Result<(), Error> {
        let offset = (self.next_slot % 2) * SLOT as u64;
        self.file
            .write_all_at(&slot(head), offset)
            .map_err(io("write", &self.path))?;
        self.next_slot += 1;
        Ok(())
    }

    /// Makes what was written durable.
    ///
    /// # Errors
    /// [`Error::Io`] when the sync fails.
    pub fn sync(&self) -> Result<(), Error> {
        self.file.sync_data().map_err(io("fdatasync", &self.path))
    }
}

fn check_of(text: &str) -> String {
    hex::encode(&Digest::of(text.as_bytes()).0[..8])
}

/// One slot: `neuron-head-v1 <seq, 20 digits> <hash, 64 hex> <check, 16 hex>`, padded with spaces to
/// 127 bytes and ended by a newline.
fn slot(head: LogHead) -> [u8; SLOT] {
    let body = format!("{MAGIC} {:020} {}", head.seq, head.hash);
    let line = format!("{body} {}", check_of(&body));
    let mut bytes = [b' '; SLOT];
    bytes[..line.len()].copy_from_slice(line.as_bytes());
    bytes[SLOT - 1] = b'\n';
    bytes
}

fn parse_slot(bytes: &[u8]) -> Option<LogHead> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_suffix('\n')?.trim_end_matches(' ');
    let (body, check) = text.rsplit_once(' ')?;
    if check != check_of(body) {
        return None;
    }
    let mut words = body.split(' ');
    if words.next()? != MAGIC {
        return None;
    }
    let seq = words.next()?.parse().ok()?;
    let hash = Digest::from_hex(words.next()?).ok()?;
    words.next().is_none().then_some(LogHead { seq, hash })
}

/// Reads both slots and takes the newest sound one.
fn parse(bytes: &[u8]) -> Acknowledged {
    if bytes.len() != 2 * SLOT {
        return Acknowledged::Damaged {
            reason: format!("{} bytes, not {}", bytes.len(), 2 * SLOT),
        };
    }
    let sound = bytes.chunks_exact(SLOT).filter_map(parse_slot);
    match sound.max_by_key(|head| head.seq) {
        Some(head) => Acknowledged::Head(head),
        None => Acknowledged::Damaged {
            reason: "neither slot holds a sound head".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> LogHead {
        LogHead {
            seq,
            hash: Digest::of(&seq.to_be_bytes()),
        }
    }

    #[test]
    fn the_newest_sound_slot_is_the_head_and_a_torn_slot_leaves_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = HeadFile::create(dir.path(), LogHead::EMPTY).unwrap();
        let read = || HeadFile::read(dir.path()).unwrap().unwrap();
        assert_eq!(read(), Acknowledged::Head(LogHead::EMPTY));
        file.write(head(5)).unwrap();
        file.write(head(9)).unwrap();
        assert_eq!(read(), Acknowledged::Head(head(9)));
        let text = std::fs::read_to_string(dir.path().join(HEAD_FILE)).unwrap();
        assert!(
            text.starts_with("neuron-head-v1 00000000000000000005 "),
            "{text}"
        );

        // A write torn inside the slot being written: the other slot still holds the head before.
        let mut bytes = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        bytes[SLOT + 40] ^= 0x01;
        std::fs::write(dir.path().join(HEAD_FILE), &bytes).unwrap();
        assert_eq!(read(), Acknowledged::Head(head(5)));

        bytes[40] ^= 0x01;
        std::fs::write(dir.path().join(HEAD_FILE), &bytes).unwrap();
        assert!(matches!(read(), Acknowledged::Damaged { .. }));
        std::fs::write(dir.path().join(HEAD_FILE), &bytes[..SLOT]).unwrap();
        assert!(matches!(read(), Acknowledged::Damaged { .. }));
        std::fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
        assert_eq!(HeadFile::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_slot_is_one_line_of_text_with_its_check() {
        let bytes = slot(head(64));
        assert_eq!(bytes.len(), SLOT);
        assert_eq!(parse_slot(&bytes), Some(head(64)));
        let mut other = bytes;
        other[20] = b'9';
        assert_eq!(parse_slot(&other), None, "a changed seq fails its check");
    }
}
