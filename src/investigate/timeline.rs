//! `neuron timeline`: every record touching one subject, in order, in words. Records are picked
//! by byte search and the rest checked to be records; from a store, the subject's records are
//! fetched by seq after one pass.

use std::path::Path;

use neuron_events::event::EventData;
use neuron_events::record::envelope_session;
use neuron_events::Record;

use super::{describe, safe, InvestigateError, Progress, Source};

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

pub(super) fn mentions(record: &Record, subject: &Subject) -> bool {
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
        (Subject::Relationship(id), EventData::ChallengeIssued(data)) => {
            data.relationship.as_ref() == Some(id)
        }
        (Subject::Relationship(id), EventData::RelationshipTerminated(data)) => {
            &data.relationship_id == id
        }
        (Subject::Provider(npi), EventData::ConsentVerified(data)) => &data.provider_npi == npi,
        (Subject::Provider(npi), EventData::HandshakeFailed(data)) => {
            data.provider_npi.as_ref() == Some(npi)
        }
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

/// The timeline of `subject`: every record touching it, in order, handed to `emit` line by line
/// (a long timeline is never held whole). Returns how many lines there were.
///
/// # Errors
/// As [`Source::for_each_record`]; lines already emitted stay emitted.
pub fn timeline(
    source: &Source,
    subject: &Subject,
    emit: &mut dyn FnMut(Step),
) -> Result<u64, InvestigateError> {
    let progress = Progress::start("following", false);
    let mut lines = Lines {
        emit,
        count: 0,
        previous_in_session: std::collections::HashMap::new(),
        previous_outside: None,
    };
    let outcome = timeline_steps(source, subject, &mut lines);
    progress.finish();
    outcome.map(|()| lines.count)
}

/// What a timeline has learned about its subject: the sessions and relationships that are its.
#[derive(Default)]
pub(super) struct Followed {
    sessions: std::collections::HashSet<String>,
    relationships: std::collections::HashSet<String>,
}

impl Followed {
    /// Learns from a record that names the subject.
    fn note(&mut self, record: &Record, subject: &Subject) {
        let (session, relationship) = learned(record, subject);
        self.sessions.extend(session);
        self.relationships.extend(relationship);
    }

    /// Whether a record belongs in the timeline: it names the subject, belongs to one of its
    /// sessions, or ends one of its relationships.
    fn includes(&self, record: &Record, subject: &Subject) -> bool {
        record
            .session
            .as_ref()
            .is_some_and(|session| self.sessions.contains(session))
            || matches!(&record.event, EventData::RelationshipTerminated(data) if self.relationships.contains(&data.relationship_id))
            || mentions(record, subject)
    }
}

/// What a record teaches about the subject when it names it: its session, and the relationship it
/// establishes.
pub(super) fn learned(record: &Record, subject: &Subject) -> (Option<String>, Option<String>) {
    if !mentions(record, subject) {
        return (None, None);
    }
    let relationship = match &record.event {
        EventData::RelationshipEstablished(data) => Some(data.relationship_id.clone()),
        _ => None,
    };
    (record.session.clone(), relationship)
}

/// The timeline's lines, with the time since the previous line of the same session.
pub(super) struct Lines<'a> {
    emit: &'a mut dyn FnMut(Step),
    count: u64,
    previous_in_session: std::collections::HashMap<String, neuron_events::Timestamp>,
    previous_outside: Option<neuron_events::Timestamp>,
}

impl Lines<'_> {
    fn push(&mut self, record: &Record) {
        let previous = match &record.session {
            Some(session) => self.previous_in_session.insert(session.clone(), record.at),
            None => self.previous_outside.replace(record.at),
        };
        self.count += 1;
        (self.emit)(Step {
            seq: record.seq,
            at: record.at,
            since_previous_ms: previous.map(|earlier| record.at.millis() - earlier.millis()),
            session: record.session.clone(),
            kind: record.event.kind(),
            description: safe(&describe(&record.event)).into_owned(),
        });
    }
}

/// What a timeline looks for, and the byte searches that find the records that may hold it
/// before any is decoded.
pub(super) struct Search<'a> {
    subject: &'a Subject,
    /// The subject's id, anywhere in a record's bytes.
    finder: memchr::memmem::Finder<'static>,
    /// A termination, whose relationship may be the subject's.
    termination: memchr::memmem::Finder<'static>,
}

