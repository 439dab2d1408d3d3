//! Where session ids, relationship ids and challenge nonces come from. The server takes an
//! [`IdSource`]; production uses the operating system's randomness, tests a seeded source so that
//! every id and nonce, and so every record and hash, is the same on every run.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of fresh identifiers and nonces.
pub trait IdSource: Send + Sync {
    /// A new session id.
    fn session_id(&self) -> String;
    /// A new relationship id (UUID v4).
    fn relationship_id(&self) -> String;
    /// A new 32-byte challenge nonce.
    fn nonce(&self) -> [u8; 32];
}

/// Ids and nonces from the operating system's random source.
#[derive(Debug, Default)]
pub struct RandomIds;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Without the OS random source nothing secure can be issued: stop rather than issue a
        // guessable nonce.
        std::process::abort();
    }
    bytes
}

impl IdSource for RandomIds {
    fn session_id(&self) -> String {
        uuid::Builder::from_random_bytes(random())
            .into_uuid()
            .to_string()
    }

    fn relationship_id(&self) -> String {
        uuid::Builder::from_random_bytes(random())
            .into_uuid()
            .to_string()
    }

    fn nonce(&self) -> [u8; 32] {
        random()
    }
}

/// Deterministic ids and nonces for tests: session ids `session-1`, `session-2`, …; UUIDs and
/// nonces derived from a seed and a counter with blake3.
#[derive(Debug)]
pub struct SeededIds {
    seed: u64,
    sessions: AtomicU64,
    draws: AtomicU64,
}

impl SeededIds {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            sessions: AtomicU64::new(0),
            draws: AtomicU64::new(0),
        }
    }

    fn draw(&self, what: &str) -> [u8; 32] {
        let count = self.draws.fetch_add(1, Ordering::SeqCst);
        *blake3::hash(format!("{what}:{}:{count}", self.seed).as_bytes()).as_bytes()
    }
}

impl IdSource for SeededIds {
    fn session_id(&self) -> String {
        format!(
            "session-{}",
            self.sessions.fetch_add(1, Ordering::SeqCst) + 1
        )
    }

    fn relationship_id(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.draw("relationship")[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn nonce(&self) -> [u8; 32] {
        self.draw("nonce")
    }
}
