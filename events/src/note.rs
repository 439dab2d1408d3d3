//! Signed notes (C2SP signed-note v1.0.0), the checkpoints written as them (tlog-checkpoint
//! v1.0.0), verifier keys, and witness cosignatures (tlog-cosignature v1.0.1, `cosignature/v1`,
//! Ed25519). SPEC §3.5.
//!
//! A note is text ending in a newline, a blank line, then signature lines `— <name>
//! base64(key ID ‖ signature)`. Verification follows the specification's trust rules: a line
//! whose (name, key ID) matches no known key is ignored; one that matches is verified strictly
//! (`verify_strict`), and a failure rejects the whole note; a note no known key signed is rejected.
//! Parsing refuses what the specification forbids (control characters, malformed lines, more than
//! [`MAX_SIGNATURES`] lines) before any signature is looked at.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::tree::Hash;

/// The signature type of an Ed25519 note signature (the log's).
pub const ED25519: u8 = 0x01;
/// The signature type of a timestamped Ed25519 witness cosignature (`cosignature/v1`).
pub const COSIGNATURE_V1: u8 = 0x04;
/// The most signature lines a note may carry (the specification requires accepting 16).
pub const MAX_SIGNATURES: usize = 100;
/// The largest note read (a checkpoint with its cosignatures is well under 4 KiB).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
const EM_DASH: &str = "\u{2014}";

/// What is wrong with a note, a key or a signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a note: its syntax breaks the specification.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A key name with a space or a plus, or empty.
    #[error("key name {0:?} is not valid (non-empty, no spaces, no '+')")]
    BadName(String),
    /// A verifier key that does not parse.
    #[error("not a verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// A signature by a known key that does not verify.
    #[error("the signature of {name} does not verify")]
    BadSignature {
        /// The key's name.
        name: String,
    },
    /// Two known keys share a name and a key ID.
    #[error("two known keys share the name {name} and key ID {id:08x}")]
    AmbiguousKey {
        /// The name.
        name: String,
        /// The key ID.
        id: u32,
    },
    /// No known key signed the note.
    #[error("no known key signed the note")]
    Unverified,
    /// A note whose text is not a checkpoint.
    #[error("not a checkpoint: {0}")]
    NotACheckpoint(&'static str),
}

/// One signature line: the key's name, the key ID and the signature bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key's name.
    pub name: String,
    /// The key ID: the first four bytes of the signature blob.
    pub id: u32,
    /// The rest of the blob: the signature (for a cosignature, the timestamp and the signature).
    pub signature: Vec<u8>,
}

impl SignatureLine {
    /// The line as a note writes it, newline included.
    pub fn to_line(&self) -> String {
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&self.signature);
        format!("{EM_DASH} {} {}\n", self.name, STANDARD.encode(blob))
    }

    /// Reads one line (without its newline).
    ///
    /// # Errors
    /// [`NoteError::Malformed`] or [`NoteError::BadName`].
    pub fn parse(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(EM_DASH)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(NoteError::Malformed(
                "a signature line must begin with '— '",
            ))?;
        let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line needs a name and a signature",
        ))?;
        check_name(name)?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| NoteError::Malformed("a signature is not standard base64"))?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed("a signature shorter than its key ID"));
        }
        let (id, signature) = blob.split_at(4);
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        Ok(Self {
            name: name.to_string(),
            id,
            signature: signature.to_vec(),
        })
    }
}

/// A parsed note: its text (final newline included) and its signature lines, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text.
    pub text: String,
    /// Every signature line, in order.
    pub signatures: Vec<SignatureLine>,
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadName(name.chars().take(64).collect()));
    }
    Ok(())
}

impl Note {
    /// Reads a note.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] for anything the specification forbids.
    pub fn parse(message: &str) -> Result<Self, NoteError> {
        if message.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("longer than any note this log reads"));
        }
        if message.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
            return Err(NoteError::Malformed(
                "a control character other than newline",
            ));
        }
        let split = message
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &message[..=split];
        let signatures = &message[split + 2..];
        let lines = signatures.strip_suffix('\n').ok_or(NoteError::Malformed(
            "the last signature line has no newline",
        ))?;
        let signatures: Vec<SignatureLine> = lines
            .split('\n')
            .map(SignatureLine::parse)
            .collect::<Result<_, _>>()?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note as written: text, a blank line, the signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
        }
        out
    }
}

