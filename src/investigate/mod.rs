//! The investigator's commands that read a log offline: `neuron verify`, `replay`, `timeline` and
//! `export`. A log is named by a path: a server's data directory (its `log/` inside), a sled log
//! directory, or a JSONL export file.
//!
//! Investigators never write to what they read. sled writes when it opens a store (it recovers
//! and snapshots), so a store is read from a private copy in the system's temporary directory
//! (`TMPDIR`), removed afterwards; a store a running server holds is refused, not copied.
//!
//! - `source`: where a log is read from, and the arguments that anchor a verification.
//! - `verify`, `replay`, `timeline`: each command's work and its words; [`fhir`] the FHIR form of
//!   `export --format fhir`.
//! - `error`, `progress`: what stops an investigation, and the progress line while it runs.

mod error;
pub mod fhir;
mod progress;
mod replay;
mod source;
mod timeline;
mod verify;

pub use error::{InvestigateError, ReadFailure};
pub use neuron_events::narrate::{describe, safe};
pub use progress::Progress;
pub use replay::{replay, replay_text};
pub use source::{expected_head, open_store_copy, trusted_key, Source, StoreCopy};
pub use timeline::{
    timeline, timeline_line, Step, Subject, TimelineFormat, TimelineWriter, TIMELINE_EMPTY,
};
pub use verify::report_text;
