//! The investigator's commands that read a log offline: `neuron verify` and `neuron export`. A log
//! is named by a path: a server's data directory (its `log/` inside), a sled log directory, or a
//! JSONL export file.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use neuron_events::{
    b64, verify_jsonl, verify_log, Digest, LogHead, Report, SledLog, VerifyOptions,
};

/// A progress line on standard error while a long command reads a log: only when standard error is
/// a terminal, never on a pipe or in a file.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts one labelled `what`, counting records when `counting` (nothing is shown when stderr
    /// is not a terminal).
    pub fn start(what: &str, counting: bool) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(if counting {
                    "{spinner} {msg}: {human_pos} records ({per_sec}, {elapsed})"
                } else {
                    "{spinner} {msg} ({elapsed})"
                })
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// Counts one more record.
    pub fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Removes the line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Why a log could not be read at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    /// Nothing at the path.
    #[error("{path}: no such file or directory")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A directory that holds no log.
    #[error("{path}: not a data directory, a sled log or a JSONL export")]
    NotALog {
        /// The path.
        path: PathBuf,
    },
    /// The store could not be opened or read.
    #[error("{path}: cannot read the log ({reason}); a running server holds its log locked: verify a copy or an export")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A trusted key or an expected head that is not one.
    #[error("{what}: {reason}")]
    BadArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A log to investigate.
pub enum Source {
    /// A sled log directory.
    Sled(PathBuf),
    /// A JSONL export.
    Jsonl(PathBuf),
}

impl Source {
    /// Finds the log at `path`.
    ///
    /// # Errors
    /// [`InvestigateError::Missing`] or [`InvestigateError::NotALog`].
    pub fn locate(path: &Path) -> Result<Self, InvestigateError> {
        let metadata = std::fs::metadata(path).map_err(|_| InvestigateError::Missing {
            path: path.to_path_buf(),
        })?;
        if metadata.is_file() {
            return Ok(Self::Jsonl(path.to_path_buf()));
        }
        if path.join("log").join("conf").is_file() {
            return Ok(Self::Sled(path.join("log")));
        }
        if path.join("conf").is_file() && path.join("db").is_file() {
            return Ok(Self::Sled(path.to_path_buf()));
        }
        Err(InvestigateError::NotALog {
            path: path.to_path_buf(),
        })
    }

    /// Where the log is, and what kind.
    pub fn describe(&self) -> String {
        match self {
            Self::Sled(path) => format!("{} (sled)", path.display()),
            Self::Jsonl(path) => format!("{} (JSONL export)", path.display()),
        }
    }

    fn open_sled(path: &Path) -> Result<SledLog, InvestigateError> {
        SledLog::open(path).map_err(|error| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
    }

    /// Verifies the log.
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when it cannot be read.
    pub fn verify(&self, options: &VerifyOptions) -> Result<Report, InvestigateError> {
        let unreadable = |path: &Path, reason: String| InvestigateError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        match self {
            Self::Sled(path) => verify_log(&Self::open_sled(path)?, options)
                .map_err(|error| unreadable(path, error.to_string())),
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(path, error.to_string()))?;
                verify_jsonl(file, options).map_err(|error| unreadable(path, error.to_string()))
            }
        }
    }

    /// Writes the records with `from <= seq <= to` as JSONL, byte for byte, and returns how many.
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when the log cannot be read or the output written.
    pub fn export(&self, from: u64, to: u64, out: &mut dyn Write) -> Result<u64, InvestigateError> {
        match self {
            Self::Sled(path) => {
                neuron_events::export::export(&Self::open_sled(path)?, from, to, out).map_err(
                    |error| InvestigateError::Unreadable {
                        path: path.clone(),
                        reason: error.to_string(),
                    },
                )
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| InvestigateError::Unreadable {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
                // The whole log is copied as it is, damaged lines included, so that a re-export
                // hides nothing from verify; a part of it can only be cut where lines are records.
                let whole_log = from <= 1 && to == u64::MAX;
                let mut written = 0;
                for (index, entry) in
                    neuron_events::export::read_jsonl(BufReader::new(file)).enumerate()
                {
                    let unreadable = |reason: String| InvestigateError::Unreadable {
                        path: path.clone(),
                        reason,
                    };
                    let entry = entry.map_err(|error| unreadable(error.to_string()))?;
                    let keep = match neuron_events::record::Envelope::parse(&entry.bytes) {
                        Ok(envelope) => (from..=to).contains(&envelope.seq),
                        Err(_) if whole_log => true,
                        Err(_) => {
                            return Err(unreadable(format!(
                                "line {} is not a record, so a part of the log cannot be cut around it (run neuron verify)",
                                index + 1
                            )))
                        }
                    };
                    if keep {
                        // A last line without its newline (a torn tail) stays without it.
                        let newline: &[u8] = if entry.complete { b"\n" } else { b"" };
                        out.write_all(&entry.bytes)
                            .and_then(|()| out.write_all(newline))
                            .map_err(|error| unreadable(error.to_string()))?;
                        written += 1;
                    }
                }
                Ok(written)
            }
        }
    }
}

