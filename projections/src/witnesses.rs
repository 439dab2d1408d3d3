//! What witnesses have said of the log (SPEC §3.5): the latest checkpoint each one cosigned, as
//! `log.cosigned` records carry them, and the conflicts witnesses reported that no operator has
//! acknowledged yet. The server starts witness submissions from the sizes here, and refuses to
//! serve while a conflict stands unacknowledged.

use std::collections::{BTreeMap, BTreeSet};

use neuron_events::event::{EventData, LogWitnessConflict, SeqRange};
use neuron_events::{Record, Timestamp};
use serde::Serialize;

/// The latest checkpoint one witness cosigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cosigned {
    /// The tree size.
    pub size: u64,
    /// The root, standard base64.
    pub root: String,
    /// Its signature line.
    pub cosignature: String,
    /// The `log.cosigned` record.
    pub seq: u64,
    /// When it was recorded.
    pub at: Timestamp,
}

/// A conflict a witness reported, with the record that says so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The `log.witness_conflict` record.
    pub seq: u64,
    /// What it says.
    pub conflict: LogWitnessConflict,
}

/// Every witness's latest cosignature, and the conflicts that stand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WitnessesView {
    cosigned: BTreeMap<String, Cosigned>,
    conflicts: Vec<Conflict>,
    acknowledged: Vec<SeqRange>,
    /// Witnesses whose conflict an operator acknowledged (until they cosign again).
    acknowledged_witnesses: BTreeSet<String>,
}

impl WitnessesView {
    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::LogCosigned(cosigned) => {
                let newer = self
                    .cosigned
                    .get(&cosigned.witness)
                    .is_none_or(|known| cosigned.size >= known.size);
                self.acknowledged_witnesses.remove(&cosigned.witness);
                if newer {
                    self.cosigned.insert(
                        cosigned.witness.clone(),
                        Cosigned {
                            size: cosigned.size,
                            root: cosigned.root.clone(),
                            cosignature: cosigned.cosignature.clone(),
                            seq: record.seq,
                            at: record.at,
                        },
                    );
                }
            }
            EventData::LogWitnessConflict(conflict) => self.conflicts.push(Conflict {
                seq: record.seq,
                conflict: conflict.clone(),
            }),
            EventData::LogRollbackAcknowledged(acknowledged) => {
                // An acknowledgement settles every conflict reported before it; the witnesses'
                // views of the lost branch are forgotten, as the log no longer extends them.
                self.acknowledged_witnesses.extend(
                    self.conflicts
                        .drain(..)
                        .map(|conflict| conflict.conflict.witness),
                );
                self.acknowledged.push(acknowledged.lost);
                let lost_from = acknowledged.lost.first;
                self.cosigned.retain(|_, known| known.size < lost_from);
            }
            _ => {}
        }
    }

    /// The latest checkpoint `witness` cosigned.
    pub fn cosigned(&self, witness: &str) -> Option<&Cosigned> {
        self.cosigned.get(witness)
    }

    /// Every witness's latest cosignature, by name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Cosigned)> {
        self.cosigned
            .iter()
            .map(|(name, cosigned)| (name.as_str(), cosigned))
    }

    /// The conflicts no operator has acknowledged.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// Whether the log says nothing of witnesses.
    pub fn is_empty(&self) -> bool {
        self.cosigned.is_empty() && self.conflicts.is_empty() && self.acknowledged.is_empty()
    }

    /// Witnesses whose conflict an operator acknowledged and that have not cosigned since: the
    /// continued log is not theirs to cosign.
    pub fn acknowledged_witnesses(&self) -> &BTreeSet<String> {
        &self.acknowledged_witnesses
    }

    /// The losses operators acknowledged, in order.
    pub fn acknowledged(&self) -> &[SeqRange] {
        &self.acknowledged
    }
}