/// `SHA-256(name ‖ "\n" ‖ type ‖ public key)[:4]`, as a big-endian number.
pub fn key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([signature_type]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A verifier key: a name, a signature type and an Ed25519 public key. Written as
/// `<name>+<key ID, 8 hex>+base64(type ‖ public key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key's name (a log's origin, a witness's name).
    pub name: String,
    /// [`ED25519`] or [`COSIGNATURE_V1`].
    pub signature_type: u8,
    /// The public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// The key of this name and type.
    ///
    /// # Errors
    /// [`NoteError::BadName`].
    pub fn new(name: &str, signature_type: u8, key: VerifyingKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_string(),
            signature_type,
            key,
        })
    }

    /// Its key ID.
    pub fn id(&self) -> u32 {
        key_id(&self.name, self.signature_type, self.key.as_bytes())
    }

    /// Reads a verifier key.
    ///
    /// # Errors
    /// [`NoteError::BadVerifierKey`] or [`NoteError::BadName`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        // Names and key IDs hold no '+'; base64 may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey("it is not name+id+key"));
        };
        check_name(name)?;
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey("its key ID is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16)
            .map_err(|_| NoteError::BadVerifierKey("its key ID is not 8 hex digits"))?;
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| NoteError::BadVerifierKey("its key is not standard base64"))?;
        let (signature_type, public) = blob
            .split_first()
            .ok_or(NoteError::BadVerifierKey("it holds no key"))?;
        if *signature_type != ED25519 && *signature_type != COSIGNATURE_V1 {
            return Err(NoteError::BadVerifierKey(
                "its signature type is neither Ed25519 (1) nor cosignature/v1 (4)",
            ));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::BadVerifierKey("its Ed25519 key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadVerifierKey("its key is not an Ed25519 point"))?;
        if key.is_weak() {
            return Err(NoteError::BadVerifierKey(
                "its key is a small-order point, under which signatures can be forged",
            ));
        }
        let parsed = Self {
            name: name.to_string(),
            signature_type: *signature_type,
            key,
        };
        if parsed.id() != id {
            return Err(NoteError::BadVerifierKey(
                "its key ID is not the hash of its name and key",
            ));
        }
        Ok(parsed)
    }

    /// The key as written.
    pub fn to_text(&self) -> String {
        let mut blob = vec![self.signature_type];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id(), STANDARD.encode(blob))
    }

    /// Whether a signature line claims to be by this key.
    pub fn claims(&self, line: &SignatureLine) -> bool {
        line.name == self.name && line.id == self.id()
    }

    /// Checks a signature line this key claims over a note's `text`. A cosignature's time is
    /// returned (seconds since the epoch); a note signature's time is `None`.
    ///
    /// # Errors
    /// [`NoteError::BadSignature`].
    pub fn verify_line(&self, text: &str, line: &SignatureLine) -> Result<Option<u64>, NoteError> {
        let bad = || NoteError::BadSignature {
            name: self.name.clone(),
        };
        let (message, signature, time) = match self.signature_type {
            COSIGNATURE_V1 => {
                if line.signature.len() != 72 {
                    return Err(bad());
                }
                let (time, signature) = line.signature.split_at(8);
                let time = u64::from_be_bytes(time.try_into().map_err(|_| bad())?);
                if time > i64::MAX as u64 {
                    return Err(bad());
                }
                (
                    cosigned_message(time, text).into_bytes(),
                    signature,
                    Some(time),
                )
            }
            _ => (text.as_bytes().to_vec(), line.signature.as_slice(), None),
        };
        let signature: [u8; 64] = signature.try_into().map_err(|_| bad())?;
        self.key
            .verify_strict(&message, &Signature::from_bytes(&signature))
            .map_err(|_| bad())?;
        Ok(time)
    }
}

/// What a witness signs: `cosignature/v1`, the time, then the checkpoint's text.
pub fn cosigned_message(time: u64, text: &str) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

/// A signature by a known key that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The key.
    pub key: VerifierKey,
    /// Its line.
    pub line: SignatureLine,
    /// A cosignature's time.
    pub time: Option<u64>,
}

/// Verifies `note` against the known `keys`: lines of unknown keys are ignored, every line of a
/// known key must verify, and at least one must.
///
/// # Errors
/// [`NoteError::AmbiguousKey`], [`NoteError::BadSignature`] or [`NoteError::Unverified`].
pub fn verify(note: &Note, keys: &[VerifierKey]) -> Result<Vec<Verified>, NoteError> {
    for (index, key) in keys.iter().enumerate() {
        if keys[..index]
            .iter()
            .any(|other| other.name == key.name && other.id() == key.id() && other != key)
        {
            return Err(NoteError::AmbiguousKey {
                name: key.name.clone(),
                id: key.id(),
            });
        }
    }
    let mut verified: Vec<Verified> = Vec::new();
    for line in &note.signatures {
        let Some(key) = keys.iter().find(|key| key.claims(line)) else {
            continue;
        };
        let time = key.verify_line(&note.text, line)?;
        if !verified.iter().any(|seen| seen.key == *key) {
            verified.push(Verified {
                key: key.clone(),
                line: line.clone(),
                time,
            });
        }
    }
    if verified.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(verified)
}

/// Signs `text` with an Ed25519 key under `name` (type [`ED25519`]).
pub fn sign(name: &str, key: &SigningKey, text: &str) -> SignatureLine {
    SignatureLine {
        name: name.to_string(),
        id: key_id(name, ED25519, key.verifying_key().as_bytes()),
        signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
    }
}