/// Reads a trusted key: base64url of the 32-byte public key, or a file holding that.
///
/// # Errors
/// [`InvestigateError::BadArgument`] when it is neither.
pub fn trusted_key(argument: &str) -> Result<VerifyingKey, InvestigateError> {
    let text = match std::fs::read_to_string(argument) {
        Ok(contents) => contents.trim().to_string(),
        Err(_) => argument.trim().to_string(),
    };
    let bad = |reason: &str| InvestigateError::BadArgument {
        what: "--trusted-key",
        reason: reason.to_string(),
    };
    let bytes: [u8; 32] = b64::decode(&text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            bad("not the base64url of a 32-byte Ed25519 public key (nor a file holding one)")
        })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a valid Ed25519 public key"))
}

/// Reads an expected head `SEQ:HEX`.
///
/// # Errors
/// [`InvestigateError::BadArgument`] when it is not one.
pub fn expected_head(argument: &str) -> Result<LogHead, InvestigateError> {
    let bad = || InvestigateError::BadArgument {
        what: "--expect-head",
        reason: "expected SEQ:HEX64".into(),
    };
    let (seq, hash) = argument.split_once(':').ok_or_else(bad)?;
    Ok(LogHead {
        seq: seq.parse().map_err(|_| bad())?,
        hash: Digest::from_hex(hash).map_err(|_| bad())?,
    })
}

/// The human report of a verification.
pub fn report_text(source: &Source, report: &Report, trusted: bool) -> String {
    let mut text = format!(
        "log:             {}\nrecords checked: {}\n",
        source.describe(),
        report.records
    );
    let at = report
        .last_at
        .map(|at| at.to_string())
        .unwrap_or_else(|| "-".into());
    text.push_str(&format!(
        "head:            {} (seq {}, at {})\n",
        report.head, report.last_seq, at
    ));
    match &report.last_checkpoint {
        Some(checkpoint) => text.push_str(&format!(
            "last checkpoint: seq {} covering up to seq {}, signed by {}{}\n",
            checkpoint.seq,
            checkpoint.upto,
            checkpoint.signer,
            if trusted {
                " (the trusted key)"
            } else {
                " (no trusted key given: signer not checked)"
            }
        )),
        None => text.push_str("last checkpoint: none\n"),
    }
    match &report.problem {
        None => text.push_str("result:          INTACT\n"),
        Some(problem) => text.push_str(&format!(
            "result:          NOT INTACT at seq {}{}: {}\n",
            problem.seq,
            problem
                .kind
                .as_ref()
                .map(|kind| format!(" ({kind})"))
                .unwrap_or_default(),
            problem.fault.describe()
        )),
    }
    text
}

impl Source {
    /// Calls `visit` with every record, decoded, in log order. Stops at the first record that does
    /// not decode (verify the log to learn why).
    ///
    /// # Errors
    /// [`InvestigateError::Unreadable`] when the log cannot be read or a record not decoded.
    pub fn for_each_record(&self, visit: &mut dyn FnMut(Record)) -> Result<(), InvestigateError> {
        self.for_each_matching(&|_| true, visit)
    }

