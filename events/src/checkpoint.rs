//! The Neuron's own Ed25519 key and the signed checkpoints of SPEC §3.2. The key is created once in
//! the data directory with mode 0600 and is never written anywhere else, logged or printed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::event::LogCheckpoint;
use crate::record::Digest;
use crate::tree::Hash;
use crate::{b64, note, Error};

/// A checkpoint as the log holds it and receipts and witnesses use it: the record it stands in,
/// the tree size and root it signs, and its signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The `log.checkpoint` record's seq.
    pub seq: u64,
    /// The tree size signed.
    pub size: u64,
    /// The root at that size.
    pub root: Hash,
    /// The signed note (C2SP checkpoint), as recorded.
    pub note: String,
}

impl SignedCheckpoint {
    /// The signed checkpoint a `log.checkpoint` record holds, if it carries a note (checkpoints
    /// written before the tree do not), with the size and root its note names.
    pub fn of(seq: u64, checkpoint: &LogCheckpoint) -> Option<Self> {
        let text = checkpoint.note.as_deref()?;
        let parsed = note::Note::parse(text).ok()?;
        let body = note::Checkpoint::parse(&parsed.text).ok()?;
        Some(Self {
            seq,
            size: body.size,
            root: body.root,
            note: text.to_string(),
        })
    }
}

/// What a checkpoint's note says of the tree besides its size: the log's origin and the root.
#[derive(Clone, Copy, Debug)]
pub struct TreeHead<'a> {
    /// The log's origin (C2SP), the note's key name.
    pub origin: &'a str,
    /// The tree's root at the checkpoint's size.
    pub root: Hash,
}

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "neuron.key";

/// The Neuron's signing key.
pub struct NeuronKey {
    signing: SigningKey,
}

impl fmt::Debug for NeuronKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeuronKey")
            .field("public", &self.public_b64())
            .finish_non_exhaustive()
    }
}

