//! Pure folds of the Neuron's log into the views the server and investigators read.
//!
//! - [`sessions`]: every session's stage and outcome, the live ones, and tallies by outcome.
//! - [`queue`]: the upgrades waiting for a slot, in order, with positions.
//! - [`relationships`]: care relationships by id, patient, provider and status, compactly.
//! - [`providers`]: the organization's providers, registered or removed.
//! - [`witnesses`]: what witnesses cosigned of the log, and the conflicts they reported.
//! - [`Views`] and [`replay`]: all four together, folded up to a seq, a time, or the end.
//!
//! Architecture invariant: nothing here does I/O, reads a clock, or can fail. `apply` is total, and
//! the same records always give the same views, whether folded at once or one at a time.

// Every error this crate's own code meets is handled; its tests may unwrap (a panic is a failed
// test).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod providers;
pub mod queue;
pub mod relationships;
pub mod sessions;
pub mod witnesses;

use neuron_events::{Record, Timestamp};
use serde::Serialize;

pub use providers::ProvidersView;
pub use queue::QueueView;
pub use relationships::RelationshipsView;
pub use sessions::SessionsView;
pub use witnesses::WitnessesView;

/// Where a replay stops.
///
/// Records are in seq order; their times are the wall clock's, which can step back (a
/// `server.clock_behind` record marks each step). A time is therefore reached in log order, not
/// by the first record stamped after it: the replay stops after the *last* record stamped at or
/// before the time, and records stamped later than the time that come before it (a run whose
/// clock was ahead) are in the replay, since the log says they happened first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// After the record with this seq.
    Seq(u64),
    /// After the last record, in seq order, stamped at or before this time.
    Time(Timestamp),
    /// After the last record.
    End,
}

/// All views of one log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Views {
    /// The last record folded in.
    pub last_seq: u64,
    /// Its time.
    pub last_at: Option<Timestamp>,
    /// The Neuron's key, from the last `server.started`.
    pub server_key: Option<String>,
    /// The organization, from the last `server.started`.
    pub organization_npi: Option<String>,
    /// Sessions.
    pub sessions: SessionsView,
    /// The queue.
    pub queue: QueueView,
    /// Relationships.
    pub relationships: RelationshipsView,
    /// Providers.
    pub providers: ProvidersView,
    /// Witnesses.
    #[serde(skip_serializing_if = "WitnessesView::is_empty")]
    pub witnesses: WitnessesView,
}

impl Views {
    /// Views for a running server: sessions are forgotten once ended (see
    /// [`SessionsView::live_only`]); everything else as in a full replay.
    pub fn live_only() -> Self {
        Self {
            sessions: SessionsView::live_only(),
            ..Self::default()
        }
    }

    /// Views for the live server: as [`Views::live_only`], with relationships kept compactly
    /// (see [`RelationshipsView::index_only`]): their details stay in the log.
    pub fn serving() -> Self {
        Self {
            sessions: SessionsView::live_only(),
            relationships: RelationshipsView::index_only(),
            ..Self::default()
        }
    }

    /// Folds one record into every view.
    pub fn apply(&mut self, record: &Record) {
        if let neuron_events::EventData::ServerStarted(started) = &record.event {
            self.server_key = Some(started.public_key.clone());
            self.organization_npi = Some(started.organization_npi.clone());
        }
        self.sessions.apply(record);
        self.queue.apply(record);
        self.relationships.apply(record);
        self.providers.apply(record);
        self.witnesses.apply(record);
        self.last_seq = record.seq;
        self.last_at = Some(record.at);
    }
}

/// Folds `records` (in seq order) into fresh views, stopping where `until` says.
pub fn replay<I, R>(records: I, until: Until) -> Views
where
    I: IntoIterator<Item = R>,
    R: std::borrow::Borrow<Record>,
{
    replay_into(Views::default(), records, until)
}

/// Folds `records` into `views` (for example [`Views::live_only`]), stopping where `until` says.
/// For a time, records stamped after it are held back until a later record stamped at or before
/// it shows that they came first (see [`Until`]).
pub fn replay_into<I, R>(mut views: Views, records: I, until: Until) -> Views
where
    I: IntoIterator<Item = R>,
    R: std::borrow::Borrow<Record>,
{
    let mut held: Vec<R> = Vec::new();
    for record in records {
        match until {
            Until::Seq(seq) if record.borrow().seq > seq => break,
            Until::Time(time) if record.borrow().at > time => held.push(record),
            _ => {
                for earlier in held.drain(..) {
                    views.apply(earlier.borrow());
                }
                views.apply(record.borrow());
            }
        }
    }
    views
}
