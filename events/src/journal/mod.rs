//! Group commit: the one writer every append goes through. Callers on many tasks hand it events;
//! the writer thread takes everything waiting, numbers and chains it, writes the batch, makes it
//! durable once, tells the observer (the live views), and only then acknowledges each caller.
//!
//! Invariants: a caller's `append` resolves `Ok` only after its records are durable; records are
//! numbered without gaps; if a batch fails, every caller of that batch gets the error and nothing is
//! ever written on top of it.
//!
//! - `protocol`: what callers and the writer say to each other (options, answers, status).
//! - `handle`: the [`Journal`] callers hold.
//! - `resume`: where the writer continues a store from, checked before anything is written.
//! - `writer`: the thread that builds, writes and answers each batch.
//! - `batch`: one batch as it is built.

mod batch;
mod handle;
mod protocol;
mod resume;
mod writer;

pub use handle::Journal;
pub use protocol::{
    BatchReport, CommitObserver, Committed, JournalOptions, JournalStatus, DEMO_ORIGIN,
};
