//! Care relationships: established by a completed handshake, reused by later `existing`
//! handshakes, and ended for good by a termination. A terminated relationship never becomes active
//! again; the patient's next handshake establishes a new one.
//!
//! The view is compact: of each relationship it keeps what a handshake and the indexes need (id,
//! patient, provider, key, status, the seqs of the records that established and ended it, and the
//! use counters), ~170 bytes with the hash indexes; id order (for paging) is sorted on
//! demand rather than indexed. The rest (endpoint, consented actions, termination reason, …)
//! is in those two records: a full view ([`RelationshipsView::default`], for investigators) keeps
//! them, a serving view ([`RelationshipsView::index_only`]) leaves them in the log, and
//! [`RelationshipsView::details`] reads them through a lookup the caller supplies.
//!
//! The memory layout lives beside this file: `ids` (a UUID id in 16 bytes, other ids as text,
//! their hashes and paging prefixes), `texts` (the arena patient ids and other texts are packed
//! into), `entries` (one fixed-size entry per relationship, in chunks), and `paging` (id order after
//! a cursor, sorted on demand). This file holds the view: the fold, the indexes and the questions
//! it answers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

mod entries;
mod ids;
mod paging;
mod texts;

use entries::{Entries, Entry, ProviderEntries, NONE};
use ids::{id_hash, parse_uuid, Id};
pub use paging::{Page, PageCandidates, PageQuery};

use neuron_events::event::{EventData, RelationshipEstablished, RelationshipStatus, TerminatedBy};
use neuron_events::{b64, Record, Timestamp};
use serde::Serialize;

/// Whether a relationship is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
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
    pub by: TerminatedBy,
}

/// One care relationship in full.
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
    pub status: Standing,
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

/// What the view keeps of one relationship: enough to serve a handshake, and the seqs of the
/// records that tell the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary<'a> {
    /// Its id.
    pub id: Cow<'a, str>,
    /// The patient's agent.
    pub patient_agent_id: Cow<'a, str>,
    /// The provider.
    pub provider_npi: Cow<'a, str>,
    /// Active or terminated.
    pub status: Standing,
    /// The record that established it.
    pub established_seq: u64,
    /// The record that ended it, once terminated.
    pub termination_seq: Option<u64>,
    /// Later handshakes that reused it.
    pub existing_handshakes: u64,
    /// The last handshake that completed with it.
    pub last_handshake_at: Timestamp,
    #[serde(skip)]
    key: Option<[u8; 32]>,
}

impl Summary<'_> {
    /// Whether the relationship was established with this key (its record names the key in
    /// canonical base64url).
    pub fn has_key(&self, key: &[u8; 32]) -> bool {
        self.key.as_ref() == Some(key)
    }

    /// The same, owning its text: it outlives the view it came from.
    pub fn into_owned(self) -> Summary<'static> {
        Summary {
            id: Cow::Owned(self.id.into_owned()),
            patient_agent_id: Cow::Owned(self.patient_agent_id.into_owned()),
            provider_npi: Cow::Owned(self.provider_npi.into_owned()),
            status: self.status,
            established_seq: self.established_seq,
            termination_seq: self.termination_seq,
            existing_handshakes: self.existing_handshakes,
            last_handshake_at: self.last_handshake_at,
            key: self.key,
        }
    }
}

/// Every relationship, with indexes by id, patient, provider and active pair.
#[derive(Clone, Debug, Default)]
pub struct RelationshipsView {
    entries: Entries,
    /// Every entry, by id.
    ids: HashTable<u32>,
    /// The seq of the record that ended each terminated entry (few are); the others are active.
    terminations: HashMap<u32, u64>,
    /// The entry in force for each (patient, provider).
    active: HashTable<u32>,
    /// Each patient's latest entry.
    patients: HashTable<u32>,
    providers: Vec<ProviderEntries>,
    /// Index into `providers`, by NPI.
    provider_index: HashTable<u32>,
    hasher: RandomState,
    /// The records that established or ended a relationship, by seq (none in an index-only view).
    records: HashMap<u64, Record>,
    index_only: bool,
    /// Relationships established while another was in force for their pair.
    conflicts: Vec<Conflict>,
}

