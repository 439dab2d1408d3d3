//! The relationship in force for each (patient, provider), followed through the log to name a
//! second one established beside it ([`Anomaly::TwoActiveRelationships`]). A record's facts count
//! only once the record is known sound: the checker holds them until the next record links to it.

use std::collections::HashMap;

use super::parse::Detail;
use super::report::Anomaly;

/// What the log has in force, and what it found wrong.
#[derive(Default)]
pub(super) struct InForce {
    /// (patient, provider) → (relationship id, the seq that established it).
    by_pair: HashMap<(String, String), (String, u64)>,
    /// Relationship id → its pair, for the relationships in force.
    pair_of: HashMap<String, (String, String)>,
    /// Ids ever established: a second record for one id establishes nothing (as in the views).
    seen: std::collections::HashSet<String>,
    held: Option<(u64, Box<Detail>)>,
    anomalies: Vec<Anomaly>,
}

impl InForce {
    /// Holds the facts of the record at `seq` until [`InForce::confirm`].
    pub(super) fn hold(&mut self, seq: u64, detail: Option<Box<Detail>>) {
        self.held = detail.map(|detail| (seq, detail));
    }

    /// Counts the facts held: their record is sound.
    pub(super) fn confirm(&mut self) {
        let Some((seq, detail)) = self.held.take() else {
            return;
        };
        match *detail {
            Detail::Established {
                relationship_id,
                patient_agent_id,
                provider_npi,
            } => {
                if !self.seen.insert(relationship_id.clone()) {
                    return;
                }
                let pair = (patient_agent_id, provider_npi);
                self.pair_of.insert(relationship_id.clone(), pair.clone());
                let displaced = self
                    .by_pair
                    .insert(pair.clone(), (relationship_id.clone(), seq));
                if let Some((in_force, in_force_seq)) = displaced {
                    self.pair_of.remove(&in_force);
                    let (patient_agent_id, provider_npi) = pair;
                    self.anomalies.push(Anomaly::TwoActiveRelationships {
                        seq,
                        relationship_id,
                        patient_agent_id,
                        provider_npi,
                        in_force,
                        in_force_seq,
                    });
                }
            }
            Detail::Terminated { relationship_id } => {
                if let Some(pair) = self.pair_of.remove(&relationship_id) {
                    self.by_pair.remove(&pair);
                }
            }
            _ => {}
        }
    }

    /// What was found wrong, in log order.
    pub(super) fn into_anomalies(self) -> Vec<Anomaly> {
        self.anomalies
    }
}
