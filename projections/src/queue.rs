//! The upgrade queue: the sessions waiting for a slot, in arrival order, and each one's position.

use std::collections::{BTreeMap, HashMap};

use neuron_events::event::EventData;
use neuron_events::{Record, Timestamp};
use serde::Serialize;

/// One waiting upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Waiting {
    /// The session id.
    pub session: String,
    /// The peer's socket address.
    pub peer: String,
    /// When it was queued.
    pub since: Timestamp,
    /// Its position on arrival.
    pub arrival_position: u32,
}

/// One waiting upgrade with its position now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Position<'a> {
    /// 1-based position now.
    pub position: usize,
    /// The waiting upgrade.
    #[serde(flatten)]
    pub waiting: &'a Waiting,
}

/// The waiting upgrades in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Keyed by the seq of the `connection.queued` record: arrival order.
    waiting: BTreeMap<u64, Waiting>,
    by_session: HashMap<String, u64>,
}

impl QueueView {
    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::ServerStarted(_) => {
                // A restart answers no queued request: whoever waited is gone.
                self.waiting.clear();
                self.by_session.clear();
            }
            EventData::ConnectionQueued(queued) => {
                if let Some(session) = &record.session {
                    if self.by_session.contains_key(session) {
                        return;
                    }
                    self.by_session.insert(session.clone(), record.seq);
                    self.waiting.insert(
                        record.seq,
                        Waiting {
                            session: session.clone(),
                            peer: queued.peer.clone(),
                            since: record.at,
                            arrival_position: queued.position,
                        },
                    );
                }
            }
            event if matches!(event, EventData::ConnectionPromoted(_)) || event.is_terminal() => {
                if let Some(seq) = record
                    .session
                    .as_ref()
                    .and_then(|session| self.by_session.remove(session))
                {
                    self.waiting.remove(&seq);
                }
            }
            _ => {}
        }
    }

    /// How many upgrades wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The waiting upgrades with their positions, first in line first.
    pub fn positions(&self) -> impl Iterator<Item = Position<'_>> {
        self.waiting
            .values()
            .enumerate()
            .map(|(index, waiting)| Position {
                position: index + 1,
                waiting,
            })
    }

    /// A session's position now, if it waits.
    pub fn position_of(&self, session: &str) -> Option<usize> {
        let seq = self.by_session.get(session)?;
        Some(self.waiting.range(..*seq).count() + 1)
    }
}

impl Serialize for QueueView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.positions())
    }
}
