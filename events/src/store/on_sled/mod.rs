//! The sled 0.34 store behind [`SledLog`]: one tree, record keys the seq in big-endian, the head
//! file beside it, `fdatasync` after sled's flush, and fail-stop after a failed append.
//!
//! - `keys.rs`: record keys and the one range scan; `tree_blocks.rs`: the tree's hashes, in runs within blocks.
//! - `recover.rs`: sled's open, its recovery's panics made errors.
//! - `log.rs`: [`SledLog`] opened and made durable; `as_log.rs`: it as the journal's `Log`.
//! - `reader.rs`: [`SledReader`], reads beside the writer.
//! - `tamper.rs` (feature `test-support`): damage on purpose, for tests.

mod as_log;
mod keys;
mod log;
mod reader;
mod recover;
#[cfg(any(test, feature = "test-support"))]
mod tamper;
mod tree_blocks;

pub use log::{AppendStep, Durability, SledLog};
pub use reader::SledReader;
