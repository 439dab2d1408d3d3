//! Care relationships: established by a completed handshake, reused by later `existing`
//! handshakes, and ended for good by a termination. A terminated relationship never becomes active
//! again; the patient's next handshake establishes a new one.

use std::collections::{BTreeMap, HashMap};

use neuron_events::event::{EventData, RelationshipStatus};
use neuron_events::{Record, Timestamp};
use serde::Serialize;

/// Whether a relationship is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In force: handshakes with the same key reuse it.
    Active,
    /// Ended for good.
    Terminated,
}

/// How a relationship ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Termination {
    /// When.
    pub at: Timestamp,
    /// The record that ended it.
    pub seq: u64,
    /// Why, as given.
    pub reason: String,
    /// Who asked.
    pub by: String,
}

/// One care relationship.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Relationship {
    /// Its id (UUID v4).
    pub id: String,
    /// The patient's agent.
    pub patient_agent_id: String,
    /// The provider.
    pub provider_npi: String,
    /// The key the patient proved possession of, base64url.
    pub patient_public_key: String,
    /// The patient's endpoint.
    pub patient_endpoint: String,
    /// The consented actions, exactly as given.
    pub consented_actions: Vec<String>,
    /// Active or terminated.
    pub status: Status,
    /// When it was established.
    pub established_at: Timestamp,
    /// The record that established it.
    pub established_seq: u64,
    /// The session that established it.
    pub established_by_session: Option<String>,
    /// Later handshakes that reused it.
    pub existing_handshakes: u64,
    /// The last handshake that completed with it.
    pub last_handshake_at: Timestamp,
    /// How it ended, once terminated.
    pub termination: Option<Termination>,
}

/// Every relationship, with indexes by patient, provider and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelationshipsView {
    by_id: BTreeMap<String, Relationship>,
    /// Ids in establishment order, per patient and per provider.
    by_patient: HashMap<String, Vec<String>>,
    by_provider: HashMap<String, Vec<String>>,
    /// The active relationship of each (patient, provider) pair.
    active: HashMap<(String, String), String>,
}

