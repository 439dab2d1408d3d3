//! The organization's providers: registered (from the configuration or the operator API) or
//! removed. Removing a provider stops new handshakes naming it; it leaves relationships alone.

use std::collections::BTreeMap;

use neuron_events::event::{ChangeSource, EventData};
use neuron_events::{Record, Timestamp};
use serde::Serialize;

/// One provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Provider {
    /// The NPI.
    pub npi: String,
    /// The display name.
    pub name: String,
    /// Whether handshakes may name it.
    pub registered: bool,
    /// When it was (last) registered.
    pub registered_at: Timestamp,
    /// Where the last change came from.
    pub changed_by: ChangeSource,
    /// When it was removed, if it is.
    pub removed_at: Option<Timestamp>,
}

/// Every provider the log names, by NPI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProvidersView {
    providers: BTreeMap<String, Provider>,
}

impl ProvidersView {
    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::ProviderRegistered(change) => {
                self.providers.insert(
                    change.npi.clone(),
                    Provider {
                        npi: change.npi.clone(),
                        name: change.name.clone(),
                        registered: true,
                        registered_at: record.at,
                        changed_by: change.by,
                        removed_at: None,
                    },
                );
            }
            EventData::ProviderRemoved(change) => {
                if let Some(provider) = self.providers.get_mut(&change.npi) {
                    provider.registered = false;
                    provider.removed_at = Some(record.at);
                    provider.changed_by = change.by;
                }
            }
            _ => {}
        }
    }

    /// A provider by NPI, registered or removed.
    pub fn get(&self, npi: &str) -> Option<&Provider> {
        self.providers.get(npi)
    }

    /// Whether handshakes may name this NPI.
    pub fn is_registered(&self, npi: &str) -> bool {
        self.providers
            .get(npi)
            .is_some_and(|provider| provider.registered)
    }

    /// Every provider, by NPI.
    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// The registered providers, by NPI.
    pub fn registered(&self) -> impl Iterator<Item = &Provider> {
        self.providers
            .values()
            .filter(|provider| provider.registered)
    }
}
