//! The handshake state machine alone: inputs in, events and effects out. No socket, no runtime.

use ed25519_dalek::{Signer, SigningKey};
use neuron_events::b64;
use neuron_events::event::*;
use neuron_events::{Digest, Event, Record, Timestamp};
use neuron_handshake::wire::ServerMessage;
use neuron_handshake::{step, CloseCode, Context, Effect, Input, Phase, Transition};
use neuron_projections::{ProvidersView, RelationshipsView, Views};

const PROVIDER: &str = "1234567893";
const PATIENT: &str = "patient-agent-ada";
const NOW_SECONDS: i64 = 1_795_687_200;

fn patient_key() -> SigningKey {
    SigningKey::from_bytes(&[0x21; 32])
}

fn claims(patient: &str, provider: &str, iat: i64, exp: i64) -> String {
    format!(
        r#"{{"patient_agent_id":"{patient}","provider_npi":"{provider}","consented_actions":["read:observations"],"iat":{iat},"exp":{exp}}}"#
    )
}

fn auth_frame(key: &SigningKey, payload: &str, patient: &str) -> String {
    let signature = key.sign(payload.as_bytes());
    serde_json::json!({
        "type": "handshake.auth",
        "consent_token_payload": b64::encode(payload),
        "consent_token_signature": b64::encode(signature.to_bytes()),
        "patient_agent_id": patient,
        "patient_public_key": b64::encode(key.verifying_key().as_bytes()),
        "patient_endpoint": "wss://ada.example/agent",
    })
    .to_string()
}

fn good_auth() -> String {
    auth_frame(
        &patient_key(),
        &claims(PATIENT, PROVIDER, NOW_SECONDS - 60, NOW_SECONDS + 3600),
        PATIENT,
    )
}

fn response(key: &SigningKey, nonce: &[u8; 32]) -> String {
    serde_json::json!({"type": "handshake.challenge_response", "signed_nonce": b64::encode(key.sign(nonce).to_bytes())}).to_string()
}

/// Views holding the registered provider and, optionally, an active relationship with `key`.
fn views(existing_key: Option<&SigningKey>) -> Views {
    let mut events = vec![EventData::ProviderRegistered(ProviderChanged {
        npi: PROVIDER.into(),
        name: "Demo Provider".into(),
        by: ChangeSource::Config,
    })];
    if let Some(key) = existing_key {
        events.push(EventData::RelationshipEstablished(
            RelationshipEstablished {
                relationship_id: "rel-1".into(),
                patient_agent_id: PATIENT.into(),
                provider_npi: PROVIDER.into(),
                patient_public_key: b64::encode(key.verifying_key().as_bytes()),
                patient_endpoint: "wss://ada.example/agent".into(),
                consented_actions: vec![],
            },
        ));
    }
    let mut views = Views::default();
    for (index, data) in events.into_iter().enumerate() {
        let event = Event::global(data);
        views.apply(&Record {
            seq: index as u64 + 1,
            at: Timestamp::saturating_from_millis(0),
            session: None,
            event: event.data,
            prev: Digest::GENESIS,
            hash: Digest::GENESIS,
        });
    }
    views
}

fn context<'a>(
    providers: &'a ProvidersView,
    relationships: &'a RelationshipsView,
    now_seconds: i64,
) -> Context<'a> {
    Context {
        now: Timestamp::saturating_from_millis(now_seconds * 1000),
        nonce: [7; 32],
        new_relationship_id: "rel-new".into(),
        organization_npi: "1245319599",
        public_url: "http://localhost:3000",
        providers,
        relationships,
    }
}

fn kinds(transition: &Transition) -> Vec<&'static str> {
    transition.events.iter().map(EventData::kind).collect()
}

fn error_of(transition: &Transition) -> (ErrorCode, u16) {
    let code = transition.effects.iter().find_map(|effect| match effect {
        Effect::Send(ServerMessage::Error { code, .. }) => Some(*code),
        _ => None,
    });
    let close = transition.effects.iter().find_map(|effect| match effect {
        Effect::Close(code) => Some(*code),
        _ => None,
    });
    (
        code.expect("an error frame"),
        close.expect("a close").code(),
    )
}

fn failure(transition: &Transition) -> HandshakeFailed {
    transition
        .events
        .iter()
        .find_map(|event| match event {
            EventData::HandshakeFailed(failed) => Some(failed.clone()),
            _ => None,
        })
        .expect("a handshake_failed event")
}

