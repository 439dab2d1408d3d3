//! `neuron export --format fhir`: the log's handshake-relevant records as a FHIR R4 `Bundle` of
//! `AuditEvent` resources. The mapping is documented in `docs/fhir.md`; consent decisions follow
//! the IHE Basic Audit Log Patterns consent-authorization pattern (type DCM 110113 "Security
//! Alert", subtype AuthZ-Consent).

use std::collections::HashMap;

use neuron_events::event::{ErrorCode, EventData};
use neuron_events::Record;
use serde_json::{json, Value};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const BALP_AUTHZ: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType";
const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const NEURON_ID: &str = "urn:neuron:patient-agent";

/// What the converter remembers of each session, to name the patient on every record of it.
#[derive(Default, Clone)]
struct SessionFacts {
    peer: Option<String>,
    patient: Option<String>,
    provider: Option<String>,
}

/// Writes the bundle as records are folded in, in log order: one entry per line, nothing held
/// back, so that memory does not grow with the log.
pub struct BundleWriter<W: std::io::Write> {
    out: W,
    organization_npi: Option<String>,
    sessions: HashMap<String, SessionFacts>,
    entries: u64,
}

impl SessionFacts {
    /// Takes in what `event` says of the session's peer, patient and provider.
    fn learn(&mut self, event: &EventData) {
        match event {
            EventData::ConnectionAccepted(data) => self.peer = Some(data.peer.clone()),
            EventData::ConnectionQueued(data) => self.peer = Some(data.peer.clone()),
            EventData::ConnectionRejected(data) => self.peer = Some(data.peer.clone()),
            EventData::HandshakeStarted(data) => {
                self.patient = Some(data.patient_agent_id.clone());
            }
            EventData::ConsentVerified(data) => {
                self.patient = Some(data.patient_agent_id.clone());
                self.provider = Some(data.provider_npi.clone());
            }
            _ => {}
        }
    }
}

/// The audit pattern a record follows: its `type` and `subtype` codings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    /// A step of the patient agent's authentication (DCM 110114, Login).
    Login,
    /// The connection's end (DCM 110114, Logout).
    Logout,
    /// A consent decision (DCM 110113 Security Alert, BALP AuthZ-Consent).
    Consent,
}

impl Pattern {
    fn codings(self) -> (Value, Vec<Value>) {
        match self {
            Pattern::Login => (
                coding(DCM, "110114", "User Authentication"),
                vec![coding(DCM, "110122", "Login")],
            ),
            Pattern::Logout => (
                coding(DCM, "110114", "User Authentication"),
                vec![coding(DCM, "110123", "Logout")],
            ),
            Pattern::Consent => (
                coding(DCM, "110113", "Security Alert"),
                vec![coding(
                    BALP_AUTHZ,
                    "AuthZ-Consent",
                    "Authorization Decision using Roles and Consent",
                )],
            ),
        }
    }
}

/// What one record is as an audit event, decided from the record alone.
#[derive(Debug)]
struct Classified {
    pattern: Pattern,
    /// FHIR's action: `C` create, `D` delete, `E` execute.
    action: &'static str,
    /// [`outcome_of`]'s scale.
    outcome: &'static str,
    description: String,
    /// The entities the record names itself.
    entities: Vec<Value>,
    /// The provider the record names when its session does not (a termination).
    provider: Option<String>,
}