/// Cosigns a checkpoint's `text` at `time` as the witness `name` (type [`COSIGNATURE_V1`]).
pub fn cosign(name: &str, key: &SigningKey, time: u64, text: &str) -> SignatureLine {
    let mut signature = time.to_be_bytes().to_vec();
    signature.extend_from_slice(&key.sign(cosigned_message(time, text).as_bytes()).to_bytes());
    SignatureLine {
        name: name.to_string(),
        id: key_id(name, COSIGNATURE_V1, key.verifying_key().as_bytes()),
        signature,
    }
}

/// A checkpoint's text (tlog-checkpoint v1.0.0): origin, tree size, root hash, extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
    /// Extension lines, if any (the Neuron writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint's text, as signed.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Reads a checkpoint's text.
    ///
    /// # Errors
    /// [`NoteError::NotACheckpoint`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let body = text.strip_suffix('\n').ok_or(NoteError::NotACheckpoint(
            "its text does not end in a newline",
        ))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|origin| !origin.is_empty())
            .ok_or(NoteError::NotACheckpoint("no origin line"))?;
        let size = lines
            .next()
            .ok_or(NoteError::NotACheckpoint("no size line"))?;
        let canonical_number = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| canonical_number)
            .ok_or(NoteError::NotACheckpoint(
                "the size is not a decimal without leading zeros",
            ))?;
        let root = lines
            .next()
            .ok_or(NoteError::NotACheckpoint("no root line"))
            .and_then(|root| {
                Hash::from_base64(root)
                    .map_err(|_| NoteError::NotACheckpoint("the root is not a base64 SHA-256 hash"))
            })?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::NotACheckpoint("an empty extension line"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witness() -> (SigningKey, VerifierKey) {
        let key = SigningKey::from_bytes(&[5; 32]);
        let vkey =
            VerifierKey::new("witness.example/w1", COSIGNATURE_V1, key.verifying_key()).unwrap();
        (key, vkey)
    }

    #[test]
    fn a_signed_checkpoint_round_trips_and_verifies_with_its_cosignature() {
        let log = SigningKey::from_bytes(&[3; 32]);
        let log_key = VerifierKey::new("example.org/log", ED25519, log.verifying_key()).unwrap();
        assert_eq!(VerifierKey::parse(&log_key.to_text()).unwrap(), log_key);
        // A key whose base64 holds a '+' reads back too.
        let plus = (0..=255u8)
            .map(|seed| {
                let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
                VerifierKey::new("example.org/log", ED25519, key).unwrap()
            })
            .find(|key| key.to_text().split_once('+').unwrap().1[9..].contains('+'))
            .unwrap();
        assert_eq!(VerifierKey::parse(&plus.to_text()).unwrap(), plus);
        let checkpoint = Checkpoint {
            origin: "example.org/log".into(),
            size: 7,
            root: Hash([9; 32]),
            extensions: vec![],
        };
        let text = checkpoint.to_text();
        assert_eq!(Checkpoint::parse(&text).unwrap(), checkpoint);
        let (witness_signing, witness_key) = witness();
        let note = Note {
            text: text.clone(),
            signatures: vec![
                sign("example.org/log", &log, &text),
                cosign("witness.example/w1", &witness_signing, 1_700_000_000, &text),
            ],
        };
        let written = note.to_text();
        let read = Note::parse(&written).unwrap();
        assert_eq!(read, note);
        let verified = verify(&read, &[log_key.clone(), witness_key.clone()]).unwrap();
        assert_eq!(verified.len(), 2);
        assert_eq!(verified[1].time, Some(1_700_000_000));
        // Unknown keys are ignored; a bad signature by a known key rejects the note.
        assert_eq!(
            verify(&read, std::slice::from_ref(&log_key)).unwrap().len(),
            1
        );
        let mut forged = read.clone();
        forged.signatures[1].signature[20] ^= 1;
        assert!(matches!(
            verify(&forged, &[log_key.clone(), witness_key]),
            Err(NoteError::BadSignature { .. })
        ));
        let stranger = VerifierKey::new(
            "example.org/log",
            ED25519,
            SigningKey::from_bytes(&[4; 32]).verifying_key(),
        )
        .unwrap();
        assert_eq!(verify(&read, &[stranger]), Err(NoteError::Unverified));
    }

    #[test]
    fn malformed_notes_keys_and_checkpoints_are_refused() {
        for bad in [
            "text\n\n",
            "text\n— a b\n",
            "text\n\n— name AAAA\n",
            "text\n\n— na me AAAAAAAA\n",
            "te\u{7}xt\n\n— name AAAAAAAA\n",
            "text\n\n— name AAAAAAAA",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "a+b+c",
            "name+0000000+AQ==",
            "name+00000000+AQAAAA==",
            "name+12345678+ASEhISEhISEhISEhISEhISEhISEhISEhISEhISEhISE=",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "origin\n07\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "origin\n7\nCQkJ\n",
            "origin\n7\n",
            "\n7\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "origin\n7\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