#[test]
fn a_new_patient_is_challenged_then_gets_a_new_relationship() {
    let views = views(None);
    let context = context(&views.providers, &views.relationships, NOW_SECONDS);
    let challenged = step(&Phase::AwaitingAuth, Input::Text(good_auth()), &context);
    assert_eq!(
        kinds(&challenged),
        [
            "connection.handshake_started",
            "consent.verified",
            "connection.challenge_issued"
        ]
    );
    assert!(
        matches!(&challenged.events[2], EventData::ChallengeIssued(issued) if issued.relationship.is_none() && issued.nonce == "07".repeat(32))
    );
    assert_eq!(challenged.effects[1], Effect::StartChallengeTimer);
    assert!(matches!(challenged.next, Phase::Challenged(_)));

    let completed = step(
        &challenged.next,
        Input::Text(response(&patient_key(), &[7; 32])),
        &context,
    );
    assert_eq!(
        kinds(&completed),
        [
            "connection.challenge_verified",
            "consent.relationship_established",
            "connection.handshake_completed"
        ]
    );
    assert_eq!(
        completed.effects,
        vec![
            Effect::Send(ServerMessage::Complete {
                relationship_id: "rel-new".into(),
                provider_endpoint: "http://localhost:3000/ws/provider/1234567893".into(),
                status: RelationshipStatus::New,
                receipt: None,
            }),
            Effect::Close(CloseCode::Normal)
        ]
    );
    assert_eq!(completed.next, Phase::Ended);
}

#[test]
fn an_existing_relationship_still_requires_the_challenge_and_the_same_key() {
    let views = views(Some(&patient_key()));
    let context = context(&views.providers, &views.relationships, NOW_SECONDS);
    let challenged = step(&Phase::AwaitingAuth, Input::Text(good_auth()), &context);
    assert!(
        matches!(&challenged.events[2], EventData::ChallengeIssued(issued) if issued.relationship.as_deref() == Some("rel-1"))
    );
    let completed = step(
        &challenged.next,
        Input::Text(response(&patient_key(), &[7; 32])),
        &context,
    );
    assert_eq!(
        kinds(&completed),
        [
            "connection.challenge_verified",
            "connection.handshake_completed"
        ]
    );
    assert!(
        matches!(&completed.events[1], EventData::HandshakeCompleted(done) if done.relationship_id == "rel-1" && done.status == RelationshipStatus::Existing)
    );

    // A captured token replayed with another key is refused before any challenge.
    let thief = SigningKey::from_bytes(&[0x66; 32]);
    let replay = auth_frame(
        &thief,
        &claims(PATIENT, PROVIDER, NOW_SECONDS - 60, NOW_SECONDS + 3600),
        PATIENT,
    );
    let refused = step(&Phase::AwaitingAuth, Input::Text(replay), &context);
    assert_eq!(error_of(&refused), (ErrorCode::ConsentFailed, 4003));
    assert_eq!(failure(&refused).provider_npi.as_deref(), Some(PROVIDER));
}

#[test]
fn consent_failures_get_their_codes_and_an_unverified_token_names_no_provider() {
    let views = views(None);
    let context = context(&views.providers, &views.relationships, NOW_SECONDS);
    let key = patient_key();
    let good_claims = claims(PATIENT, PROVIDER, NOW_SECONDS - 60, NOW_SECONDS + 3600);
    let tampered = {
        let mut frame: serde_json::Value =
            serde_json::from_str(&auth_frame(&key, &good_claims, PATIENT)).unwrap();
        frame["consent_token_payload"] = b64::encode(good_claims.replace("read", "write")).into();
        frame.to_string()
    };
    let cases = [
        (tampered, ErrorCode::ConsentFailed, 4003, None, "signature"),
        (
            auth_frame(&key, "not claims", PATIENT),
            ErrorCode::InvalidMessage,
            4003,
            None,
            "claims",
        ),
        (
            auth_frame(
                &key,
                &claims(PATIENT, PROVIDER, NOW_SECONDS - 7200, NOW_SECONDS),
                PATIENT,
            ),
            ErrorCode::ConsentFailed,
            4003,
            Some(PROVIDER),
            "expired",
        ),
        (
            auth_frame(
                &key,
                &claims(PATIENT, PROVIDER, NOW_SECONDS + 61, NOW_SECONDS + 7200),
                PATIENT,
            ),
            ErrorCode::ConsentFailed,
            4003,
            Some(PROVIDER),
            "future",
        ),
        (
            auth_frame(&key, &good_claims, "someone-else"),
            ErrorCode::ConsentFailed,
            4003,
            Some(PROVIDER),
            "patient_agent_id",
        ),
        (
            auth_frame(
                &key,
                &claims(PATIENT, "1234567894", NOW_SECONDS - 60, NOW_SECONDS + 3600),
                PATIENT,
            ),
            ErrorCode::ProviderNotFound,
            4003,
            Some("1234567894"),
            "check digit",
        ),
        (
            auth_frame(
                &key,
                &claims(PATIENT, "1003000126", NOW_SECONDS - 60, NOW_SECONDS + 3600),
                PATIENT,
            ),
            ErrorCode::ProviderNotFound,
            4003,
            Some("1003000126"),
            "not a provider",
        ),
    ];
    for (frame, code, close, provider, words) in cases {
        let transition = step(&Phase::AwaitingAuth, Input::Text(frame), &context);
        assert_eq!(
            kinds(&transition),
            [
                "connection.handshake_started",
                "connection.handshake_failed"
            ],
            "{words}"
        );
        assert_eq!(error_of(&transition), (code, close), "{words}");
        let failed = failure(&transition);
        assert_eq!(
            (failed.stage, failed.provider_npi.as_deref()),
            (Stage::Consent, provider),
            "{words}"
        );
        assert!(failed.reason.contains(words), "{words}: {}", failed.reason);
        assert_eq!(transition.next, Phase::Ended);
    }
}