impl NeuronKey {
    /// The key with this seed. Tests use fixed seeds; servers use [`NeuronKey::load_or_create`].
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    /// [`Error::Random`] when the random source fails.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|error| Error::Random {
            reason: error.to_string(),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// Loads `{dir}/neuron.key`, or creates it when absent (mode 0600). Creation is exclusive:
    /// the key is written to a temporary file and linked into place only if no key is there yet,
    /// so two first starts never overwrite each other's key (the one that loses loads the
    /// winner's). Returns the key and whether it was created now.
    ///
    /// # Errors
    /// As [`NeuronKey::load`]; [`Error::Io`] when it cannot be created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), Error> {
        let path = dir.join(KEY_FILE);
        match fs::symlink_metadata(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                if key.write_new(dir)? {
                    Ok((key, true))
                } else {
                    Ok((Self::load(&path)?, false))
                }
            }
            _ => Ok((Self::load(&path)?, false)),
        }
    }

    /// Loads a key file, refusing one that is not a regular file of the running user's that only
    /// that user can read: a symbolic link (it could point anywhere), another user's file, or a
    /// file others can read.
    ///
    /// # Errors
    /// [`Error::KeyFile`] naming what is wrong (never the key).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let refused = |reason: String| key_error(path, reason);
        let before = fs::symlink_metadata(path).map_err(|error| refused(error.to_string()))?;
        if before.file_type().is_symlink() {
            return Err(refused(
                "is a symbolic link; the key must be a regular file in the data directory".into(),
            ));
        }
        let mut file = fs::File::open(path).map_err(|error| refused(error.to_string()))?;
        // The file opened must be the one examined (not swapped for another in between).
        let metadata = file
            .metadata()
            .map_err(|error| refused(error.to_string()))?;
        if (metadata.dev(), metadata.ino()) != (before.dev(), before.ino()) {
            return Err(refused("changed while it was being opened".into()));
        }
        if !metadata.is_file() {
            return Err(refused("is not a regular file".into()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = unsafe { libc::geteuid() };
        if metadata.uid() != user {
            return Err(refused(format!(
                "is owned by uid {}, not by the user running the Neuron (uid {user})",
                metadata.uid()
            )));
        }
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(refused(format!(
                "mode {:o} lets others read it; chmod 600 it",
                mode & 0o777
            )));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .map_err(|error| refused(error.to_string()))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| refused("not 64 hex characters".into()))?;
        Ok(Self::from_seed(seed))
    }

    /// Writes this key as `{dir}/neuron.key` (mode 0600, synced, directory entry synced) unless a
    /// key file is already there: returns whether it was written.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be written.
    pub fn write_new(&self, dir: &Path) -> Result<bool, Error> {
        let path = dir.join(KEY_FILE);
        let io = |action, source| Error::Io {
            action,
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix).map_err(|error| Error::Random {
            reason: error.to_string(),
        })?;
        let temporary = dir.join(format!("{KEY_FILE}.{}.tmp", hex::encode(suffix)));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(|e| io("create", e))?;
            file.write_all(format!("{}\n", hex::encode(self.signing.to_bytes())).as_bytes())
                .map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("sync", e))?;
            // A link, unlike a rename, never replaces a file that is already there.
            match fs::hard_link(&temporary, &path) {
                Ok(()) => Ok(true),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(error) => Err(io("link into place", error)),
            }
        })();
        let _ = fs::remove_file(&temporary);
        let written = written?;
        sync_directory(dir)?;
        Ok(written)
    }

    /// The public key, base64url.
    pub fn public_b64(&self) -> String {
        b64::encode(self.signing.verifying_key().as_bytes())
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs the chain head at `upto`.
    pub fn sign_checkpoint(&self, upto: u64, head: &Digest, tree: &TreeHead<'_>) -> LogCheckpoint {
        let head = head.to_hex();
        let signature = self.signing.sign(&checkpoint_message(upto, &head));
        let text = note::Checkpoint {
            origin: tree.origin.to_string(),
            size: upto,
            root: tree.root,
            extensions: Vec::new(),
        }
        .to_text();
        let signed = note::Note {
            signatures: vec![note::sign(tree.origin, &self.signing, &text)],
            text,
        };
        LogCheckpoint {
            upto,
            head,
            key: self.public_b64(),
            sig: b64::encode(signature.to_bytes()),
            size: Some(upto),
            root: Some(tree.root.to_base64()),
            note: Some(signed.to_text()),
        }
    }

    /// The key's verifier key under `origin` (C2SP vkey, Ed25519): what witnesses and patients'
    /// agents are given to check checkpoints and receipts.
    ///
    /// # Errors
    /// [`note::NoteError::BadName`] for an origin that cannot be a key name.
    pub fn verifier_key(&self, origin: &str) -> Result<note::VerifierKey, note::NoteError> {
        note::VerifierKey::new(origin, note::ED25519, self.verifying_key())
    }

    /// Signs `text` as a note under `origin`.
    pub fn sign_note(&self, origin: &str, text: &str) -> note::SignatureLine {
        note::sign(origin, &self.signing, text)
    }
}

fn key_error(path: &Path, reason: String) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// Makes a directory's entries (a newly created or renamed file) durable.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be opened or synced.
pub fn sync_directory(dir: &Path) -> Result<(), Error> {
    let io = |action, source| Error::Io {
        action,
        path: PathBuf::from(dir),
        source,
    };
    fs::File::open(dir)
        .map_err(|e| io("open directory", e))?
        .sync_all()
        .map_err(|e| io("sync directory", e))
}

/// The bytes a checkpoint signs: `neuron-checkpoint-v1\n{upto}\n{head}`.
pub fn checkpoint_message(upto: u64, head_hex: &str) -> Vec<u8> {
    format!("neuron-checkpoint-v1\n{upto}\n{head_hex}").into_bytes()
}

/// Why a checkpoint's signature does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointFault {
    /// The key is not 32 bytes of base64url, or not a valid Ed25519 point.
    BadKey,
    /// The signature is not 64 bytes of base64url, or does not verify under the key.
    BadSignature,
}

/// The Ed25519 key of `bytes`, decompressed once per thread for the key it saw last: a log is
/// signed by one key for long stretches, and verifying it meets that key in every checkpoint
/// (twice: its signature and its note's).
pub(crate) fn key_from_bytes(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    thread_local! {
        static LAST: std::cell::Cell<Option<([u8; 32], VerifyingKey)>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| {
        if let Some((seen, key)) = last.get() {
            if &seen == bytes {
                return Some(key);
            }
        }
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        last.set(Some((*bytes, key)));
        Some(key)
    })
}

