//! The compact relationships view against a plain model: random establishments, completions and
//! terminations (ids that are UUIDs and ids that are not, sharing long prefixes; keys canonical
//! and not) give the same relationships, order, indexes and pages as a map of full records.

use std::collections::BTreeMap;

use neuron_events::b64;
use neuron_events::event::*;
use neuron_events::{Digest, Record, Timestamp};
use neuron_projections::relationships::{PageQuery, Relationship, Standing};
use neuron_projections::RelationshipsView;
use proptest::prelude::*;

/// Ids with shared 16-byte prefixes, of both kinds, and a prefix of another id.
const IDS: [&str; 7] = [
    "aaaaaaaaaaaaaaaa1",
    "aaaaaaaaaaaaaaaa0",
    "aaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaab",
    "0f8e5c1a-3b2d-4c6e-9a7b-1d2e3f4a5b6c",
    "0f8e5c1a-3b2d-4c6e-9a7b-1d2e3f4a5b6d",
    "0F8E5C1A-3B2D-4C6E-9A7B-1D2E3F4A5B6C",
];
const PATIENTS: [&str; 3] = ["ada", "bob", "ada-2"];
const PROVIDERS: [&str; 2] = ["1234567893", "1245319599"];

fn keys() -> [String; 3] {
    [
        b64::encode([1u8; 32]),
        b64::encode([2u8; 32]),
        // Decodes to 32 bytes, but is not how the Neuron writes a key: matches no key.
        format!("{}=", b64::encode([1u8; 32])),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Establish(usize, usize, usize, usize),
    Complete(usize, bool),
    Terminate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IDS.len(), 0..PATIENTS.len(), 0..PROVIDERS.len(), 0..3usize)
            .prop_map(|(i, p, n, k)| Op::Establish(i, p, n, k)),
        2 => (0..IDS.len(), any::<bool>()).prop_map(|(i, e)| Op::Complete(i, e)),
        1 => (0..IDS.len()).prop_map(Op::Terminate),
    ]
}

fn record(seq: u64, data: EventData) -> Record {
    Record {
        seq,
        at: Timestamp::saturating_from_millis(1_795_687_200_000 + seq as i64 * 1000),
        session: Some(format!("s{seq}")),
        event: data,
        prev: Digest::GENESIS,
        hash: Digest::GENESIS,
    }
}

fn to_records(ops: &[Op]) -> Vec<Record> {
    let keys = keys();
    ops.iter()
        .enumerate()
        .map(|(index, op)| {
            let data = match *op {
                Op::Establish(id, patient, provider, key) => {
                    EventData::RelationshipEstablished(RelationshipEstablished {
                        relationship_id: IDS[id].into(),
                        patient_agent_id: PATIENTS[patient].into(),
                        provider_npi: PROVIDERS[provider].into(),
                        patient_public_key: keys[key].clone(),
                        patient_endpoint: format!("wss://{}.example", PATIENTS[patient]),
                        consented_actions: vec!["read".into()],
                    })
                }
                Op::Complete(id, existing) => EventData::HandshakeCompleted(HandshakeCompleted {
                    relationship_id: IDS[id].into(),
                    status: if existing {
                        RelationshipStatus::Existing
                    } else {
                        RelationshipStatus::New
                    },
                    provider_npi: PROVIDERS[0].into(),
                    provider_endpoint: "wss://provider.example".into(),
                }),
                Op::Terminate(id) => EventData::RelationshipTerminated(RelationshipTerminated {
                    relationship_id: IDS[id].into(),
                    provider_npi: PROVIDERS[0].into(),
                    reason: format!("reason {index}"),
                    by: "api".into(),
                }),
            };
            record(index as u64 + 1, data)
        })
        .collect()
}

/// The model: every relationship in full, by id, in establishment order too.
#[derive(Default)]
struct Model {
    by_id: BTreeMap<String, Relationship>,
    order: Vec<String>,
    active: BTreeMap<(String, String), String>,
    /// (seq, id established, id that was in force for the same pair).
    conflicts: Vec<(u64, String, String)>,
}

impl Model {
    /// The ids of the relationships `select` accepts, in establishment order.
    fn established_where(&self, select: impl Fn(&Relationship) -> bool) -> Vec<String> {
        self.order
            .iter()
            .filter(|id| select(&self.by_id[*id]))
            .cloned()
            .collect()
    }