#[test]
fn malformed_and_misplaced_frames_are_invalid_messages() {
    let views = views(None);
    let context = context(&views.providers, &views.relationships, NOW_SECONDS);
    for input in [
        Input::Text("{".into()),
        Input::Binary,
        Input::Text(response(&patient_key(), &[7; 32])),
    ] {
        let transition = step(&Phase::AwaitingAuth, input, &context);
        assert_eq!(kinds(&transition), ["connection.handshake_failed"]);
        assert_eq!(error_of(&transition), (ErrorCode::InvalidMessage, 4002));
    }
    let challenged = step(&Phase::AwaitingAuth, Input::Text(good_auth()), &context).next;
    let again = step(&challenged, Input::Text(good_auth()), &context);
    assert_eq!(error_of(&again), (ErrorCode::InvalidMessage, 4002));
    assert_eq!(failure(&again).stage, Stage::Challenge);
    let oversized = step(&challenged, Input::Oversized, &context);
    assert_eq!(error_of(&oversized), (ErrorCode::InvalidMessage, 1009));
}

#[test]
fn a_wrong_nonce_signature_or_a_token_expiring_meanwhile_fails_the_challenge() {
    let views = views(None);
    let context = context(&views.providers, &views.relationships, NOW_SECONDS);
    let challenged = step(&Phase::AwaitingAuth, Input::Text(good_auth()), &context).next;
    let wrong = step(
        &challenged,
        Input::Text(response(&patient_key(), &[8; 32])),
        &context,
    );
    assert_eq!(error_of(&wrong), (ErrorCode::ConsentFailed, 4003));
    assert_eq!(failure(&wrong).stage, Stage::Challenge);

    let later = self::context(&views.providers, &views.relationships, NOW_SECONDS + 3600);
    let expired = step(
        &challenged,
        Input::Text(response(&patient_key(), &[7; 32])),
        &later,
    );
    assert!(failure(&expired)
        .reason
        .contains("expired before the challenge was answered"));
}

#[test]
fn timers_disconnects_shutdown_and_commit_failures_end_the_session_once() {
    let views = views(None);
    let context = context(&views.providers, &views.relationships, NOW_SECONDS);
    let auth_timeout = step(&Phase::AwaitingAuth, Input::AuthTimerFired, &context);
    assert_eq!(kinds(&auth_timeout), ["connection.timeout"]);
    assert_eq!(error_of(&auth_timeout), (ErrorCode::AuthTimeout, 4001));

    let challenged = step(&Phase::AwaitingAuth, Input::Text(good_auth()), &context).next;
    assert_eq!(
        error_of(&step(&challenged, Input::ChallengeTimerFired, &context)),
        (ErrorCode::ChallengeTimeout, 4001)
    );
    let stale = step(&challenged, Input::AuthTimerFired, &context);
    assert!(stale.events.is_empty() && stale.effects.is_empty() && stale.next == challenged);

    let gone = step(&challenged, Input::Disconnected { code: 1000 }, &context);
    assert_eq!(
        gone.events,
        vec![EventData::ConnectionClosed(ConnectionClosed {
            by: ClosedBy::Client,
            code: Some(1000),
            stage: Stage::Challenge,
            reason: None,
        })]
    );
    assert!(gone.effects.is_empty());

    let shutdown = step(&Phase::AwaitingAuth, Input::ShuttingDown, &context);
    assert_eq!(shutdown.effects, vec![Effect::Close(CloseCode::GoingAway)]);

    let broken = step(&challenged, Input::CommitFailed, &context);
    assert!(
        broken.events.is_empty(),
        "nothing can be logged when the log cannot be written"
    );
    assert_eq!(error_of(&broken), (ErrorCode::ServerError, 1011));

    let after = step(&Phase::Ended, Input::Text(good_auth()), &context);
    assert!(after.events.is_empty() && after.effects.is_empty());
}

