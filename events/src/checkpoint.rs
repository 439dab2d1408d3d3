//! The Neuron's own Ed25519 key and the signed checkpoints of SPEC §3.2. The key is created once in
//! the data directory with mode 0600 and is never written anywhere else, logged or printed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::event::LogCheckpoint;
use crate::record::Digest;
use crate::{b64, Error};

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

    /// Loads `{dir}/neuron.key`, or creates it (mode 0600, written atomically) when absent.
    /// Returns the key and whether it was created now.
    ///
    /// # Errors
    /// [`Error::KeyFile`] when the file is unreadable, malformed, or readable by others;
    /// [`Error::Io`] when it cannot be created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), Error> {
        let path = dir.join(KEY_FILE);
        match fs::metadata(&path) {
            Ok(metadata) => {
                let mode = metadata.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(key_error(
                        &path,
                        format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777),
                    ));
                }
                let text = fs::read_to_string(&path)
                    .map_err(|error| key_error(&path, error.to_string()))?;
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed)
                    .map_err(|_| key_error(&path, "not 64 hex characters".into()))?;
                Ok((Self::from_seed(seed), false))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.write_new(dir, &path)?;
                Ok((key, true))
            }
            Err(error) => Err(key_error(&path, error.to_string())),
        }
    }

    fn write_new(&self, dir: &Path, path: &Path) -> Result<(), Error> {
        let io = |action, source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
        let temporary = dir.join(format!("{KEY_FILE}.tmp"));
        let _ = fs::remove_file(&temporary);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| io("create", e))?;
        file.write_all(format!("{}\n", hex::encode(self.signing.to_bytes())).as_bytes())
            .map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
        fs::rename(&temporary, path).map_err(|e| io("rename into place", e))?;
        sync_directory(dir)
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
    pub fn sign_checkpoint(&self, upto: u64, head: &Digest) -> LogCheckpoint {
        let head = head.to_hex();
        let signature = self.signing.sign(&checkpoint_message(upto, &head));
        LogCheckpoint {
            upto,
            head,
            key: self.public_b64(),
            sig: b64::encode(signature.to_bytes()),
        }
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

/// Checks a checkpoint's signature (strict Ed25519) under the key it names, and returns that key.
///
/// # Errors
/// The [`CheckpointFault`] found.
pub fn verify_checkpoint(checkpoint: &LogCheckpoint) -> Result<VerifyingKey, CheckpointFault> {
    let key_bytes: [u8; 32] = b64::decode(&checkpoint.key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(CheckpointFault::BadKey)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| CheckpointFault::BadKey)?;
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
        let checkpoint = key.sign_checkpoint(41, &head);
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
}