/// A relationship established while another was in force for the same (patient, provider): the
/// log breaks the promise of at most one active relationship per pair (SPEC §2.3 step 4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The record that established the second one.
    pub seq: u64,
    /// The second one's id: in force from this record on.
    pub relationship_id: String,
    /// The patient.
    pub patient_agent_id: String,
    /// The provider.
    pub provider_npi: String,
    /// The one that was in force, and still active in the log, when the second was established.
    pub in_force: String,
    /// The record that established it.
    pub in_force_seq: u64,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seq {}: relationship {} established for patient {} with provider {} while {} (seq {}) was active",
            self.seq,
            self.relationship_id,
            self.patient_agent_id,
            self.provider_npi,
            self.in_force,
            self.in_force_seq
        )
    }
}

impl PartialEq for RelationshipsView {
    fn eq(&self, other: &Self) -> bool {
        // The indexes follow from the entries.
        self.entries == other.entries
            && self.terminations == other.terminations
            && self.providers == other.providers
            && self.records == other.records
            && self.conflicts == other.conflicts
    }
}

impl Eq for RelationshipsView {}

impl RelationshipsView {
    /// A view that keeps only what serving handshakes needs; full relationships are read with
    /// [`RelationshipsView::details`] from the log.
    pub fn index_only() -> Self {
        Self {
            index_only: true,
            ..Self::default()
        }
    }

    fn provider_of(&self, npi: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(npi);
        self.provider_index
            .find(hash, |&index| {
                self.providers[index as usize].npi.as_ref() == npi
            })
            .copied()
    }

    fn intern_provider(&mut self, npi: &str) -> Option<u32> {
        if let Some(index) = self.provider_of(npi) {
            return Some(index);
        }
        let index = u32::try_from(self.providers.len()).ok()?;
        self.providers.push(ProviderEntries {
            npi: npi.into(),
            entries: Vec::new(),
        });
        let Self {
            provider_index,
            providers,
            hasher,
            ..
        } = self;
        provider_index.insert_unique(hasher.hash_one(npi), index, |&other| {
            hasher.hash_one(providers[other as usize].npi.as_ref())
        });
        Some(index)
    }

    fn slot_of(&self, id: &str) -> Option<u32> {
        let hash = id_hash(&self.hasher, id);
        self.ids
            .find(hash, |&slot| self.entries.id_is(slot, id))
            .copied()
    }

    fn latest_of_patient(&self, patient: &str) -> Option<u32> {
        self.patients
            .find(self.hasher.hash_one(patient), |&slot| {
                self.entries.patient(slot) == patient
            })
            .copied()
    }