impl RelationshipsView {
    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::RelationshipEstablished(established) => {
                if self.by_id.contains_key(&established.relationship_id) {
                    return;
                }
                let id = established.relationship_id.clone();
                self.by_patient
                    .entry(established.patient_agent_id.clone())
                    .or_default()
                    .push(id.clone());
                self.by_provider
                    .entry(established.provider_npi.clone())
                    .or_default()
                    .push(id.clone());
                self.active.insert(
                    (
                        established.patient_agent_id.clone(),
                        established.provider_npi.clone(),
                    ),
                    id.clone(),
                );
                self.by_id.insert(
                    id.clone(),
                    Relationship {
                        id,
                        patient_agent_id: established.patient_agent_id.clone(),
                        provider_npi: established.provider_npi.clone(),
                        patient_public_key: established.patient_public_key.clone(),
                        patient_endpoint: established.patient_endpoint.clone(),
                        consented_actions: established.consented_actions.clone(),
                        status: Status::Active,
                        established_at: record.at,
                        established_seq: record.seq,
                        established_by_session: record.session.clone(),
                        existing_handshakes: 0,
                        last_handshake_at: record.at,
                        termination: None,
                    },
                );
            }
            EventData::HandshakeCompleted(completed) => {
                if let Some(relationship) = self.by_id.get_mut(&completed.relationship_id) {
                    if completed.status == RelationshipStatus::Existing {
                        relationship.existing_handshakes += 1;
                    }
                    relationship.last_handshake_at = record.at;
                }
            }
            EventData::RelationshipTerminated(terminated) => {
                let Some(relationship) = self.by_id.get_mut(&terminated.relationship_id) else {
                    return;
                };
                if relationship.status == Status::Terminated {
                    return;
                }
                relationship.status = Status::Terminated;
                relationship.termination = Some(Termination {
                    at: record.at,
                    seq: record.seq,
                    reason: terminated.reason.clone(),
                    by: terminated.by.clone(),
                });
                let pair = (
                    relationship.patient_agent_id.clone(),
                    relationship.provider_npi.clone(),
                );
                if self.active.get(&pair) == Some(&relationship.id) {
                    self.active.remove(&pair);
                }
            }
            _ => {}
        }
    }

    /// A relationship by id.
    pub fn get(&self, id: &str) -> Option<&Relationship> {
        self.by_id.get(id)
    }

    /// The active relationship between a patient and a provider, if any.
    pub fn active_for(&self, patient_agent_id: &str, provider_npi: &str) -> Option<&Relationship> {
        let id = self
            .active
            .get(&(patient_agent_id.to_string(), provider_npi.to_string()))?;
        self.by_id.get(id)
    }

    /// Every relationship, ordered by id (a stable order for paging).
    pub fn all(&self) -> impl Iterator<Item = &Relationship> {
        self.by_id.values()
    }

    /// The relationships with ids after `after`, ordered by id.
    pub fn after<'a>(&'a self, after: &str) -> impl Iterator<Item = &'a Relationship> + 'a {
        use std::ops::Bound;
        self.by_id
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, relationship)| relationship)
    }

    /// A patient's relationships, in the order they were established.
    pub fn by_patient<'a>(
        &'a self,
        patient_agent_id: &str,
    ) -> impl Iterator<Item = &'a Relationship> + 'a {
        self.indexed(self.by_patient.get(patient_agent_id))
    }

    /// A provider's relationships, in the order they were established.
    pub fn by_provider<'a>(
        &'a self,
        provider_npi: &str,
    ) -> impl Iterator<Item = &'a Relationship> + 'a {
        self.indexed(self.by_provider.get(provider_npi))
    }

    /// The relationships with a status, ordered by id.
    pub fn by_status(&self, status: Status) -> impl Iterator<Item = &Relationship> {
        self.by_id
            .values()
            .filter(move |relationship| relationship.status == status)
    }

    /// How many relationships have each status: (active, terminated).
    pub fn counts(&self) -> (usize, usize) {
        let active = self.active.len();
        (active, self.by_id.len() - active)
    }

    /// One page of relationships in id order, filtered, starting after the id `query.after`
    /// (which need not exist). `next_after` is the cursor for the following page, `None` on the
    /// last one.
    pub fn page(&self, query: &PageQuery<'_>) -> Page<'_> {
        let keep = |relationship: &&Relationship| {
            query
                .patient_agent_id
                .is_none_or(|patient| relationship.patient_agent_id == patient)
                && query
                    .provider_npi
                    .is_none_or(|provider| relationship.provider_npi == provider)
                && query
                    .status
                    .is_none_or(|status| relationship.status == status)
                && query
                    .after
                    .is_none_or(|after| relationship.id.as_str() > after)
        };
        let limit = query.limit.max(1);
        let mut items: Vec<&Relationship> = match query.patient_agent_id {
            // A patient has few relationships: use the index and sort them.
            Some(patient) => {
                let mut items: Vec<&Relationship> = self.by_patient(patient).filter(keep).collect();
                items.sort_by(|a, b| a.id.cmp(&b.id));
                items.truncate(limit + 1);
                items
            }
            None => {
                let start = query.after.unwrap_or_default();
                let candidates: Box<dyn Iterator<Item = &Relationship>> = if start.is_empty() {
                    Box::new(self.by_id.values())
                } else {
                    Box::new(self.after(start))
                };
                candidates.filter(keep).take(limit + 1).collect()
            }
        };
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| last.id.clone())
        } else {
            None
        };
        Page { items, next_after }
    }

    fn indexed<'a>(
        &'a self,
        ids: Option<&'a Vec<String>>,
    ) -> impl Iterator<Item = &'a Relationship> + 'a {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }
}

/// What [`RelationshipsView::page`] selects.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageQuery<'a> {
    /// Only this patient's relationships.
    pub patient_agent_id: Option<&'a str>,
    /// Only this provider's.
    pub provider_npi: Option<&'a str>,
    /// Only those in this status.
    pub status: Option<Status>,
    /// Only ids greater than this one (the previous page's cursor).
    pub after: Option<&'a str>,
    /// At most this many (at least 1).
    pub limit: usize,
}

/// One page of relationships.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page<'a> {
    /// The relationships, in id order.
    #[serde(rename = "relationships")]
    pub items: Vec<&'a Relationship>,
    /// The cursor for the next page (`after=`), absent on the last page.
    pub next_after: Option<String>,
}

impl Serialize for RelationshipsView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.by_id.values())
    }
}
