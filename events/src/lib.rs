//! The Neuron's event log: what happened, in an order nobody can change unnoticed.
//!
//! - [`event`]: the event kinds of SPEC §3.3 and their data.
//! - [`record`]: the byte-exact record encoding of SPEC §3.1 and the blake3 chain.
//! - [`time`]: timestamps and the injected [`Clock`].
//! - [`checkpoint`]: the Neuron's Ed25519 key and signed checkpoints (SPEC §3.2).
//! - [`store`]: the [`Log`] storage trait, its sled implementation (power-loss durable) and an
//!   in-memory one.
//! - [`evidence`]: the head file that proves which records the log acknowledged, outside the
//!   store's own recovery.
//! - `journal` (feature `store`): the group-commit writer every append goes through.
//! - [`mod@verify`]: chain, numbering and checkpoint verification naming the first bad seq.
//! - [`export`]: JSONL export and import that keep every record's bytes.
//! - [`jsonl`]: an export split into blocks of whole lines, linear and bounded whatever it holds.
//! - [`parallel`]: the one parallel reader: work on worker threads, results in order.
//! - [`b64`]: base64url as the Neuron writes and reads it.
//!
//! This crate knows nothing of networking or of the handshake: it stores facts and proves they
//! were not altered.

// Every error this crate's own code meets is handled; its tests may unwrap (a panic is a failed
// test).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod b64;
pub mod checkpoint;
mod error;
pub mod event;
pub mod evidence;
pub mod export;
#[cfg(feature = "test-support")]
pub mod fuzzing;
#[cfg(feature = "store")]
pub mod journal;
pub mod jsonl;
mod limits;
pub mod narrate;
pub mod note;
pub mod parallel;
pub mod receipt;
pub mod record;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod time;
pub mod tree;
pub mod verify;

pub use checkpoint::NeuronKey;
pub use error::{full_message, Error};
pub use event::{Event, EventData};
#[cfg(feature = "store")]
pub use journal::{BatchReport, CommitObserver, Committed, Journal, JournalOptions, JournalStatus};
pub use record::{Digest, Record};
pub use store::Acknowledged;
#[cfg(feature = "store")]
pub use store::{AppendStep, Durability, SledLog, SledReader};
pub use store::{Log, LogHead, MemoryLog};
pub use time::{Clock, SteppingClock, SystemClock, Timestamp};
pub use verify::{verify, verify_jsonl, verify_log, Report, VerifyOptions};