    /// As [`Source::for_each_record`], with a progress line on a terminal.
    ///
    /// # Errors
    /// As [`Source::for_each_record`].
    pub fn for_each_record_shown(
        &self,
        what: &str,
        visit: &mut dyn FnMut(Record),
    ) -> Result<(), InvestigateError> {
        let progress = Progress::start(what, true);
        let outcome = self.for_each_matching(&|_| true, &mut |record| {
            progress.tick();
            visit(record);
        });
        progress.finish();
        outcome
    }

    /// As [`Source::for_each_record`], decoding only the records whose bytes `wanted` accepts (a
    /// cheap byte search saves decoding records that cannot matter). Records are read and decoded
    /// on worker threads, and visited in order.
    ///
    /// # Errors
    /// As [`Source::for_each_record`].
    pub fn for_each_matching(
        &self,
        wanted: &(dyn Fn(&[u8]) -> bool + Sync),
        visit: &mut dyn FnMut(Record),
    ) -> Result<(), InvestigateError> {
        let mut failure = None;
        let mut take = |decoded: Result<Record, neuron_events::Error>| {
            if failure.is_some() {
                return;
            }
            match decoded {
                Ok(record) => visit(record),
                Err(error) => failure = Some(error.to_string()),
            }
        };
        let path = match self {
            Self::Sled(path) | Self::Jsonl(path) => path.clone(),
        };
        let unreadable = |reason: String| InvestigateError::Unreadable {
            path: path.clone(),
            reason,
        };
        match self {
            Self::Sled(path) => {
                let log = Self::open_sled(path)?;
                neuron_events::export::decode_log(&log, wanted, &mut take)
                    .map_err(|error| unreadable(error.to_string()))?;
            }
            Self::Jsonl(path) => {
                let file = File::open(path).map_err(|error| unreadable(error.to_string()))?;
                neuron_events::export::decode_jsonl(file, wanted, &mut take)
                    .map_err(|error| unreadable(error.to_string()))?;
            }
        }
        match failure {
            Some(reason) => Err(unreadable(format!(
                "a record does not decode ({reason}); run neuron verify"
            ))),
            None => Ok(()),
        }
    }
}

use neuron_events::event::{ChangeSource, ClosedBy, EventData, RejectReason, RelationshipStatus};
use neuron_events::Record;

/// The entity a timeline follows.
#[derive(Clone, Debug)]
pub enum Subject {
    /// One session.
    Session(String),
    /// Every session of a patient agent, and its relationships' terminations.
    Patient(String),
    /// A relationship: the session that established it, later sessions that reused it, its end.
    Relationship(String),
    /// Every record naming a provider, and the sessions that consented to it.
    Provider(String),
}

/// One line of a timeline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// The record's seq.
    pub seq: u64,
    /// Its time.
    pub at: neuron_events::Timestamp,
    /// Milliseconds since the previous line of the same session (or of the timeline, for records
    /// outside sessions).
    pub since_previous_ms: Option<i64>,
    /// The session, if any.
    pub session: Option<String>,
    /// The event kind.
    pub kind: &'static str,
    /// What happened, in words.
    pub description: String,
}

