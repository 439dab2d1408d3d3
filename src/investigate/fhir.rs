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
        let facts = record
            .session
            .as_ref()
            .map(|session| self.sessions.entry(session.clone()).or_default());
        let mut facts_now = SessionFacts::default();
        if let Some(facts) = facts {
            match &record.event {
                EventData::ConnectionAccepted(data) => facts.peer = Some(data.peer.clone()),
                EventData::ConnectionQueued(data) => facts.peer = Some(data.peer.clone()),
                EventData::ConnectionRejected(data) => facts.peer = Some(data.peer.clone()),
                EventData::HandshakeStarted(data) => {
                    facts.patient = Some(data.patient_agent_id.clone())
                }
                EventData::ConsentVerified(data) => {
                    facts.patient = Some(data.patient_agent_id.clone());
                    facts.provider = Some(data.provider_npi.clone());
                }
                _ => {}
            }
            facts_now = facts.clone();
        }
        let consent = (
            coding(DCM, "110113", "Security Alert"),
            vec![coding(
                BALP_AUTHZ,
                "AuthZ-Consent",
                "Authorization Decision using Roles and Consent",
            )],
        );
        let login = (
            coding(DCM, "110114", "User Authentication"),
            vec![coding(DCM, "110122", "Login")],
        );
        let logout = (
            coding(DCM, "110114", "User Authentication"),
            vec![coding(DCM, "110123", "Logout")],
        );
        let mut entities = Vec::new();
        let ((event_type, subtypes), action, outcome, description): (
            (Value, Vec<Value>),
            &str,
            &str,
            String,
        ) = match &record.event {
            EventData::ConnectionAccepted(_)
            | EventData::ConnectionQueued(_)
            | EventData::ConnectionPromoted(_)
            | EventData::HandshakeStarted(_)
            | EventData::ChallengeIssued(_)
            | EventData::ChallengeVerified(_) => {
                (login, "E", "0", crate::investigate::describe(&record.event))
            }
            EventData::ConnectionQueueTimeout(_) | EventData::ConnectionRejected(_) => {
                (login, "E", "4", crate::investigate::describe(&record.event))
            }
            EventData::ConsentVerified(data) => {
                entities.push(json!({"what": {"identifier": {"system": NPI, "value": data.provider_npi}}, "description": "provider"}));
                entities.push(consent_entity(&data.consented_actions));
                (
                    consent,
                    "E",
                    "0",
                    "consent verified: authorization permitted".to_string(),
                )
            }
            EventData::RelationshipEstablished(data) => {
                entities.push(relationship_entity(&data.relationship_id));
                entities.push(consent_entity(&data.consented_actions));
                (
                    consent,
                    "C",
                    "0",
                    "care relationship established".to_string(),
                )
            }
            EventData::HandshakeCompleted(data) => {
                entities.push(relationship_entity(&data.relationship_id));
                (login, "E", "0", crate::investigate::describe(&record.event))
            }
            EventData::HandshakeFailed(data) => {
                let pattern = match data.code {
                    ErrorCode::ConsentFailed | ErrorCode::ProviderNotFound => consent,
                    _ => login,
                };
                (
                    pattern,
                    "E",
                    outcome_of(data.code),
                    format!("{}: {}", data.code.as_str(), data.reason),
                )
            }
            EventData::ConnectionTimeout(data) => (
                login,
                "E",
                outcome_of(data.code),
                format!("{} at {}", data.code.as_str(), data.stage.as_str()),
            ),
            EventData::ConnectionClosed(_) => (
                logout,
                "E",
                "4",
                crate::investigate::describe(&record.event),
            ),
            EventData::RelationshipTerminated(data) => {
                entities.push(relationship_entity(&data.relationship_id));
                facts_now.provider = Some(data.provider_npi.clone());
                (
                    consent,
                    "D",
                    "0",
                    format!("relationship terminated by {}: {}", data.by, data.reason),
                )
            }
            _ => return Ok(()),
        };
        if let Some(session) = &record.session {
            entities.push(json!({"what": {"identifier": {"system": "urn:neuron:session", "value": session}}, "description": "session"}));
        }
        if let Some(provider) = &facts_now.provider {
            if !entities
                .iter()
                .any(|entity| entity["description"] == "provider")
            {
                entities.push(json!({"what": {"identifier": {"system": NPI, "value": provider}}, "description": "provider"}));
            }
        }
        let organization = self
            .organization_npi
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let mut requestor = json!({
            "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PAT", "patient")]},
            "who": {"identifier": {"system": NEURON_ID, "value": facts_now.patient.clone().unwrap_or_else(|| "unknown".into())}},
            "requestor": true
        });
        if let Some(peer) = &facts_now.peer {
            let address = peer
                .rsplit_once(':')
                .map_or(peer.as_str(), |(host, _)| host);
            requestor["network"] = json!({"address": address, "type": "2"});
        }
        let neuron = json!({
            "type": {"coding": [coding("http://dicom.nema.org/resources/ontology/DCM", "110153", "Source Role ID")]},
            "who": {"identifier": {"system": NPI, "value": organization}, "display": "Neuron"},
            "requestor": false
        });
        let resource = json!({
            "resourceType": "AuditEvent",
            "id": format!("neuron-{}", record.seq),
            "type": event_type,
            "subtype": subtypes,
            "action": action,
            "recorded": record.at.to_string(),
            "outcome": outcome,
            "outcomeDesc": description,
            "agent": [requestor, neuron],
            "source": {
                "observer": {"identifier": {"system": NPI, "value": organization}, "display": "Neuron"},
                "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]
            },
            "entity": entities,
        });
        let entry =
            json!({"fullUrl": format!("urn:neuron:audit:{}", record.seq), "resource": resource});
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

fn relationship_entity(id: &str) -> Value {
    json!({"what": {"identifier": {"system": "urn:neuron:relationship", "value": id}}, "description": "relationship"})
}

fn consent_entity(actions: &[String]) -> Value {
    json!({
        "description": "consent",
        "detail": [{"type": "consented_actions", "valueString": serde_json::to_string(actions).unwrap_or_default()}]
    })
}
