//! The views folded from the fixed story, from hand-made sequences (restart, re-establishment after
//! termination), and from random sequences (fold at once equals fold one at a time, from any split).

use neuron_events::event::*;
use neuron_events::testing::{
    fixed_log, snapshot_settings, OTHER_PROVIDER, PATIENT, PROVIDER, RELATIONSHIP_ID,
};
use neuron_events::{Digest, Record, Timestamp};
use neuron_projections::relationships::Standing;
use neuron_projections::sessions::SessionStage;
use neuron_projections::{replay, Until, Views};
use proptest::prelude::*;

fn fixed_records() -> Vec<Record> {
    fixed_log()
        .unwrap()
        .iter()
        .map(|bytes| Record::decode(bytes).unwrap())
        .collect()
}

fn stage(views: &Views, session: &str) -> SessionStage {
    views.sessions.get(session).unwrap().stage
}

#[test]
fn the_fixed_story_folds_into_the_expected_views() {
    let views = replay(fixed_records(), Until::End);
    let summary = views.relationships.get(RELATIONSHIP_ID).unwrap();
    let relationship = views.relationships.full(&summary).unwrap();
    assert_eq!(relationship.status, Standing::Terminated);
    assert_eq!(relationship.existing_handshakes, 1);
    assert_eq!(relationship.established_by_session.as_deref(), Some("s1"));
    assert_eq!(
        relationship.termination.as_ref().unwrap().reason,
        "patient moved away"
    );
    assert!(views.relationships.active_for(PATIENT, PROVIDER).is_none());
    assert_eq!(views.relationships.by_patient(PATIENT).count(), 1);
    assert_eq!(views.relationships.by_provider(PROVIDER).count(), 1);
    assert_eq!(views.relationships.by_status(Standing::Active).count(), 0);

    assert!(views.providers.is_registered(PROVIDER));
    assert!(!views.providers.is_registered(OTHER_PROVIDER));
    assert!(views
        .providers
        .get(OTHER_PROVIDER)
        .unwrap()
        .removed_at
        .is_some());

    assert_eq!(stage(&views, "s1"), SessionStage::Completed);
    assert_eq!(
        views.sessions.get("s2").unwrap().failure_code,
        Some(ErrorCode::ConsentFailed)
    );
    assert_eq!(views.sessions.get("s2").unwrap().waited_ms, Some(1200));
    assert_eq!(stage(&views, "s3"), SessionStage::Failed);
    assert_eq!(
        views.sessions.get("s4").unwrap().failure_code,
        Some(ErrorCode::AuthTimeout)
    );
    assert_eq!(
        views.sessions.get("s5").unwrap().relationship_status,
        Some(RelationshipStatus::Existing)
    );
    assert_eq!(stage(&views, "s6"), SessionStage::Failed);
    assert_eq!(
        (stage(&views, "s7"), stage(&views, "s8")),
        (SessionStage::Closed, SessionStage::Closed)
    );
    assert_eq!(views.sessions.live_count(), 0);
    assert!(views.queue.is_empty());

    let tally = views.sessions.tally();
    assert_eq!(
        (
            tally.completed_new,
            tally.completed_existing,
            tally.closed,
            tally.queue_timeouts
        ),
        (1, 1, 2, 1)
    );
    assert_eq!(tally.failed.get(&ErrorCode::ConsentFailed), Some(&1));
    assert_eq!(tally.rejected.get(&RejectReason::QueueFull), Some(&1));
}

#[test]
fn replay_stops_at_a_seq_or_a_time() {
    let records = fixed_records();
    let at_six = replay(&records, Until::Seq(6));
    assert_eq!(at_six.last_seq, 6);
    let queue: Vec<(usize, String)> = at_six
        .queue
        .positions()
        .map(|p| (p.position, p.waiting.session.clone()))
        .collect();
    assert_eq!(queue, vec![(1, "s2".to_string()), (2, "s3".to_string())]);
    assert_eq!(
        at_six
            .sessions
            .live()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        vec!["s1", "s2", "s3"]
    );

    // s2 is promoted at 10:00:03.500 (seq 15): one instant before, it still waits first in line.
    let before_promotion = replay(
        &records,
        Until::Time(Timestamp::parse_rfc3339("2026-11-26T10:00:03.499Z").unwrap()),
    );
    assert_eq!(before_promotion.queue.position_of("s2"), Some(1));
    let after_promotion = replay(
        &records,
        Until::Time(Timestamp::parse_rfc3339("2026-11-26T10:00:03.500Z").unwrap()),
    );
    assert_eq!(after_promotion.queue.position_of("s2"), None);
    assert_eq!(after_promotion.queue.position_of("s3"), Some(1));
    assert_eq!(after_promotion.last_seq, before_promotion.last_seq + 1);
}