    fn summary(&self, slot: u32) -> Summary<'_> {
        let entry = self.entries.get(slot);
        Summary {
            id: self.entries.id(slot),
            patient_agent_id: Cow::Borrowed(self.entries.patient(slot)),
            provider_npi: Cow::Borrowed(&self.providers[entry.provider as usize].npi),
            status: self.status(slot),
            established_seq: entry.established_seq,
            termination_seq: self.terminations.get(&slot).copied(),
            existing_handshakes: u64::from(entry.existing_handshakes),
            last_handshake_at: entry.last_handshake_at,
            key: entry.key,
        }
    }

    fn status(&self, slot: u32) -> Standing {
        if self.terminations.contains_key(&slot) {
            Standing::Terminated
        } else {
            Standing::Active
        }
    }

    fn keep(&mut self, record: &Record) {
        if !self.index_only {
            self.records.insert(record.seq, record.clone());
        }
    }

    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::RelationshipEstablished(established) => {
                self.establish(record, established);
            }
            EventData::HandshakeCompleted(completed) => {
                if let Some(slot) = self.slot_of(&completed.relationship_id) {
                    let entry = self.entries.get_mut(slot);
                    if completed.status == RelationshipStatus::Existing {
                        entry.existing_handshakes = entry.existing_handshakes.saturating_add(1);
                    }
                    entry.last_handshake_at = record.at;
                }
            }
            EventData::RelationshipTerminated(terminated) => {
                let Some(slot) = self.slot_of(&terminated.relationship_id) else {
                    return;
                };
                if self.terminations.contains_key(&slot) {
                    return;
                }
                self.terminations.insert(slot, record.seq);
                let hash = self.pair_hash(slot);
                if let Ok(found) = self.active.find_entry(hash, |&other| other == slot) {
                    found.remove();
                }
                self.keep(record);
            }
            _ => {}
        }
    }

    fn establish(&mut self, record: &Record, established: &RelationshipEstablished) {
        let id_text = established.relationship_id.as_str();
        if self.slot_of(id_text).is_some() || self.entries.len == NONE {
            return;
        }
        let Some(provider) = self.intern_provider(&established.provider_npi) else {
            return;
        };
        let patient_text = established.patient_agent_id.as_str();
        let previous_of_patient = self.latest_of_patient(patient_text).unwrap_or(NONE);
        // A patient's relationships share the text of its id.
        let patient = match previous_of_patient {
            NONE => self.entries.texts.push(patient_text),
            previous => Some(self.entries.get(previous).patient),
        };
        let id = match parse_uuid(id_text) {
            Some(uuid) => Some(Id::Uuid(uuid)),
            None => self.entries.texts.push(id_text).map(Id::Text),
        };
        let (Some(patient), Some(id)) = (patient, id) else {
            return;
        };
        let key = b64::decode(&established.patient_public_key)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .filter(|key| b64::encode(key) == established.patient_public_key);
        let slot = self.entries.push(Entry {
            id,
            patient,
            key,
            established_seq: record.seq,
            last_handshake_at: record.at,
            existing_handshakes: 0,
            provider,
            previous_of_patient,
        });
        let Self {
            entries,
            ids,
            hasher,
            ..
        } = self;
        ids.insert_unique(id_hash(hasher, id_text), slot, |&other| {
            entries.id_hash(hasher, other)
        });
        self.providers[provider as usize].entries.push(slot);
        let Self {
            entries,
            patients,
            active,
            hasher,
            ..
        } = self;
        let patient_hash = hasher.hash_one(patient_text);
        if previous_of_patient == NONE {
            patients.insert_unique(patient_hash, slot, |&other| {
                hasher.hash_one(entries.patient(other))
            });
        } else if let Some(latest) =
            patients.find_mut(patient_hash, |&other| other == previous_of_patient)
        {
            *latest = slot;
        }
        // The new entry is in force for its pair, in place of any the log left in force: the
        // last established wins, as the server that wrote such a log served it. Two in force at
        // once break SPEC §2.3 step 4, so the displaced one is reported.
        let pair_of = |slot: u32| (entries.patient(slot), entries.get(slot).provider);
        let pair_hash = hasher.hash_one((patient_text, provider));
        let displaced = match active.find_mut(pair_hash, |&other| {
            pair_of(other) == (patient_text, provider)
        }) {
            Some(current) => Some(std::mem::replace(current, slot)),
            None => {
                active.insert_unique(pair_hash, slot, |&other| hasher.hash_one(pair_of(other)));
                None
            }
        };
        if let Some(displaced) = displaced {
            self.conflicts.push(Conflict {
                seq: record.seq,
                relationship_id: id_text.to_string(),
                patient_agent_id: patient_text.to_string(),
                provider_npi: established.provider_npi.clone(),
                in_force: self.entries.id(displaced).into_owned(),
                in_force_seq: self.entries.get(displaced).established_seq,
            });
        }
        self.keep(record);
    }

    /// Relationships established while another was in force for the same (patient, provider), in
    /// log order: what a log written before concurrent first handshakes were serialised may hold.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    fn pair_hash(&self, slot: u32) -> u64 {
        let entry = self.entries.get(slot);
        self.hasher
            .hash_one((self.entries.patient(slot), entry.provider))
    }

    /// A relationship by id.
    pub fn get(&self, id: &str) -> Option<Summary<'_>> {
        self.slot_of(id).map(|slot| self.summary(slot))
    }

    /// The active relationship between a patient and a provider, if any.
    pub fn active_for(&self, patient_agent_id: &str, provider_npi: &str) -> Option<Summary<'_>> {
        let provider = self.provider_of(provider_npi)?;
        let hash = self.hasher.hash_one((patient_agent_id, provider));
        self.active
            .find(hash, |&slot| {
                self.entries.get(slot).provider == provider
                    && self.entries.patient(slot) == patient_agent_id
            })
            .map(|&slot| self.summary(slot))
    }

    /// A patient's relationships, in the order they were established.
    pub fn by_patient(&self, patient_agent_id: &str) -> impl Iterator<Item = Summary<'_>> {
        let mut slot = self.latest_of_patient(patient_agent_id).unwrap_or(NONE);
        let mut chain = Vec::new();
        while slot != NONE {
            chain.push(slot);
            slot = self.entries.get(slot).previous_of_patient;
        }
        chain.into_iter().rev().map(|slot| self.summary(slot))
    }

    /// A provider's relationships, in the order they were established.
    pub fn by_provider(&self, provider_npi: &str) -> impl Iterator<Item = Summary<'_>> {
        self.provider_of(provider_npi)
            .map(|index| self.providers[index as usize].entries.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&slot| self.summary(slot))
    }

    /// The relationships with a status, ordered by id.
    pub fn by_status(&self, status: Standing) -> impl Iterator<Item = Summary<'_>> {
        self.all().filter(move |summary| summary.status == status)
    }

    /// How many relationships have each status: (active, terminated).
    pub fn counts(&self) -> (usize, usize) {
        let terminated = self.terminations.len();
        (self.len() - terminated, terminated)
    }

    /// How many relationships there are.
    pub fn len(&self) -> usize {
        self.entries.len as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.len == 0
    }

    /// The whole relationship: the summary completed from the records that established and ended
    /// it, taken from this view when it keeps them and from `lookup` (by seq) otherwise. `None`
    /// when a record is missing or is not about this relationship.
    pub fn details(
        &self,
        summary: &Summary<'_>,
        lookup: &mut dyn FnMut(u64) -> Option<Record>,
    ) -> Option<Relationship> {
        Relationship::assemble(summary, &mut |seq| match self.records.get(&seq) {
            Some(record) => Some(Cow::Borrowed(record)),
            None => lookup(seq).map(Cow::Owned),
        })
    }

    /// The whole relationship, from the records this view keeps (`None` in an index-only view).
    pub fn full(&self, summary: &Summary<'_>) -> Option<Relationship> {
        self.details(summary, &mut |_| None)
    }
}

