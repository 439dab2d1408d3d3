//! The view's entries: one small fixed-size record per relationship, in establishment order, in
//! chunks so that growing never copies the whole view.

use std::borrow::Cow;
use std::hash::RandomState;

use neuron_events::Timestamp;

use super::ids::{format_uuid, parse_uuid, prefix_of, text_id_hash, uuid_hash, write_uuid, Id};
use super::texts::{TextRef, Texts};

/// No entry: the end of a patient's chain.
pub(super) const NONE: u32 = u32::MAX;

/// Entries are stored in chunks so that growing the view never copies it whole.
pub(super) const CHUNK: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: Id,
    pub(super) patient: TextRef,
    /// The key, when its record gives it in canonical base64url; no key matches otherwise.
    pub(super) key: Option<[u8; 32]>,
    pub(super) established_seq: u64,
    pub(super) last_handshake_at: Timestamp,
    /// Saturating: four billion handshakes on one relationship are not expected.
    pub(super) existing_handshakes: u32,
    /// Index into the view's providers.
    pub(super) provider: u32,
    /// The same patient's previous relationship, or [`NONE`].
    pub(super) previous_of_patient: u32,
}

/// The entries in establishment order, and the texts they refer to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Entries {
    chunks: Vec<Vec<Entry>>,
    pub(super) len: u32,
    pub(super) texts: Texts,
}

impl Entries {
    pub(super) fn get(&self, slot: u32) -> &Entry {
        let slot = slot as usize;
        &self.chunks[slot / CHUNK][slot % CHUNK]
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> &mut Entry {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    pub(super) fn push(&mut self, entry: Entry) -> u32 {
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(entry);
        }
        self.len += 1;
        self.len - 1
    }

    pub(super) fn patient(&self, slot: u32) -> &str {
        self.texts.get(self.get(slot).patient)
    }

    pub(super) fn id(&self, slot: u32) -> Cow<'_, str> {
        match &self.get(slot).id {
            Id::Uuid(uuid) => Cow::Owned(format_uuid(uuid)),
            Id::Text(text) => Cow::Borrowed(self.texts.get(*text)),
        }
    }

    pub(super) fn id_hash(&self, hasher: &RandomState, slot: u32) -> u64 {
        match &self.get(slot).id {
            Id::Uuid(uuid) => uuid_hash(hasher, uuid),
            Id::Text(text) => text_id_hash(hasher, self.texts.get(*text)),
        }
    }

    /// The first 16 bytes of the id, as [`prefix_of`] gives them.
    pub(super) fn prefix(&self, slot: u32) -> [u8; 16] {
        match &self.get(slot).id {
            Id::Uuid(uuid) => {
                let mut prefix = [0u8; 16];
                prefix.copy_from_slice(&write_uuid(uuid)[..16]);
                prefix
            }
            Id::Text(text) => prefix_of(self.texts.get(*text)),
        }
    }

    pub(super) fn id_is(&self, slot: u32, id: &str) -> bool {
        match &self.get(slot).id {
            Id::Uuid(uuid) => parse_uuid(id).as_ref() == Some(uuid),
            Id::Text(text) => self.texts.get(*text) == id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ProviderEntries {
    pub(super) npi: Box<str>,
    pub(super) entries: Vec<u32>,
}