fn mentions(record: &Record, subject: &Subject) -> bool {
    match (subject, &record.event) {
        (Subject::Session(id), _) => record.session.as_deref() == Some(id.as_str()),
        (Subject::Patient(id), EventData::HandshakeStarted(data)) => &data.patient_agent_id == id,
        (Subject::Patient(id), EventData::ConsentVerified(data)) => &data.patient_agent_id == id,
        (Subject::Patient(id), EventData::RelationshipEstablished(data)) => {
            &data.patient_agent_id == id
        }
        (Subject::Relationship(id), EventData::RelationshipEstablished(data)) => {
            &data.relationship_id == id
        }
        (Subject::Relationship(id), EventData::HandshakeCompleted(data)) => {
            &data.relationship_id == id
        }
        (Subject::Relationship(id), EventData::ChallengeIssued(data)) => &data.relationship == id,
        (Subject::Relationship(id), EventData::RelationshipTerminated(data)) => {
            &data.relationship_id == id
        }
        (Subject::Provider(npi), EventData::ConsentVerified(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::HandshakeFailed(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::HandshakeCompleted(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::RelationshipTerminated(data)) => {
            &data.provider_npi == npi
        }
        (
            Subject::Provider(npi),
            EventData::ProviderRegistered(data) | EventData::ProviderRemoved(data),
        ) => &data.npi == npi,
        _ => false,
    }
}

/// The timeline of `subject`: every record touching it, in order. Two passes over the log: the
/// first finds the sessions involved, the second collects their records.
///
/// # Errors
/// As [`Source::for_each_record`].
pub fn timeline(source: &Source, subject: &Subject) -> Result<Vec<Step>, InvestigateError> {
    let progress = Progress::start("following", false);
    let steps = timeline_steps(source, subject);
    progress.finish();
    steps
}

fn timeline_steps(source: &Source, subject: &Subject) -> Result<Vec<Step>, InvestigateError> {
    let mut sessions = std::collections::HashSet::new();
    let mut relationships = std::collections::HashSet::new();
    let needle = match subject {
        Subject::Session(id)
        | Subject::Patient(id)
        | Subject::Relationship(id)
        | Subject::Provider(id) => id.clone(),
    };
    let finder = memchr::memmem::Finder::new(needle.as_bytes()).into_owned();
    source.for_each_matching(&|bytes| finder.find(bytes).is_some(), &mut |record| {
        if mentions(&record, subject) {
            if let Some(session) = &record.session {
                sessions.insert(session.clone());
            }
            if let EventData::RelationshipEstablished(data) = &record.event {
                relationships.insert(data.relationship_id.clone());
            }
        }
    })?;
    let mut steps = Vec::new();
    let mut previous_in_session: std::collections::HashMap<String, neuron_events::Timestamp> =
        std::collections::HashMap::new();
    let mut previous_outside: Option<neuron_events::Timestamp> = None;
    // A record matters if it names the subject, one of its sessions, or one of its relationships.
    let finders: Vec<memchr::memmem::Finder<'static>> =
        std::iter::once(needle.clone())
            .chain(sessions.iter().map(|session| {
                format!("\"session\":{}", serde_json::Value::from(session.as_str()))
            }))
            .chain(relationships.iter().cloned())
            .map(|text| memchr::memmem::Finder::new(text.as_bytes()).into_owned())
            .collect();
    source.for_each_matching(&|bytes| finders.iter().any(|finder| finder.find(bytes).is_some()), &mut |record| {
        let in_session = record.session.as_ref().is_some_and(|session| sessions.contains(session));
        let terminates_ours = matches!(&record.event, EventData::RelationshipTerminated(data) if relationships.contains(&data.relationship_id));
        if !(in_session || terminates_ours || mentions(&record, subject)) {
            return;
        }
        let previous = match &record.session {
            Some(session) => previous_in_session.insert(session.clone(), record.at),
            None => previous_outside.replace(record.at),
        };
        steps.push(Step {
            seq: record.seq,
            at: record.at,
            since_previous_ms: previous.map(|earlier| record.at.millis() - earlier.millis()),
            session: record.session.clone(),
            kind: record.event.kind(),
            description: describe(&record.event),
        });
    })?;
    Ok(steps)
}

fn seconds(millis: u64) -> String {
    format!("{:.1} s", millis as f64 / 1000.0)
}

/// A record's event in plain language.
pub fn describe(event: &EventData) -> String {
    match event {
        EventData::ServerStarted(data) => format!(
            "Neuron {} started for organization {} (key {})",
            data.version, data.organization_npi, data.public_key
        ),
        EventData::ServerStopping(data) => format!("Neuron stopping ({})", data.reason),
        EventData::ProviderRegistered(data) => format!(
            "provider {} \"{}\" registered (by {})",
            data.npi,
            data.name,
            source_name(data.by)
        ),
        EventData::ProviderRemoved(data) => format!(
            "provider {} \"{}\" removed (by {})",
            data.npi,
            data.name,
            source_name(data.by)
        ),
        EventData::ConnectionAccepted(data) => format!(
            "connection from {} accepted ({} live)",
            data.peer, data.live_sessions
        ),
        EventData::ConnectionQueued(data) => format!(
            "connection from {} queued at position {}",
            data.peer, data.position
        ),
        EventData::ConnectionPromoted(data) => format!(
            "waited {} in the queue, then got a slot",
            seconds(data.waited_ms)
        ),
        EventData::ConnectionQueueTimeout(data) => format!(
            "gave up after {} in the queue: HTTP 503",
            seconds(data.waited_ms)
        ),
        EventData::ConnectionRejected(data) => match data.reason {
            RejectReason::QueueFull => format!(
                "connection from {} refused: queue full (HTTP 503)",
                data.peer
            ),
            RejectReason::Shutdown => format!(
                "connection from {} refused: shutting down (HTTP 503)",
                data.peer
            ),
        },
        EventData::HandshakeStarted(data) => format!(
            "auth from patient agent {} (as claimed), endpoint {}",
            data.patient_agent_id, data.patient_endpoint
        ),
        EventData::ConsentVerified(data) => format!(
            "consent verified: {} for provider {}, actions [{}], token valid until {}",
            data.patient_agent_id,
            data.provider_npi,
            data.consented_actions.join(", "),
            neuron_events::Timestamp::saturating_from_millis(data.exp.saturating_mul(1000))
        ),
        EventData::ChallengeIssued(data) if data.relationship == "new" => {
            "challenge sent (no relationship yet)".into()
        }
        EventData::ChallengeIssued(data) => format!(
            "challenge sent (existing relationship {})",
            data.relationship
        ),
        EventData::ChallengeVerified(_) => "challenge answered: key possession proven".into(),
        EventData::RelationshipEstablished(data) => format!(
            "relationship {} established between {} and provider {} (key {})",
            data.relationship_id, data.patient_agent_id, data.provider_npi, data.patient_public_key
        ),
        EventData::HandshakeCompleted(data) => format!(
            "handshake complete ({} relationship {}); given {}",
            match data.status {
                RelationshipStatus::New => "new",
                RelationshipStatus::Existing => "existing",
            },
            data.relationship_id,
            data.provider_endpoint
        ),
        EventData::HandshakeFailed(data) => format!(
            "refused at {}: {} {}",
            data.stage.as_str(),
            data.code.as_str(),
            data.reason
        ),
        EventData::ConnectionTimeout(data) => format!(
            "timed out at {}: {}",
            data.stage.as_str(),
            data.code.as_str()
        ),
        EventData::ConnectionClosed(data) => format!(
            "closed by the {} with {} at {}",
            match data.by {
                ClosedBy::Client => "client",
                ClosedBy::Server => "server",
            },
            data.code,
            data.stage.as_str()
        ),
        EventData::RelationshipTerminated(data) => format!(
            "relationship {} terminated by {}: {}",
            data.relationship_id, data.by, data.reason
        ),
        EventData::LogCheckpoint(data) => format!("checkpoint signed up to seq {}", data.upto),
    }
}

fn source_name(source: ChangeSource) -> &'static str {
    match source {
        ChangeSource::Config => "config",
        ChangeSource::Api => "api",
    }
}

/// The human form of a timeline.
pub fn timeline_text(steps: &[Step]) -> String {
    let mut text = String::new();
    for step in steps {
        let delta = step
            .since_previous_ms
            .map(|ms| format!("+{:.3}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        text.push_str(&format!(
            "{:>7}  {}  {:>9}  {:<12}  {}\n",
            step.seq,
            step.at,
            delta,
            step.session.as_deref().unwrap_or("-"),
            step.description
        ));
    }
    if steps.is_empty() {
        text.push_str("no record touches it\n");
    }
    text
}

/// The views of the log as of `until`.
///
/// # Errors
/// As [`Source::for_each_record`].
pub fn replay(
    source: &Source,
    until: neuron_projections::Until,
) -> Result<neuron_projections::Views, InvestigateError> {
    let mut views = neuron_projections::Views::default();
    let mut done = false;
    source.for_each_record_shown("replaying", &mut |record| {
        if done || !until.includes(&record) {
            done = true;
            return;
        }
        views.apply(&record);
    })?;
    Ok(views)
}

/// The human form of a replay; at most `limit` rows per list.
pub fn replay_text(source: &Source, views: &neuron_projections::Views, limit: usize) -> String {
    use neuron_projections::relationships::Status;
    use neuron_projections::sessions::SessionStage;
    let mut text = format!(
        "log {} as of seq {} ({})\n",
        source.describe(),
        views.last_seq,
        views
            .last_at
            .map(|at| at.to_string())
            .unwrap_or_else(|| "empty".into())
    );
    if let Some(org) = &views.organization_npi {
        text.push_str(&format!(
            "organization {org}, Neuron key {}\n",
            views.server_key.as_deref().unwrap_or("-")
        ));
    }
    text.push_str("\nproviders\n");
    for provider in views.providers.all() {
        let state = match provider.removed_at {
            Some(at) if !provider.registered => format!("removed {at}"),
            _ => format!("registered {}", provider.registered_at),
        };
        text.push_str(&format!(
            "  {}  {:<24}  {}\n",
            provider.npi, provider.name, state
        ));
    }
    let (active, terminated) = views.relationships.counts();
    text.push_str(&format!(
        "\nrelationships: {active} active, {terminated} terminated\n"
    ));
    for relationship in views.relationships.all().take(limit) {
        let status = match (&relationship.status, &relationship.termination) {
            (Status::Terminated, Some(end)) => format!("terminated {} ({})", end.at, end.reason),
            _ => "active".to_string(),
        };
        text.push_str(&format!(
            "  {}  {}  provider {}  established {}  {} later handshake(s)  {}\n",
            relationship.id,
            relationship.patient_agent_id,
            relationship.provider_npi,
            relationship.established_at,
            relationship.existing_handshakes,
            status
        ));
    }
    let total = active + terminated;
    if total > limit {
        text.push_str(&format!(
            "  … and {} more (--limit, or --format json)\n",
            total - limit
        ));
    }
    text.push_str(&format!(
        "\nlive sessions: {}\n",
        views.sessions.live_count()
    ));
    for session in views.sessions.live().take(limit) {
        text.push_str(&format!(
            "  {}  {}  patient {}  provider {}  since {}\n",
            session.id,
            match session.stage {
                SessionStage::Queued => "queued",
                SessionStage::Authenticating => "authenticating",
                SessionStage::Challenged => "challenged",
                SessionStage::Completed => "completed",
                SessionStage::Failed => "failed",
                SessionStage::Closed => "closed",
            },
            session.patient_agent_id.as_deref().unwrap_or("-"),
            session.provider_npi.as_deref().unwrap_or("-"),
            session.started
        ));
    }
    text.push_str(&format!("\nqueue: {} waiting\n", views.queue.len()));
    for position in views.queue.positions().take(limit) {
        text.push_str(&format!(
            "  {:>4}  {}  {}  since {}\n",
            position.position,
            position.waiting.session,
            position.waiting.peer,
            position.waiting.since
        ));
    }
    let tally = views.sessions.tally();
    let failed: Vec<String> = tally
        .failed
        .iter()
        .map(|(code, count)| format!("{} {count}", code.as_str()))
        .collect();
    let rejected: Vec<String> = tally
        .rejected
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    text.push_str(&format!(
        "\nhandshakes: completed {} ({} new, {} existing); failed {} [{}]; closed {}; queue timeouts {}; rejected [{}]; interrupted {}\n",
        tally.completed_new + tally.completed_existing,
        tally.completed_new,
        tally.completed_existing,
        tally.failed.values().sum::<u64>(),
        failed.join(", "),
        tally.closed,
        tally.queue_timeouts,
        rejected.join(", "),
        tally.interrupted
    ));
    text
}