/// Records for hand-made sequences: consecutive seqs, one second apart.
fn records(events: Vec<Event>) -> Vec<Record> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| Record {
            seq: index as u64 + 1,
            at: Timestamp::saturating_from_millis(1_795_687_200_000 + index as i64 * 1000),
            session: event.session,
            event: event.data,
            prev: Digest::GENESIS,
            hash: Digest::GENESIS,
        })
        .collect()
}

fn started() -> Event {
    Event::global(EventData::ServerStarted(ServerStarted {
        version: "0.1.0".into(),
        public_key: "k".into(),
        organization_npi: OTHER_PROVIDER.into(),
        config_digest: "d".into(),
        origin: None,
        decision: None,
    }))
}

fn established(id: &str) -> Event {
    Event::in_session(
        "s",
        EventData::RelationshipEstablished(RelationshipEstablished {
            relationship_id: id.into(),
            patient_agent_id: PATIENT.into(),
            provider_npi: PROVIDER.into(),
            patient_public_key: "key".into(),
            patient_endpoint: "wss://ada.example".into(),
            consented_actions: vec!["read".into()],
        }),
    )
}

fn terminated(id: &str) -> Event {
    Event::global(EventData::RelationshipTerminated(RelationshipTerminated {
        relationship_id: id.into(),
        provider_npi: PROVIDER.into(),
        reason: "ended".into(),
        by: "api".into(),
    }))
}

#[test]
fn a_time_is_reached_at_the_last_record_stamped_at_or_before_it_across_a_clock_step() {
    // A run with the clock ahead (seqs 1-2), the step back recorded (seq 3), a record on the
    // real clock (seq 4), one more far later (seq 5).
    let mut records = records(vec![
        established("r1"),
        established("r2"),
        Event::global(EventData::ServerClockBehind(ServerClockBehind {
            last_at: Timestamp::saturating_from_millis(40_000),
            now: Timestamp::saturating_from_millis(5_000),
            behind_ms: 35_000,
        })),
        established("r3"),
        established("r4"),
    ]);
    for (record, at) in records
        .iter_mut()
        .zip([10_000, 40_000, 5_000, 6_000, 50_000])
    {
        record.at = Timestamp::saturating_from_millis(at);
    }
    let ids = |views: &Views| -> Vec<String> {
        let mut ids: Vec<String> = views
            .relationships
            .all()
            .map(|relationship| relationship.id.to_string())
            .collect();
        ids.sort();
        ids
    };
    let at = |millis| {
        replay(
            &records,
            Until::Time(Timestamp::saturating_from_millis(millis)),
        )
    };
    // 20 s: seq 4 (6 s) is the last record at or before it; seq 2 (40 s) came before it.
    let twenty = at(20_000);
    assert_eq!(twenty.last_seq, 4);
    assert_eq!(ids(&twenty), ["r1", "r2", "r3"]);
    // 5.5 s: the step (5 s) is the last; the run ahead precedes it.
    assert_eq!(at(5_500).last_seq, 3);
    // Before every record: nothing.
    assert_eq!(at(4_000).last_seq, 0);
    assert!(ids(&at(4_000)).is_empty());
    // After every record: all of it.
    assert_eq!(at(60_000).last_seq, 5);
}

#[test]
fn a_restart_cuts_off_sessions_that_never_ended_and_empties_the_queue() {
    let views = replay(
        records(vec![
            started(),
            Event::in_session(
                "a",
                EventData::ConnectionAccepted(ConnectionAccepted {
                    peer: "p".into(),
                    live_sessions: 1,
                }),
            ),
            Event::in_session(
                "b",
                EventData::ConnectionQueued(ConnectionQueued {
                    peer: "q".into(),
                    position: 1,
                }),
            ),
            started(),
        ]),
        Until::End,
    );
    assert_eq!(views.sessions.live_count(), 0);
    let cut_off = views.sessions.get("a").unwrap();
    assert!(cut_off.interrupted && cut_off.stage == SessionStage::Closed);
    assert!(views.sessions.get("b").unwrap().interrupted);
    assert_eq!(views.sessions.tally().interrupted, 2);
    assert!(views.queue.is_empty());
}

#[test]
fn termination_is_permanent_and_a_new_handshake_makes_a_new_relationship() {
    let views = replay(
        records(vec![
            established("r1"),
            terminated("r1"),
            established("r2"),
            terminated("r1"),
            established("r1"),
        ]),
        Until::End,
    );
    let summary = views.relationships.get("r1").unwrap();
    let first = views.relationships.full(&summary).unwrap();
    assert_eq!(first.status, Standing::Terminated);
    assert_eq!(
        first.termination.as_ref().unwrap().seq,
        2,
        "a second termination changes nothing"
    );
    assert_eq!(
        first.established_seq, 1,
        "re-establishing a known id changes nothing"
    );
    assert_eq!(
        views
            .relationships
            .active_for(PATIENT, PROVIDER)
            .map(|r| r.id.to_string()),
        Some("r2".to_string())
    );
    assert_eq!(
        views
            .relationships
            .by_patient(PATIENT)
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>(),
        vec!["r1", "r2"]
    );
    assert_eq!(views.relationships.counts(), (1, 1));
    assert_eq!(
        views
            .relationships
            .after("r1")
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>(),
        vec!["r2"]
    );
}