/// The audit event a record is, or `None` for records that are not about a handshake or a
/// relationship. Pure: the session's facts and the writing come after.
fn classify(event: &EventData) -> Option<Classified> {
    let plain = |pattern, action, outcome, description| Classified {
        pattern,
        action,
        outcome,
        description,
        entities: Vec::new(),
        provider: None,
    };
    let told = || crate::investigate::describe(event);
    let classified = match event {
        EventData::ConnectionAccepted(_)
        | EventData::ConnectionQueued(_)
        | EventData::ConnectionPromoted(_)
        | EventData::HandshakeStarted(_)
        | EventData::ChallengeIssued(_)
        | EventData::ChallengeVerified(_) => plain(Pattern::Login, "E", "0", told()),
        EventData::ConnectionQueueTimeout(_) | EventData::ConnectionRejected(_) => {
            plain(Pattern::Login, "E", "4", told())
        }
        EventData::ConsentVerified(data) => Classified {
            entities: vec![
                provider_entity(&data.provider_npi),
                consent_entity(&data.consented_actions),
            ],
            ..plain(
                Pattern::Consent,
                "E",
                "0",
                "consent verified: authorization permitted".to_string(),
            )
        },
        EventData::RelationshipEstablished(data) => Classified {
            entities: vec![
                relationship_entity(&data.relationship_id),
                consent_entity(&data.consented_actions),
            ],
            ..plain(
                Pattern::Consent,
                "C",
                "0",
                "care relationship established".to_string(),
            )
        },
        EventData::HandshakeCompleted(data) => Classified {
            entities: vec![relationship_entity(&data.relationship_id)],
            ..plain(Pattern::Login, "E", "0", told())
        },
        EventData::HandshakeFailed(data) => {
            let pattern = match data.code {
                ErrorCode::ConsentFailed | ErrorCode::ProviderNotFound => Pattern::Consent,
                _ => Pattern::Login,
            };
            plain(
                pattern,
                "E",
                outcome_of(data.code),
                format!("{}: {}", data.code, data.reason),
            )
        }
        EventData::ConnectionTimeout(data) => plain(
            Pattern::Login,
            "E",
            outcome_of(data.code),
            format!("{} at {}", data.code, data.stage),
        ),
        EventData::ConnectionClosed(_) => plain(Pattern::Logout, "E", "4", told()),
        EventData::RelationshipTerminated(data) => Classified {
            entities: vec![relationship_entity(&data.relationship_id)],
            provider: Some(data.provider_npi.clone()),
            ..plain(
                Pattern::Consent,
                "D",
                "0",
                format!("relationship terminated by {}: {}", data.by, data.reason),
            )
        },
        _ => return None,
    };
    Some(classified)
}

/// The `AuditEvent` resource of `record`, classified, with its session's facts.
fn audit_event(
    record: &Record,
    audit: Classified,
    facts: &SessionFacts,
    organization: &str,
) -> Value {
    let mut entities = audit.entities;
    if let Some(session) = &record.session {
        entities.push(json!({"what": {"identifier": {"system": "urn:neuron:session", "value": session}}, "description": "session"}));
    }
    if let Some(provider) = &facts.provider {
        if !entities
            .iter()
            .any(|entity| entity["description"] == "provider")
        {
            entities.push(provider_entity(provider));
        }
    }
    let mut requestor = json!({
        "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PAT", "patient")]},
        "who": {"identifier": {"system": NEURON_ID, "value": facts.patient.as_deref().unwrap_or("unknown")}},
        "requestor": true
    });
    if let Some(peer) = &facts.peer {
        let address = peer
            .rsplit_once(':')
            .map_or(peer.as_str(), |(host, _)| host);
        requestor["network"] = json!({"address": address, "type": "2"});
    }
    let neuron = json!({
        "type": {"coding": [coding(DCM, "110153", "Source Role ID")]},
        "who": {"identifier": {"system": NPI, "value": organization}, "display": "Neuron"},
        "requestor": false
    });
    let (event_type, subtypes) = audit.pattern.codings();
    json!({
        "resourceType": "AuditEvent",
        "id": format!("neuron-{}", record.seq),
        "type": event_type,
        "subtype": subtypes,
        "action": audit.action,
        "recorded": record.at.to_string(),
        "outcome": audit.outcome,
        "outcomeDesc": audit.description,
        "agent": [requestor, neuron],
        "source": {
            "observer": {"identifier": {"system": NPI, "value": organization}, "display": "Neuron"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]
        },
        "entity": entities,
    })
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// `0` success, `4` minor failure (malformed input, timeouts, disconnects), `8` serious failure
/// (consent or provider refused), `12` major failure (the Neuron could not record).
fn outcome_of(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidMessage | ErrorCode::AuthTimeout | ErrorCode::ChallengeTimeout => "4",
        ErrorCode::ConsentFailed | ErrorCode::ProviderNotFound => "8",
        ErrorCode::ServerError => "12",
    }
}