impl Relationship {
    /// A summary completed from the records that established and ended the relationship, as
    /// `lookup` gives them by seq. `None` when a record is missing or is not about it.
    pub fn assemble<'r>(
        summary: &Summary<'_>,
        lookup: &mut dyn FnMut(u64) -> Option<Cow<'r, Record>>,
    ) -> Option<Self> {
        let established = lookup(summary.established_seq)?;
        let EventData::RelationshipEstablished(data) = &established.event else {
            return None;
        };
        if data.relationship_id != summary.id {
            return None;
        }
        let termination = match summary.termination_seq {
            None => None,
            Some(seq) => {
                let record = lookup(seq)?;
                let EventData::RelationshipTerminated(ended) = &record.event else {
                    return None;
                };
                if ended.relationship_id != summary.id {
                    return None;
                }
                Some(Termination {
                    at: record.at,
                    seq: record.seq,
                    reason: ended.reason.clone(),
                    by: ended.by.clone(),
                })
            }
        };
        Some(Self {
            id: summary.id.to_string(),
            patient_agent_id: data.patient_agent_id.clone(),
            provider_npi: data.provider_npi.clone(),
            patient_public_key: data.patient_public_key.clone(),
            patient_endpoint: data.patient_endpoint.clone(),
            consented_actions: data.consented_actions.clone(),
            status: summary.status,
            established_at: established.at,
            established_seq: established.seq,
            established_by_session: established.session.clone(),
            existing_handshakes: summary.existing_handshakes,
            last_handshake_at: summary.last_handshake_at,
            termination,
        })
    }
}