fn established_for(id: &str, patient: &str, provider: &str) -> Event {
    Event::in_session(
        "s",
        EventData::RelationshipEstablished(RelationshipEstablished {
            relationship_id: id.into(),
            patient_agent_id: patient.into(),
            provider_npi: provider.into(),
            patient_public_key: "key".into(),
            patient_endpoint: "wss://agent.example".into(),
            consented_actions: vec!["read".into()],
        }),
    )
}

#[test]
fn relationships_page_in_id_order_with_filters_and_a_cursor() {
    use neuron_projections::relationships::PageQuery;
    // Established out of id order, for two patients and two providers; r3 terminated.
    let events = vec![
        established_for("r5", "ada", PROVIDER),
        established_for("r2", "bob", PROVIDER),
        established_for("r4", "ada", OTHER_PROVIDER),
        established_for("r1", "ada", PROVIDER),
        established_for("r3", "bob", OTHER_PROVIDER),
        terminated("r3"),
    ];
    let views = replay(records(events), Until::End);
    let ids = |query: PageQuery<'_>| {
        let page = views.relationships.page(&query);
        let ids: Vec<String> = page.items.iter().map(|r| r.id.to_string()).collect();
        (ids, page.next_after)
    };
    let all = |after| PageQuery {
        after,
        limit: 2,
        ..PageQuery::default()
    };
    assert_eq!(
        ids(all(None)),
        (vec!["r1".into(), "r2".into()], Some("r2".into()))
    );
    assert_eq!(
        ids(all(Some("r2"))),
        (vec!["r3".into(), "r4".into()], Some("r4".into()))
    );
    assert_eq!(ids(all(Some("r4"))), (vec!["r5".into()], None));
    assert_eq!(ids(all(Some("r5"))), (vec![], None));
    // A cursor that is not an id still orders: everything after it.
    assert_eq!(ids(all(Some("r25"))).0, ["r3", "r4"]);

    let ada = |after| PageQuery {
        patient_agent_id: Some("ada"),
        after,
        limit: 2,
        ..PageQuery::default()
    };
    assert_eq!(
        ids(ada(None)),
        (vec!["r1".into(), "r4".into()], Some("r4".into()))
    );
    assert_eq!(ids(ada(Some("r4"))), (vec!["r5".into()], None));

    let provider_active = PageQuery {
        provider_npi: Some(OTHER_PROVIDER),
        status: Some(Standing::Active),
        limit: 10,
        ..PageQuery::default()
    };
    assert_eq!(ids(provider_active), (vec!["r4".into()], None));
    let terminated_bob = PageQuery {
        patient_agent_id: Some("bob"),
        status: Some(Standing::Terminated),
        limit: 10,
        ..PageQuery::default()
    };
    assert_eq!(ids(terminated_bob), (vec!["r3".into()], None));
    let exactly_full = PageQuery {
        patient_agent_id: Some("bob"),
        limit: 2,
        ..PageQuery::default()
    };
    assert_eq!(
        ids(exactly_full),
        (vec!["r2".into(), "r3".into()], None),
        "a page that ends exactly at the last one has no cursor"
    );
}

#[test]
fn an_ended_session_is_not_reopened_by_later_records() {
    let views = replay(
        records(vec![
            Event::in_session(
                "a",
                EventData::ConnectionTimeout(ConnectionTimeout {
                    stage: Stage::Auth,
                    code: ErrorCode::AuthTimeout,
                }),
            ),
            Event::in_session(
                "a",
                EventData::ChallengeIssued(ChallengeIssued {
                    nonce: "n".into(),
                    relationship: None,
                }),
            ),
        ]),
        Until::End,
    );
    assert_eq!(stage(&views, "a"), SessionStage::Failed);
    assert_eq!(views.sessions.live_count(), 0);
}

#[test]
fn the_fixed_story_views_are_locked() {
    let records = fixed_records();
    snapshot_settings().bind(|| {
        insta::assert_json_snapshot!("views__fixed_story", replay(&records, Until::End));
        insta::assert_json_snapshot!(
            "views__fixed_story_at_seq_12",
            replay(&records, Until::Seq(12))
        );
    });
}