impl<'a> Search<'a> {
    pub(super) fn new(subject: &'a Subject) -> Self {
        let (Subject::Session(id)
        | Subject::Patient(id)
        | Subject::Relationship(id)
        | Subject::Provider(id)) = subject;
        Self {
            subject,
            finder: memchr::memmem::Finder::new(id.as_bytes()).into_owned(),
            termination: memchr::memmem::Finder::new(b"\"kind\":\"termination.").into_owned(),
        }
    }

    /// Whether a record's bytes name the subject's id.
    fn names(&self, bytes: &[u8]) -> bool {
        self.finder.find(bytes).is_some()
    }

    /// Whether a record's bytes name the subject's id or a termination.
    fn may_teach(&self, bytes: &[u8]) -> bool {
        self.names(bytes) || self.termination.find(bytes).is_some()
    }
}

pub(super) fn timeline_steps(
    source: &Source,
    subject: &Subject,
    lines: &mut Lines<'_>,
) -> Result<(), InvestigateError> {
    let search = Search::new(subject);
    if let Source::Sled(path) = source {
        return timeline_from_store(path, &search, lines, FETCH_BY_SEQ_MAX);
    }
    // An export is read twice: the first pass finds the subject's sessions and relationships,
    // the second collects their records.
    let mut followed = Followed::default();
    use neuron_events::export::Unpicked;
    // The first pass checks every line; the second decodes what it picks and leaves the rest.
    source.for_each_matching(
        &|bytes| search.names(bytes),
        Unpicked::Checked,
        &mut |record| {
            followed.note(&record, subject);
        },
    )?;
    // The byte filter looks the record's session up in a set (a search per session would make
    // long timelines quadratic) and lets every termination through to be decoded.
    let session_keys: std::collections::HashSet<Vec<u8>> = followed
        .sessions
        .iter()
        .map(|session| escaped(session).into_bytes())
        .collect();
    let wanted = |bytes: &[u8]| {
        search.may_teach(bytes)
            || envelope_session(bytes).is_some_and(|session| {
                // An id written with escapes other than ours is decoded to be sure.
                session.contains(&b'\\') || session_keys.contains(session)
            })
    };
    source.for_each_matching(&wanted, Unpicked::Skipped, &mut |record| {
        if followed.includes(&record, subject) {
            lines.push(&record);
        }
    })
}