/// `views` with one more event applied, as a change an operator made during a handshake.
fn changed(mut views: Views, data: EventData) -> Views {
    views.apply(&Record {
        seq: 99,
        at: Timestamp::saturating_from_millis(0),
        session: None,
        event: data,
        prev: Digest::GENESIS,
        hash: Digest::GENESIS,
    });
    views
}

#[test]
fn a_change_made_during_the_handshake_wins_over_its_answer() {
    let key = patient_key();
    // Challenged on a new relationship, then the provider is removed before the answer.
    let before = views(None);
    let challenged = step(
        &Phase::AwaitingAuth,
        Input::Text(good_auth()),
        &context(&before.providers, &before.relationships, NOW_SECONDS),
    );
    let removed = changed(
        before.clone(),
        EventData::ProviderRemoved(ProviderChanged {
            npi: PROVIDER.into(),
            name: "Demo Provider".into(),
            by: ChangeSource::Api,
        }),
    );
    let answered = step(
        &challenged.next,
        Input::Text(response(&key, &[7; 32])),
        &context(&removed.providers, &removed.relationships, NOW_SECONDS),
    );
    assert_eq!(
        kinds(&answered),
        [
            "connection.challenge_verified",
            "connection.handshake_failed"
        ]
    );
    assert_eq!(error_of(&answered), (ErrorCode::ProviderNotFound, 4003));
    assert_eq!(
        failure(&answered).reason,
        "provider 1234567893 was removed during the handshake"
    );

    // Challenged on an existing relationship, then it is terminated before the answer: no new
    // relationship is made from the consent shown before the termination.
    let existing = views(Some(&key));
    let challenged = step(
        &Phase::AwaitingAuth,
        Input::Text(good_auth()),
        &context(&existing.providers, &existing.relationships, NOW_SECONDS),
    );
    let terminated = changed(
        existing,
        EventData::RelationshipTerminated(RelationshipTerminated {
            relationship_id: "rel-1".into(),
            provider_npi: PROVIDER.into(),
            reason: "patient moved away".into(),
            by: "api".into(),
        }),
    );
    let answered = step(
        &challenged.next,
        Input::Text(response(&key, &[7; 32])),
        &context(
            &terminated.providers,
            &terminated.relationships,
            NOW_SECONDS,
        ),
    );
    assert_eq!(
        kinds(&answered),
        [
            "connection.challenge_verified",
            "connection.handshake_failed"
        ]
    );
    assert_eq!(error_of(&answered), (ErrorCode::ConsentFailed, 4003));
    assert_eq!(
        failure(&answered).reason,
        "relationship rel-1 was terminated during the handshake"
    );
}

#[test]
fn a_client_that_does_not_read_is_cut_off_with_one_record() {
    let before = views(None);
    let context = context(&before.providers, &before.relationships, NOW_SECONDS);
    let cut = step(&Phase::AwaitingAuth, Input::WriteTimedOut, &context);
    assert_eq!(cut.next, Phase::Ended);
    assert_eq!(
        cut.events,
        vec![EventData::ConnectionClosed(ConnectionClosed {
            by: ClosedBy::Server,
            code: Some(1006),
            stage: Stage::Auth,
            reason: None,
        })]
    );
    assert!(cut.effects.is_empty(), "nothing more can be sent to it");
}

/// The views after a transition's events are committed, as the shell applies them.
fn committed(mut views: Views, transition: &Transition) -> Views {
    for (index, data) in transition.events.iter().enumerate() {
        views.apply(&Record {
            seq: 100 + index as u64,
            at: Timestamp::saturating_from_millis(0),
            session: Some("session-a".into()),
            event: data.clone(),
            prev: Digest::GENESIS,
            hash: Digest::GENESIS,
        });
    }
    views
}