fn any_event() -> impl Strategy<Value = Event> {
    let session = (0..6u8).prop_map(|n| format!("s{n}"));
    let id = (0..4u8).prop_map(|n| format!("r{n}"));
    let npi = prop_oneof![Just(PROVIDER.to_string()), Just(OTHER_PROVIDER.to_string())];
    let patient = (0..3u8).prop_map(|n| format!("p{n}"));
    let data = prop_oneof![
        Just(started().data),
        (npi.clone(), any::<bool>()).prop_map(|(npi, add)| {
            let change = ProviderChanged {
                npi,
                name: "n".into(),
                by: ChangeSource::Api,
            };
            if add {
                EventData::ProviderRegistered(change)
            } else {
                EventData::ProviderRemoved(change)
            }
        }),
        Just(EventData::ConnectionAccepted(ConnectionAccepted {
            peer: "p".into(),
            live_sessions: 1
        })),
        (1..5u32).prop_map(|position| EventData::ConnectionQueued(ConnectionQueued {
            peer: "q".into(),
            position
        })),
        (0..5000u64)
            .prop_map(|waited_ms| EventData::ConnectionPromoted(ConnectionPromoted { waited_ms })),
        Just(EventData::ConnectionQueueTimeout(ConnectionQueueTimeout {
            waited_ms: 30_000
        })),
        Just(EventData::ConnectionRejected(ConnectionRejected {
            peer: "r".into(),
            reason: RejectReason::QueueFull,
            waited_ms: 0
        })),
        patient
            .clone()
            .prop_map(
                |patient_agent_id| EventData::HandshakeStarted(HandshakeStarted {
                    patient_agent_id,
                    patient_endpoint: "e".into()
                })
            ),
        (patient.clone(), npi.clone()).prop_map(|(patient_agent_id, provider_npi)| {
            EventData::ConsentVerified(ConsentVerified {
                patient_agent_id,
                provider_npi,
                consented_actions: vec![],
                iat: 1,
                exp: 2,
            })
        }),
        Just(EventData::ChallengeIssued(ChallengeIssued {
            nonce: "n".into(),
            relationship: None
        })),
        (id.clone(), patient, npi.clone()).prop_map(
            |(relationship_id, patient_agent_id, provider_npi)| EventData::RelationshipEstablished(
                RelationshipEstablished {
                    relationship_id,
                    patient_agent_id,
                    provider_npi,
                    patient_public_key: "k".into(),
                    patient_endpoint: "e".into(),
                    consented_actions: vec!["a".into()]
                }
            )
        ),
        (id.clone(), any::<bool>(), npi.clone()).prop_map(
            |(relationship_id, new, provider_npi)| EventData::HandshakeCompleted(
                HandshakeCompleted {
                    relationship_id,
                    status: if new {
                        RelationshipStatus::New
                    } else {
                        RelationshipStatus::Existing
                    },
                    provider_npi,
                    provider_endpoint: "x".into()
                }
            )
        ),
        Just(EventData::HandshakeFailed(HandshakeFailed {
            stage: Stage::Consent,
            code: ErrorCode::ConsentFailed,
            reason: "r".into(),
            provider_npi: None
        })),
        Just(EventData::ConnectionTimeout(ConnectionTimeout {
            stage: Stage::Challenge,
            code: ErrorCode::ChallengeTimeout
        })),
        Just(EventData::ConnectionClosed(ConnectionClosed {
            by: ClosedBy::Client,
            code: Some(1006),
            stage: Stage::Auth,
            reason: None,
        })),
        (id, npi).prop_map(
            |(relationship_id, provider_npi)| EventData::RelationshipTerminated(
                RelationshipTerminated {
                    relationship_id,
                    provider_npi,
                    reason: "r".into(),
                    by: "api".into()
                }
            )
        ),
    ];
    (proptest::option::weighted(0.9, session), data)
        .prop_map(|(session, data)| Event { session, data })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (b) Folding all records at once equals folding a prefix, keeping the views, and applying the
    /// rest one by one, whatever the split point; and the serialised views are the same too.
    #[test]
    fn folding_at_once_equals_folding_one_by_one_from_any_split(events in proptest::collection::vec(any_event(), 0..80), split in any::<usize>()) {
        let records = records(events);
        let at_once = replay(&records, Until::End);
        let split = if records.is_empty() { 0 } else { split % (records.len() + 1) };
        let mut stepwise = replay(&records[..split], Until::End);
        for record in &records[split..] {
            stepwise.apply(record);
        }
        prop_assert_eq!(&at_once, &stepwise);
        prop_assert_eq!(serde_json::to_string(&at_once).unwrap(), serde_json::to_string(&stepwise).unwrap());
        prop_assert!(at_once.sessions.live().all(|session| !session.stage.is_ended()));
        prop_assert!(at_once.relationships.all().filter(|r| r.status == Standing::Active).count() >= at_once.relationships.counts().0);
    }
}