/// Checks a checkpoint's signature (strict Ed25519) under the key it names, and returns that key.
///
/// # Errors
/// The [`CheckpointFault`] found.
pub fn verify_checkpoint(checkpoint: &LogCheckpoint) -> Result<VerifyingKey, CheckpointFault> {
    let key_bytes: [u8; 32] = b64::decode(&checkpoint.key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(CheckpointFault::BadKey)?;
    let key = key_from_bytes(&key_bytes).ok_or(CheckpointFault::BadKey)?;
    let signature_bytes: [u8; 64] = b64::decode(&checkpoint.sig)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(CheckpointFault::BadSignature)?;
    let signature = Signature::from_bytes(&signature_bytes);
    key.verify_strict(
        &checkpoint_message(checkpoint.upto, &checkpoint.head),
        &signature,
    )
    .map_err(|_| CheckpointFault::BadSignature)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_forgeries_do_not() {
        let key = NeuronKey::from_seed([7; 32]);
        let head = Digest::of(b"head");
        let tree = TreeHead {
            origin: "example.org/log",
            root: Hash([1; 32]),
        };
        let checkpoint = key.sign_checkpoint(41, &head, &tree);
        assert_eq!(
            verify_checkpoint(&checkpoint).ok(),
            Some(key.verifying_key())
        );

        let moved = LogCheckpoint {
            upto: 42,
            ..checkpoint.clone()
        };
        assert_eq!(
            verify_checkpoint(&moved),
            Err(CheckpointFault::BadSignature)
        );
        let other = NeuronKey::from_seed([8; 32]);
        let rekeyed = LogCheckpoint {
            key: other.public_b64(),
            ..checkpoint.clone()
        };
        assert_eq!(
            verify_checkpoint(&rekeyed),
            Err(CheckpointFault::BadSignature)
        );
        let garbage = LogCheckpoint {
            key: "abc".into(),
            ..checkpoint
        };
        assert_eq!(verify_checkpoint(&garbage), Err(CheckpointFault::BadKey));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            action: "tempdir",
            path: "/tmp".into(),
            source: e,
        })?;
        let (created, was_created) = NeuronKey::load_or_create(dir.path())?;
        assert!(was_created);
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let (loaded, was_created) = NeuronKey::load_or_create(dir.path())?;
        assert!(!was_created);
        assert_eq!(loaded.public_b64(), created.public_b64());
        assert!(!format!("{loaded:?}").contains(&hex::encode(loaded.signing.to_bytes())));

        fs::set_permissions(dir.path().join(KEY_FILE), fs::Permissions::from_mode(0o644)).map_err(
            |e| Error::Io {
                action: "chmod",
                path: "/tmp".into(),
                source: e,
            },
        )?;
        assert!(matches!(
            NeuronKey::load_or_create(dir.path()),
            Err(Error::KeyFile { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_symlinked_or_foreign_key_file_is_refused_and_two_first_starts_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);

        // Two first starts at once: one creates, the other loads what the first created.
        let keys: Vec<(String, bool)> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let (key, created) = NeuronKey::load_or_create(dir.path()).unwrap();
                        (key.public_b64(), created)
                    })
                })
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().unwrap())
                .collect()
        });
        assert_eq!(keys.iter().filter(|(_, created)| *created).count(), 1);
        assert!(keys.iter().all(|(key, _)| *key == keys[0].0));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(KEY_FILE)]);

        let elsewhere = tempfile::tempdir().unwrap();
        let real = elsewhere.path().join("real.key");
        fs::rename(&path, &real).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let refused = NeuronKey::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("symbolic link"), "{refused}");
        fs::remove_file(&path).unwrap();
        fs::rename(&real, &path).unwrap();

        // Only a privileged test run can give the file to another user.
        let foreign = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: chown on a path this test owns.
        if unsafe { libc::chown(foreign.as_ptr(), 54_321, 54_321) } == 0 {
            let refused = NeuronKey::load_or_create(dir.path())
                .unwrap_err()
                .to_string();
            assert!(refused.contains("owned by uid 54321"), "{refused}");
        }
    }
}