/// A session id as it is written inside a record (JSON string escapes, without the quotes).
pub(super) fn escaped(session: &str) -> String {
    let quoted = serde_json::Value::from(session).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// A store is read once, on worker threads: records naming the subject (and terminations) are
/// decoded to learn its sessions and relationships; of every record only the seq is kept, with a
/// hash of its session. Then the timeline's records are fetched by seq, in order, and emitted.
pub(super) fn timeline_from_store(
    path: &Path,
    search: &Search<'_>,
    lines: &mut Lines<'_>,
    max_fetched: usize,
) -> Result<(), InvestigateError> {
    use neuron_events::Log;
    let log = Source::open_sled(path)?;
    let (followed, seqs) = find_in_store(&*log, path, search)?;
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    let unreadable = |error: neuron_events::Error| InvestigateError::Unreadable {
        path: path.to_path_buf(),
        source: error.into(),
    };
    let mut emit = |seq: u64, decoded: Result<Record, neuron_events::Error>| {
        let record = decoded.map_err(|error| undecodable(path, not_a_record(seq, error)))?;
        if followed.includes(&record, search.subject) {
            lines.push(&record);
        }
        Ok::<(), InvestigateError>(())
    };
    if fetch_by_seq(seqs.len(), last - first + 1, max_fetched) {
        for seq in seqs {
            let mut decoded = None;
            log.scan(seq, seq, &mut |_, bytes| {
                decoded = Some(Record::decode(bytes))
            })
            .map_err(unreadable)?;
            if let Some(decoded) = decoded {
                emit(seq, decoded)?;
            }
        }
        return Ok(());
    }
    // Many records: reading their range again on worker threads beats fetching each by seq.
    let mut outcome = Ok(());
    neuron_events::export::scan_parallel_range(
        &*log,
        first,
        last,
        |seq, bytes, decoded| {
            if seqs.binary_search(&seq).is_ok() {
                decoded.push((seq, Record::decode(bytes)));
            }
        },
        |(seq, decoded)| {
            if outcome.is_ok() {
                outcome = emit(seq, decoded);
            }
        },
    )
    .map_err(unreadable)?;
    outcome
}

/// The first pass over a store, on worker threads: records naming the subject (and terminations)
/// are decoded to learn its sessions and relationships; of every other record of a session only
/// the seq is kept, with a hash of its session id. Returns what was learned and the seqs the
/// timeline may hold, in order. Every record passed over is still checked to be a record.
fn find_in_store(
    log: &dyn neuron_events::Log,
    path: &Path,
    search: &Search<'_>,
) -> Result<(Followed, Vec<u64>), InvestigateError> {
    use std::hash::BuildHasher;
    let hasher = std::collections::hash_map::RandomState::new();
    let mut followed = Followed::default();
    let mut matched: Vec<u64> = Vec::new();
    let mut others: Vec<(u64, u64)> = Vec::new();
    let mut failure = None;
    neuron_events::export::scan_parallel(
        log,
        |seq, bytes, items| items.extend(passed_over(seq, bytes, search, &hasher)),
        |item| match item {
            Passed::Matched {
                seq,
                session,
                relationship,
            } => {
                followed.sessions.extend(session);
                followed.relationships.extend(relationship);
                matched.push(seq);
            }
            Passed::Undecodable(undecodable) => {
                failure.get_or_insert(undecodable);
            }
            Passed::Other { seq, session } => others.push((seq, session)),
        },
    )
    .map_err(|error| InvestigateError::Unreadable {
        path: path.to_path_buf(),
        source: error.into(),
    })?;
    if let Some(error) = failure {
        return Err(undecodable(path, error));
    }
    let ours: std::collections::HashSet<u64> = followed
        .sessions
        .iter()
        .map(|session| hasher.hash_one(escaped(session).as_bytes()))
        .collect();
    let mut seqs: Vec<u64> = others
        .into_iter()
        .filter(|(_, session)| ours.contains(session))
        .map(|(seq, _)| seq)
        .chain(matched)
        .collect();
    seqs.sort_unstable();
    Ok((followed, seqs))
}

/// What the first pass keeps of a stored record.
enum Passed {
    /// A record that may belong in the timeline, with the session and the relationship it
    /// teaches (when it names the subject).
    Matched {
        seq: u64,
        session: Option<String>,
        relationship: Option<String>,
    },
    Undecodable(neuron_events::export::Undecodable),
    /// Any other record of a session: its seq and a hash of its session id.
    Other {
        seq: u64,
        session: u64,
    },
}

/// What the first pass keeps of the record `seq`: decoded when it may name the subject, else
/// only checked to be a record, and its session's hash kept; nothing for a record of no session.
fn passed_over(
    seq: u64,
    bytes: &[u8],
    search: &Search<'_>,
    hasher: &impl std::hash::BuildHasher,
) -> Option<Passed> {
    let session = envelope_session(bytes);
    if search.may_teach(bytes)
        // An id written with escapes other than ours is decoded to be sure.
        || session.is_some_and(|session| session.contains(&b'\\'))
    {
        return Some(match Record::decode(bytes) {
            Ok(record) => {
                let (session, relationship) = learned(&record, search.subject);
                Passed::Matched {
                    seq,
                    session,
                    relationship,
                }
            }
            Err(error) => Passed::Undecodable(not_a_record(seq, error)),
        });
    }
    if let Err(error) = neuron_events::record::check(bytes) {
        // Passed over, but never without knowing it is a record.
        return Some(Passed::Undecodable(not_a_record(seq, error)));
    }
    session.map(|session| Passed::Other {
        seq,
        session: hasher.hash_one(session),
    })
}

/// A stored record that does not decode, named by its seq.
fn not_a_record(seq: u64, error: neuron_events::Error) -> neuron_events::export::Undecodable {
    neuron_events::export::Undecodable::new(format!("record {seq}"), error)
}

fn undecodable(path: &Path, undecodable: neuron_events::export::Undecodable) -> InvestigateError {
    InvestigateError::Undecodable {
        path: path.to_path_buf(),
        undecodable,
    }
}

/// Records a timeline fetches one by one at most; past this, and when they are more than an
/// eighth of their range, the range is read again on worker threads instead.
pub(super) const FETCH_BY_SEQ_MAX: usize = 10_000;

pub(super) fn fetch_by_seq(wanted: usize, range: u64, max_fetched: usize) -> bool {
    wanted <= max_fetched || (wanted as u64).saturating_mul(8) <= range
}

/// One line of the human form of a timeline.
pub fn timeline_line(step: &Step) -> String {
    let delta = step
        .since_previous_ms
        .map(|ms| format!("{:+.3}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    format!(
        "{:>7}  {}  {:>9}  {:<12}  {}\n",
        step.seq,
        step.at,
        delta,
        safe(step.session.as_deref().unwrap_or("-")),
        step.description
    )
}

/// What the human form says when no record touches the subject.
pub const TIMELINE_EMPTY: &str = "no record touches it\n";

/// The forms `neuron timeline` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineFormat {
    /// A table for people, a line a step ([`timeline_line`]).
    Table,
    /// One JSON array of steps.
    Json,
    /// One JSON object per line, a line a step.
    Jsonl,
}

/// Writes a timeline's steps as they come, in one of the formats; the first failed write is kept
/// and ends the writing.
pub struct TimelineWriter<W: std::io::Write> {
    format: TimelineFormat,
    out: W,
    written: std::io::Result<()>,
    steps: usize,
}

impl<W: std::io::Write> TimelineWriter<W> {
    /// Starts writing a timeline to `out` in `format`.
    pub fn new(format: TimelineFormat, mut out: W) -> Self {
        let written = if format == TimelineFormat::Json {
            out.write_all(b"[")
        } else {
            Ok(())
        };
        TimelineWriter {
            format,
            out,
            written,
            steps: 0,
        }
    }

    /// Writes one step (nothing once a write has failed).
    pub fn step(&mut self, step: &Step) {
        if self.written.is_err() {
            return;
        }
        let out = &mut self.out;
        self.written = match self.format {
            TimelineFormat::Table => out.write_all(timeline_line(step).as_bytes()),
            TimelineFormat::Json => {
                let separator: &[u8] = if self.steps == 0 { b"" } else { b"," };
                out.write_all(separator).and_then(|()| {
                    serde_json::to_writer(&mut *out, step).map_err(std::io::Error::from)
                })
            }
            TimelineFormat::Jsonl => serde_json::to_writer(&mut *out, step)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
        };
        self.steps += 1;
    }

    /// Writes out what is buffered, as far as it goes (after a failure of the timeline itself).
    ///
    /// # Errors
    /// The writer's error.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Closes the output of a timeline of `count` steps.
    ///
    /// # Errors
    /// The first failed write.
    pub fn finish(mut self, count: u64) -> std::io::Result<()> {
        let closing: &[u8] = match self.format {
            TimelineFormat::Table if count == 0 => TIMELINE_EMPTY.as_bytes(),
            TimelineFormat::Json => b"]\n",
            _ => b"",
        };
        self.written?;
        self.out.write_all(closing)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use neuron_events::SledLog;

    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/server_run.jsonl"
    );

    fn lines_of(run: impl FnOnce(&mut Lines<'_>) -> Result<(), InvestigateError>) -> Vec<String> {
        let mut found = Vec::new();
        let mut emit = |step: Step| found.push(serde_json::to_string(&step).unwrap());
        let mut lines = Lines {
            emit: &mut emit,
            count: 0,
            previous_in_session: std::collections::HashMap::new(),
            previous_outside: None,
        };
        run(&mut lines).unwrap();
        found
    }

    #[test]
    fn a_store_timeline_is_the_same_whether_records_are_fetched_by_seq_or_scanned_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = SledLog::open(dir.path()).unwrap();
            let file = std::io::BufReader::new(File::open(FIXTURE).unwrap());
            neuron_events::export::import(file, &mut log).unwrap();
        }
        neuron_events::testing::until_unlocked(dir.path());
        for subject in [
            Subject::Patient("patient-agent-ada".into()),
            Subject::Provider("1234567893".into()),
            Subject::Session("session-5".into()),
        ] {
            let search = Search::new(&subject);
            let by_seq =
                lines_of(|lines| timeline_from_store(dir.path(), &search, lines, usize::MAX));
            let scanned = lines_of(|lines| timeline_from_store(dir.path(), &search, lines, 0));
            let exported =
                lines_of(|lines| timeline_steps(&Source::Jsonl(FIXTURE.into()), &subject, lines));
            assert!(!exported.is_empty(), "{subject:?}");
            assert_eq!(by_seq, exported, "{subject:?} fetched by seq");
            assert_eq!(scanned, exported, "{subject:?} scanned again");
        }
        assert!(fetch_by_seq(5, 1_000_000, FETCH_BY_SEQ_MAX));
        assert!(!fetch_by_seq(300_000, 1_000_000, FETCH_BY_SEQ_MAX));
        assert!(fetch_by_seq(20_000, 1_000_000, FETCH_BY_SEQ_MAX));
    }
}