#[test]
fn of_two_sessions_challenged_as_new_the_second_to_decide_sees_the_first_ones_relationship() {
    // Both sessions of one pair are challenged before either answers: both challenges say `new`.
    let before = views(None);
    let first_key = patient_key();
    let other_key = SigningKey::from_bytes(&[0x31; 32]);
    let challenge = |key: &SigningKey| {
        let auth = auth_frame(
            key,
            &claims(PATIENT, PROVIDER, NOW_SECONDS - 60, NOW_SECONDS + 3600),
            PATIENT,
        );
        step(
            &Phase::AwaitingAuth,
            Input::Text(auth),
            &context(&before.providers, &before.relationships, NOW_SECONDS),
        )
    };
    let first = challenge(&first_key);
    let same_key = challenge(&first_key);
    let another_key = challenge(&other_key);
    for challenged in [&first, &same_key, &another_key] {
        assert!(
            matches!(&challenged.events[2], EventData::ChallengeIssued(issued) if issued.relationship.is_none())
        );
    }

    // The first answer decides and commits: a new relationship.
    let established = step(
        &first.next,
        Input::Text(response(&first_key, &[7; 32])),
        &context(&before.providers, &before.relationships, NOW_SECONDS),
    );
    assert!(kinds(&established).contains(&"consent.relationship_established"));
    let after = committed(before, &established);

    // The others decide only after that commit (the shell's pair lock): with the same key they
    // reuse it; with another key they are refused, and establish nothing.
    let mut later = context(&after.providers, &after.relationships, NOW_SECONDS);
    later.new_relationship_id = "rel-second".into();
    let reused = step(
        &same_key.next,
        Input::Text(response(&first_key, &[7; 32])),
        &later,
    );
    assert_eq!(
        reused.effects[0],
        Effect::Send(ServerMessage::Complete {
            relationship_id: "rel-new".into(),
            provider_endpoint: "http://localhost:3000/ws/provider/1234567893".into(),
            status: RelationshipStatus::Existing,
            receipt: None,
        })
    );
    assert!(!kinds(&reused).contains(&"consent.relationship_established"));
    let refused = step(
        &another_key.next,
        Input::Text(response(&other_key, &[7; 32])),
        &later,
    );
    assert_eq!(
        kinds(&refused),
        [
            "connection.challenge_verified",
            "connection.handshake_failed"
        ]
    );
    assert_eq!(error_of(&refused), (ErrorCode::ConsentFailed, 4003));
    assert_eq!(
        failure(&refused).reason,
        "another key established this relationship"
    );
}

#[test]
fn an_agent_that_asks_for_a_receipt_gets_its_completion_sent_with_one_and_others_never() {
    let before = views(None);
    let context = context(&before.providers, &before.relationships, NOW_SECONDS);
    let mut auth: serde_json::Value = serde_json::from_str(&good_auth()).unwrap();
    auth["receipt"] = true.into();
    let challenged = step(
        &Phase::AwaitingAuth,
        Input::Text(auth.to_string()),
        &context,
    );
    let completed = step(
        &challenged.next,
        Input::Text(response(&patient_key(), &[7; 32])),
        &context,
    );
    assert!(
        matches!(
            &completed.effects[0],
            Effect::SendWithReceipt(ServerMessage::Complete { receipt: None, .. })
        ),
        "{:?}",
        completed.effects
    );
    // The frame without a receipt is the v1 frame, byte for byte.
    let Effect::SendWithReceipt(message) = &completed.effects[0] else {
        unreachable!()
    };
    assert_eq!(
        message.to_text(),
        r#"{"type":"handshake.complete","relationship_id":"rel-new","provider_endpoint":"http://localhost:3000/ws/provider/1234567893","status":"new"}"#
    );
    // `false`, or no field at all: no receipt. Anything else is not a valid auth.
    auth["receipt"] = false.into();
    let plain = step(
        &Phase::AwaitingAuth,
        Input::Text(auth.to_string()),
        &context,
    );
    let done = step(
        &plain.next,
        Input::Text(response(&patient_key(), &[7; 32])),
        &context,
    );
    assert!(matches!(done.effects[0], Effect::Send(_)));
    auth["receipt"] = "yes".into();
    let refused = step(
        &Phase::AwaitingAuth,
        Input::Text(auth.to_string()),
        &context,
    );
    assert_eq!(error_of(&refused), (ErrorCode::InvalidMessage, 4002));
    assert_eq!(
        failure(&refused).reason,
        "field receipt must be true or false"
    );
}