impl<W: std::io::Write> BundleWriter<W> {
    /// Starts the bundle on `out`.
    ///
    /// # Errors
    /// The writer's error.
    pub fn start(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[")?;
        Ok(Self {
            out,
            organization_npi: None,
            sessions: HashMap::new(),
            entries: 0,
        })
    }

    /// Folds one record in; records that are not about a handshake or a relationship add nothing.
    ///
    /// # Errors
    /// The writer's error.
    pub fn add(&mut self, record: &Record) -> std::io::Result<()> {
        if let EventData::ServerStarted(started) = &record.event {
            self.organization_npi = Some(started.organization_npi.clone());
            return Ok(());
        }
        let mut facts = match &record.session {
            Some(session) => {
                let facts = self.sessions.entry(session.clone()).or_default();
                facts.learn(&record.event);
                facts.clone()
            }
            None => SessionFacts::default(),
        };
        let Some(audit) = classify(&record.event) else {
            return Ok(());
        };
        if let Some(provider) = &audit.provider {
            facts.provider = Some(provider.clone());
        }
        let organization = self.organization_npi.as_deref().unwrap_or("unknown");
        let entry = json!({
            "fullUrl": format!("urn:neuron:audit:{}", record.seq),
            "resource": audit_event(record, audit, &facts, organization),
        });
        self.out
            .write_all(if self.entries == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut self.out, &entry)?;
        self.entries += 1;
        Ok(())
    }

    /// Closes the bundle and returns how many entries it holds.
    ///
    /// # Errors
    /// The writer's error.
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.entries)
    }
}

fn provider_entity(npi: &str) -> Value {
    json!({"what": {"identifier": {"system": NPI, "value": npi}}, "description": "provider"})
}

fn relationship_entity(id: &str) -> Value {
    json!({"what": {"identifier": {"system": "urn:neuron:relationship", "value": id}}, "description": "relationship"})
}

fn consent_entity(actions: &[String]) -> Value {
    json!({
        "description": "consent",
        "detail": [{"type": "consented_actions", "valueString": serde_json::to_string(actions).unwrap_or_default()}]
    })
}

#[cfg(test)]
mod tests {
    use neuron_events::event::*;

    use super::{classify, Pattern};

    #[test]
    fn a_termination_is_a_consent_deletion_naming_its_provider() {
        let classified = classify(&EventData::RelationshipTerminated(RelationshipTerminated {
            relationship_id: "r-1".into(),
            provider_npi: "1234567893".into(),
            reason: "moved away".into(),
            by: "api".into(),
        }));
        let Some(audit) = classified else {
            panic!("a termination is audited");
        };
        assert_eq!((audit.pattern, audit.action), (Pattern::Consent, "D"));
        assert_eq!(audit.provider.as_deref(), Some("1234567893"));
        assert_eq!(
            audit.description,
            "relationship terminated by api: moved away"
        );
    }

    #[test]
    fn a_refusal_is_graded_by_its_code_and_a_disconnect_is_a_logout() {
        let failed = |code| {
            classify(&EventData::HandshakeFailed(HandshakeFailed {
                stage: Stage::Consent,
                code,
                reason: "why".into(),
                provider_npi: None,
            }))
            .map(|audit| (audit.pattern, audit.outcome))
        };
        assert_eq!(
            failed(ErrorCode::ConsentFailed),
            Some((Pattern::Consent, "8"))
        );
        assert_eq!(
            failed(ErrorCode::InvalidMessage),
            Some((Pattern::Login, "4"))
        );
        assert_eq!(failed(ErrorCode::ServerError), Some((Pattern::Login, "12")));
        let closed = classify(&EventData::ConnectionClosed(ConnectionClosed {
            by: ClosedBy::Client,
            code: None,
            stage: Stage::Auth,
            reason: None,
        }));
        assert_eq!(closed.map(|audit| audit.pattern), Some(Pattern::Logout));
    }

    #[test]
    fn records_about_neither_a_handshake_nor_a_relationship_are_left_out() {
        let removed = EventData::ProviderRemoved(ProviderChanged {
            npi: "1234567893".into(),
            name: "Demo".into(),
            by: ChangeSource::Config,
        });
        assert!(classify(&removed).is_none());
    }
}