    fn apply(&mut self, record: &Record) {
        match &record.event {
            EventData::RelationshipEstablished(e)
                if !self.by_id.contains_key(&e.relationship_id) =>
            {
                self.order.push(e.relationship_id.clone());
                let displaced = self.active.insert(
                    (e.patient_agent_id.clone(), e.provider_npi.clone()),
                    e.relationship_id.clone(),
                );
                if let Some(in_force) = displaced {
                    self.conflicts
                        .push((record.seq, e.relationship_id.clone(), in_force));
                }
                self.by_id.insert(
                    e.relationship_id.clone(),
                    Relationship {
                        id: e.relationship_id.clone(),
                        patient_agent_id: e.patient_agent_id.clone(),
                        provider_npi: e.provider_npi.clone(),
                        patient_public_key: e.patient_public_key.clone(),
                        patient_endpoint: e.patient_endpoint.clone(),
                        consented_actions: e.consented_actions.clone(),
                        status: Standing::Active,
                        established_at: record.at,
                        established_seq: record.seq,
                        established_by_session: record.session.clone(),
                        existing_handshakes: 0,
                        last_handshake_at: record.at,
                        termination: None,
                    },
                );
            }
            EventData::HandshakeCompleted(c) => {
                if let Some(r) = self.by_id.get_mut(&c.relationship_id) {
                    if c.status == RelationshipStatus::Existing {
                        r.existing_handshakes += 1;
                    }
                    r.last_handshake_at = record.at;
                }
            }
            EventData::RelationshipTerminated(t) => {
                if let Some(r) = self.by_id.get_mut(&t.relationship_id) {
                    if r.status == Standing::Active {
                        r.status = Standing::Terminated;
                        r.termination = Some(neuron_projections::relationships::Termination {
                            at: record.at,
                            seq: record.seq,
                            reason: t.reason.clone(),
                            by: t.by.clone(),
                        });
                        let pair = (r.patient_agent_id.clone(), r.provider_npi.clone());
                        if self.active.get(&pair) == Some(&r.id) {
                            self.active.remove(&pair);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn ids<'a>(
    items: impl Iterator<Item = neuron_projections::relationships::Summary<'a>>,
) -> Vec<String> {
    items.map(|summary| summary.id.to_string()).collect()
}

proptest! {
    #[test]
    fn the_compact_view_answers_as_the_model(ops in prop::collection::vec(op(), 0..40)) {
        let records = to_records(&ops);
        let mut model = Model::default();
        let mut full = RelationshipsView::default();
        let mut compact = RelationshipsView::index_only();
        for record in &records {
            model.apply(record);
            full.apply(record);
            compact.apply(record);
        }
        let by_seq = |seq: u64| records.get(seq as usize - 1).cloned();

        // Every relationship, in id order, in full: from the view's records or from the log.
        let expected: Vec<&Relationship> = model.by_id.values().collect();
        let from_full: Vec<Relationship> = full.all().map(|s| full.full(&s).unwrap()).collect();
        let from_log: Vec<Relationship> = compact
            .all()
            .map(|s| compact.details(&s, &mut |seq| by_seq(seq)).unwrap())
            .collect();
        prop_assert_eq!(from_full.iter().collect::<Vec<_>>(), expected.clone());
        prop_assert_eq!(from_log.iter().collect::<Vec<_>>(), expected);
        prop_assert!(compact.all().all(|s| compact.full(&s).is_none()));

        // Two in force for one pair at once: reported by both views, by seq.
        for view in [&full, &compact] {
            let conflicts: Vec<(u64, String, String)> = view
                .conflicts()
                .iter()
                .map(|c| (c.seq, c.relationship_id.clone(), c.in_force.clone()))
                .collect();
            prop_assert_eq!(&conflicts, &model.conflicts);
        }

        let active = model.by_id.values().filter(|r| r.status == Standing::Active).count();
        prop_assert_eq!(compact.counts(), (active, model.by_id.len() - active));
        for id in IDS.iter().chain(["aaaaaaaaaaaaaaa", "b", ""].iter()) {
            let found = compact.get(id).map(|s| s.id.to_string());
            prop_assert_eq!(found, model.by_id.get(*id).map(|r| r.id.clone()));
            let after: Vec<String> =
                model.by_id.keys().filter(|k| k.as_str() > *id).cloned().collect();
            prop_assert_eq!(ids(compact.after(id)), after);
        }
        let keys = keys();
        for patient in PATIENTS {
            let established = model.established_where(|r| r.patient_agent_id == patient);
            prop_assert_eq!(ids(compact.by_patient(patient)), established);
            for provider in PROVIDERS {
                let expected = model.active.get(&(patient.to_string(), provider.to_string()));
                let found = compact.active_for(patient, provider);
                prop_assert_eq!(found.as_ref().map(|s| s.id.to_string()), expected.cloned());
                if let (Some(found), Some(id)) = (found, expected) {
                    let stored = &model.by_id[id].patient_public_key;
                    prop_assert_eq!(found.has_key(&[1u8; 32]), *stored == keys[0]);
                    prop_assert_eq!(found.has_key(&[2u8; 32]), *stored == keys[1]);
                }
            }
        }
        for provider in PROVIDERS {
            let established = model.established_where(|r| r.provider_npi == provider);
            prop_assert_eq!(ids(compact.by_provider(provider)), established);
        }

        // Paging two at a time visits every relationship the filters select once, in order.
        let providers = [None, Some(PROVIDERS[0]), Some(PROVIDERS[1]), Some("1003000126")];
        let statuses = [None, Some(Standing::Active), Some(Standing::Terminated)];
        for provider_npi in providers {
            for status in statuses {
                let mut paged = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = compact.page(&PageQuery {
                        provider_npi,
                        status,
                        after: after.as_deref(),
                        limit: 2,
                        ..PageQuery::default()
                    });
                    prop_assert!(page.items.len() <= 2);
                    paged.extend(page.items.iter().map(|s| s.id.to_string()));
                    match page.next_after {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                let selected: Vec<String> = model
                    .by_id
                    .values()
                    .filter(|r| provider_npi.is_none_or(|npi| r.provider_npi == npi))
                    .filter(|r| status.is_none_or(|status| r.status == status))
                    .map(|r| r.id.clone())
                    .collect();
                prop_assert_eq!(paged, selected);
            }
        }
    }
}
