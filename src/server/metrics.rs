//! What the operator listener's `/metrics` shows, in the OpenMetrics text format, through
//! `prometheus-client` (the Prometheus project's Rust client).
//!
//! Counters and histograms are fed from committed records and batch reports, in commit order, by
//! the journal's observer: what they count is exactly what the log holds, since this process
//! started. Times between records use the records' own timestamps (the injected clock); commit
//! latency is the writer's measured time. Gauges (live sessions, queue length, log head) are read
//! from the live views and the journal when scraped.

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use neuron_events::event::{ErrorCode, EventData, LogCheckpoint, RejectReason};
use neuron_events::{BatchReport, Record, Timestamp};
use neuron_projections::sessions::{Session, SessionStage};

/// What the metrics need of a record's session, as the sessions view held it just before the
/// record: the view follows a session's lifecycle, the metrics keep none of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionSeen {
    /// When it got its slot (`connection.accepted`), if it has one.
    pub accepted: Option<Timestamp>,
    /// Whether it was waiting in the queue.
    pub queued: bool,
}

impl SessionSeen {
    /// What `session` (none for a record of no session, or of a session the view does not hold)
    /// tells the metrics.
    pub fn of(session: Option<&Session>) -> Self {
        session.map_or_else(Self::default, |session| Self {
            accepted: session.accepted,
            queued: session.stage == SessionStage::Queued,
        })
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const SECONDS_SHORT: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const SECONDS_WAIT: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const COMMIT_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const BATCH_RECORDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How a session ended, as `neuron_handshakes_total` labels it: `outcome` (the variant's word)
/// and `code` (the error code, the close code, the rejection's reason, or `none`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// `completed`: a relationship given.
    Completed,
    /// `failed` with the error code sent.
    Failed(ErrorCode),
    /// `timeout` with the timeout's code.
    Timeout(ErrorCode),
    /// `closed` with the close code, if the close frame had one.
    Closed(Option<u16>),
    /// `queue_timeout`: gave up waiting for a slot.
    QueueTimeout,
    /// `rejected` with the reason.
    Rejected(RejectReason),
}

impl Outcome {
    /// The `outcome` label.
    fn word(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed(_) => "failed",
            Self::Timeout(_) => "timeout",
            Self::Closed(_) => "closed",
            Self::QueueTimeout => "queue_timeout",
            Self::Rejected(_) => "rejected",
        }
    }
}

impl EncodeLabelSet for Outcome {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("outcome", self.word()).encode(encoder.encode_label())?;
        let code = encoder.encode_label();
        match *self {
            Self::Failed(code_sent) | Self::Timeout(code_sent) => {
                ("code", code_sent.as_str()).encode(code)
            }
            Self::Closed(Some(close)) => ("code", u64::from(close)).encode(code),
            Self::Rejected(reason) => ("code", reason.as_str()).encode(code),
            Self::Completed | Self::Closed(None) | Self::QueueTimeout => {
                ("code", "none").encode(code)
            }
        }
    }
}

/// `neuron_connections_refused_total`'s label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The witness a witness metric is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
}

/// `neuron_relationships`'s label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelationshipState {
    status: &'static str,
}

/// The gauges, set from [`Gauges`] at each scrape.
#[derive(Default)]
struct Scraped {
    live_sessions: Gauge,
    queue_length: Gauge,
    log_seq: Gauge,
    checkpoint_seq: Gauge,
    log_writable: Gauge,
    providers: Gauge,
    relationships: Family<RelationshipState, Gauge>,
    witness_failures: Family<WitnessLabel, Gauge>,
    witnessed_size: Gauge,
    witness_conflict: Gauge,
}

/// The last `log.checkpoint` in the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointSeen {
    /// The checkpoint record's own seq.
    pub seq: u64,
    /// When it was written.
    pub at: Timestamp,
    /// What it signs.
    #[serde(flatten)]
    pub data: LogCheckpoint,
}

/// Counters and histograms since this process started, and the log's last checkpoint.
pub struct Metrics {
    registry: Registry,
    /// Terminal events by outcome and code.
    handshakes: Family<Outcome, Counter>,
    /// Connections turned away before a session existed, by reason (from the summaries).
    refused: Family<Reason, Counter>,
    handshake_seconds: Histogram,
    queue_wait_seconds: Histogram,
    commit_seconds: Histogram,
    batch_records: Histogram,
    /// Cosignatures recorded since start, by witness.
    cosignatures: Family<WitnessLabel, Counter>,
    /// The tree size each witness last cosigned, as the log records it.
    cosigned_size: Family<WitnessLabel, Gauge>,
    scraped: Scraped,
    last_checkpoint: Option<CheckpointSeen>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("last_checkpoint", &self.last_checkpoint)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            handshakes: Family::default(),
            refused: Family::default(),
            handshake_seconds: Histogram::new(SECONDS_SHORT),
            queue_wait_seconds: Histogram::new(SECONDS_WAIT),
            commit_seconds: Histogram::new(COMMIT_SECONDS),
            batch_records: Histogram::new(BATCH_RECORDS),
            cosignatures: Family::default(),
            cosigned_size: Family::default(),
            scraped: Scraped::default(),
            last_checkpoint: None,
        };
        metrics.registered()
    }
}

/// What is read at scrape time rather than counted.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// Sessions holding a slot.
    pub live_sessions: usize,
    /// Upgrade requests waiting.
    pub queue_length: usize,
    /// The durable head's seq.
    pub log_seq: u64,
    /// Relationships active and terminated.
    pub relationships: (usize, usize),
    /// Providers registered.
    pub providers: usize,
    /// Whether the log can be written.
    pub log_writable: bool,
    /// Submissions each witness did not cosign, since start.
    pub witness_failures: Vec<(String, u64)>,
    /// The size of the latest witnessed checkpoint (0: none).
    pub witnessed_size: u64,
    /// Whether a witness conflict stands.
    pub witness_conflict: bool,
}

impl Metrics {
    /// Registers every metric, in the order the exposition lists them. The registry holds
    /// handles that share their values with the fields, which is what is updated. Help texts
    /// get their final period from the registry.
    fn registered(mut self) -> Self {
        let registry = &mut self.registry;
        registry.register(
            "neuron_handshakes",
            "Sessions ended since start, by outcome (completed, failed, timeout, closed, queue_timeout, rejected) and code (the error code for failed and timeout, the WebSocket close code for closed, the reason for rejected, none otherwise)",
            self.handshakes.clone(),
        );
        registry.register(
            "neuron_connections_refused",
            "Connections turned away before a session existed, by reason (queue_full, connection_limit), as the log's connection.refused summaries count them",
            self.refused.clone(),
        );
        registry.register(
            "neuron_handshake_duration_seconds",
            "Time from connection.accepted to the session's terminal record, by the records' timestamps",
            self.handshake_seconds.clone(),
        );
        registry.register(
            "neuron_queue_wait_seconds",
            "Time upgrade requests waited in the queue before promotion, timeout or rejection",
            self.queue_wait_seconds.clone(),
        );
        registry.register(
            "neuron_commit_batch_records",
            "Records written per durable batch (group commit)",
            self.batch_records.clone(),
        );
        registry.register(
            "neuron_commit_duration_seconds",
            "Time to make one batch durable (write, flush, fdatasync)",
            self.commit_seconds.clone(),
        );
        let scraped = &self.scraped;
        let gauges = [
            (
                "neuron_live_sessions",
                "Sessions holding a handshake slot",
                &scraped.live_sessions,
            ),
            (
                "neuron_queue_length",
                "Upgrade requests waiting for a slot",
                &scraped.queue_length,
            ),
            (
                "neuron_log_seq",
                "Seq of the last durable record",
                &scraped.log_seq,
            ),
            (
                "neuron_checkpoint_seq",
                "Seq of the last log.checkpoint record (0 when none)",
                &scraped.checkpoint_seq,
            ),
            (
                "neuron_log_writable",
                "1 while the event log accepts appends, 0 once a write has failed",
                &scraped.log_writable,
            ),
            (
                "neuron_providers_registered",
                "Providers new handshakes may name",
                &scraped.providers,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "neuron_relationships",
            "Care relationships in the log, by status",
            scraped.relationships.clone(),
        );
        registry.register(
            "neuron_witness_cosignatures",
            "Witness cosignatures recorded (log.cosigned) since start, by witness",
            self.cosignatures.clone(),
        );
        registry.register(
            "neuron_witness_cosigned_size",
            "The tree size each witness last cosigned, as the log records it",
            self.cosigned_size.clone(),
        );
        registry.register(
            "neuron_witness_failures",
            "Checkpoint submissions a witness did not cosign (refused, unanswered, garbled) since start, by witness",
            scraped.witness_failures.clone(),
        );
        registry.register(
            "neuron_witnessed_checkpoint_size",
            "The tree size of the latest checkpoint a quorum of witnesses cosigned (0 when none)",
            scraped.witnessed_size.clone(),
        );
        registry.register(
            "neuron_witness_conflict",
            "1 while a witness's view of the log stands against it (rolled back or forked) and no checkpoint is signed",
            scraped.witness_conflict.clone(),
        );
        self
    }

    /// Notes a record that was already in the log when this process started: only the last
    /// checkpoint is kept from those.
    pub fn recall(&mut self, record: &Record) {
        if let EventData::LogCheckpoint(checkpoint) = &record.event {
            self.last_checkpoint = Some(CheckpointSeen {
                seq: record.seq,
                at: record.at,
                data: checkpoint.clone(),
            });
        }
    }

    /// Counts a record committed by this process, with what the sessions view held of its session
    /// just before the record was applied.
    pub fn observe(&mut self, record: &Record, session: SessionSeen) {
        self.recall(record);
        let outcome = match &record.event {
            EventData::ConnectionPromoted(promoted) => {
                self.queue_wait_seconds.observe(seconds(promoted.waited_ms));
                None
            }
            EventData::HandshakeCompleted(_) => Some(Outcome::Completed),
            EventData::HandshakeFailed(failed) => Some(Outcome::Failed(failed.code)),
            EventData::ConnectionTimeout(timeout) => Some(Outcome::Timeout(timeout.code)),
            EventData::ConnectionClosed(closed) => Some(Outcome::Closed(closed.code)),
            EventData::ConnectionRefused(refused) => {
                let reason = Reason {
                    reason: refused.reason.as_str(),
                };
                self.refused.get_or_create(&reason).inc_by(refused.count);
                None
            }
            EventData::ConnectionQueueTimeout(timeout) => {
                self.queue_wait_seconds.observe(seconds(timeout.waited_ms));
                Some(Outcome::QueueTimeout)
            }
            EventData::ConnectionRejected(rejected) => {
                if session.queued {
                    self.queue_wait_seconds.observe(seconds(rejected.waited_ms));
                }
                Some(Outcome::Rejected(rejected.reason))
            }
            EventData::LogCosigned(cosigned) => {
                let label = WitnessLabel {
                    witness: cosigned.witness.clone(),
                };
                self.cosignatures.get_or_create(&label).inc();
                self.cosigned_size
                    .get_or_create(&label)
                    .set(i64::try_from(cosigned.size).unwrap_or(i64::MAX));
                None
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            self.handshakes.get_or_create(&outcome).inc();
            if let Some(accepted) = session.accepted {
                let seconds = (record.at.millis() - accepted.millis()).max(0) as f64 / 1000.0;
                self.handshake_seconds.observe(seconds);
            }
        }
    }

    /// Counts one durable batch.
    pub fn observe_batch(&mut self, report: &BatchReport) {
        self.batch_records.observe(report.records as f64);
        self.commit_seconds
            .observe(report.commit_time.as_secs_f64());
    }

    /// The log's last checkpoint, including those written before this process started.
    pub fn last_checkpoint(&self) -> Option<&CheckpointSeen> {
        self.last_checkpoint.as_ref()
    }

    /// Handshakes ended so since start.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.handshakes
            .get(&outcome)
            .map_or(0, |counter| counter.get())
    }

    /// The whole exposition, with the gauges as `gauges` gives them.
    pub fn render(&self, gauges: &Gauges) -> String {
        let scraped = &self.scraped;
        let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        let seq = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        scraped.live_sessions.set(count(gauges.live_sessions));
        scraped.queue_length.set(count(gauges.queue_length));
        scraped.log_seq.set(seq(gauges.log_seq));
        scraped.checkpoint_seq.set(seq(self
            .last_checkpoint
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.seq)));
        scraped.log_writable.set(i64::from(gauges.log_writable));
        scraped.providers.set(count(gauges.providers));
        let (active, terminated) = gauges.relationships;
        for (status, value) in [("active", active), ("terminated", terminated)] {
            scraped
                .relationships
                .get_or_create(&RelationshipState { status })
                .set(count(value));
        }
        for (witness, failures) in &gauges.witness_failures {
            scraped
                .witness_failures
                .get_or_create(&WitnessLabel {
                    witness: witness.clone(),
                })
                .set(seq(*failures));
        }
        scraped.witnessed_size.set(seq(gauges.witnessed_size));
        scraped
            .witness_conflict
            .set(i64::from(gauges.witness_conflict));
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Milliseconds as the seconds Prometheus histograms are in.
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuron_events::event::*;
    use neuron_events::Event;
    use neuron_projections::sessions::SessionsView;

    /// As the server's observer does: each record counted with its session as the view held it
    /// just before, then folded into the view.
    fn observe(metrics: &mut Metrics, sessions: &mut SessionsView, record: &Record) {
        let session = record.session.as_deref().and_then(|id| sessions.get(id));
        metrics.observe(record, SessionSeen::of(session));
        sessions.apply(record);
    }

    fn record(seq: u64, at_ms: i64, session: &str, event: EventData) -> Record {
        let bytes = neuron_events::record::encode(
            seq,
            Timestamp::from_millis(at_ms).unwrap(),
            &Event::in_session(session, event),
            &neuron_events::Digest::GENESIS,
        )
        .unwrap();
        Record::decode(&bytes).unwrap()
    }

    #[test]
    fn a_completed_handshake_is_counted_with_its_duration() {
        let mut metrics = Metrics::default();
        let mut sessions = SessionsView::live_only();
        observe(
            &mut metrics,
            &mut sessions,
            &record(
                1,
                1_000,
                "s1",
                EventData::ConnectionAccepted(ConnectionAccepted {
                    peer: "127.0.0.1:1".into(),
                    live_sessions: 1,
                }),
            ),
        );
        observe(
            &mut metrics,
            &mut sessions,
            &record(
                2,
                1_750,
                "s1",
                EventData::HandshakeCompleted(HandshakeCompleted {
                    relationship_id: "r".into(),
                    status: RelationshipStatus::New,
                    provider_npi: "1234567893".into(),
                    provider_endpoint: "http://x".into(),
                }),
            ),
        );
        assert_eq!(metrics.outcome(Outcome::Completed), 1);
        let text = metrics.render(&Gauges::default());
        for line in [
            "# TYPE neuron_handshake_duration_seconds histogram",
            "neuron_handshake_duration_seconds_bucket{le=\"0.5\"} 0",
            "neuron_handshake_duration_seconds_bucket{le=\"1.0\"} 1",
            "neuron_handshake_duration_seconds_bucket{le=\"+Inf\"} 1",
            "neuron_handshake_duration_seconds_sum 0.75",
            "neuron_handshake_duration_seconds_count 1",
            "# TYPE neuron_handshakes counter",
            "neuron_handshakes_total{outcome=\"completed\",code=\"none\"} 1",
        ] {
            assert!(text.lines().any(|seen| seen == line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_outcome_is_labelled_with_its_word_and_code() {
        let mut metrics = Metrics::default();
        let mut sessions = SessionsView::live_only();
        let ended = [
            EventData::HandshakeFailed(HandshakeFailed {
                stage: Stage::Consent,
                code: ErrorCode::ConsentFailed,
                reason: "bad signature".into(),
                provider_npi: None,
            }),
            EventData::ConnectionTimeout(ConnectionTimeout {
                stage: Stage::Challenge,
                code: ErrorCode::ChallengeTimeout,
            }),
            EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Client,
                code: Some(1006),
                stage: Stage::Auth,
                reason: None,
            }),
            EventData::ConnectionClosed(ConnectionClosed {
                by: ClosedBy::Client,
                code: None,
                stage: Stage::Queue,
                reason: None,
            }),
        ];
        for (seq, event) in (1..).zip(ended) {
            observe(
                &mut metrics,
                &mut sessions,
                &record(seq, 1_000, &format!("s{seq}"), event),
            );
        }
        assert_eq!(
            metrics.outcome(Outcome::Failed(ErrorCode::ConsentFailed)),
            1
        );
        assert_eq!(metrics.outcome(Outcome::Closed(Some(1006))), 1);
        assert_eq!(metrics.outcome(Outcome::Closed(Some(1000))), 0);
        let text = metrics.render(&Gauges::default());
        for line in [
            "neuron_handshakes_total{outcome=\"failed\",code=\"CONSENT_FAILED\"} 1",
            "neuron_handshakes_total{outcome=\"timeout\",code=\"CHALLENGE_TIMEOUT\"} 1",
            "neuron_handshakes_total{outcome=\"closed\",code=\"1006\"} 1",
            "neuron_handshakes_total{outcome=\"closed\",code=\"none\"} 1",
        ] {
            assert!(text.lines().any(|seen| seen == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn every_metric_keeps_its_name_labels_and_help_and_gauges_are_read_when_scraped() {
        let metrics = Metrics::default();
        let text = metrics.render(&Gauges {
            live_sessions: 3,
            queue_length: 2,
            log_seq: 41,
            relationships: (5, 1),
            providers: 1,
            log_writable: true,
            ..Gauges::default()
        });
        for line in [
            "# HELP neuron_live_sessions Sessions holding a handshake slot.",
            "# TYPE neuron_live_sessions gauge",
            "neuron_live_sessions 3",
            "neuron_queue_length 2",
            "neuron_log_seq 41",
            "neuron_checkpoint_seq 0",
            "neuron_log_writable 1",
            "neuron_providers_registered 1",
            "neuron_relationships{status=\"active\"} 5",
            "neuron_relationships{status=\"terminated\"} 1",
            "# TYPE neuron_commit_batch_records histogram",
            "# TYPE neuron_commit_duration_seconds histogram",
            "# TYPE neuron_queue_wait_seconds histogram",
        ] {
            assert!(text.lines().any(|seen| seen == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains(".."),
            "help texts end with one period: {text}"
        );
    }

    #[test]
    fn queue_waits_count_only_for_requests_that_were_queued() {
        let mut metrics = Metrics::default();
        let mut sessions = SessionsView::live_only();
        observe(
            &mut metrics,
            &mut sessions,
            &record(
                1,
                0,
                "full",
                EventData::ConnectionRejected(ConnectionRejected {
                    peer: "p".into(),
                    reason: RejectReason::QueueFull,
                    waited_ms: 0,
                }),
            ),
        );
        observe(
            &mut metrics,
            &mut sessions,
            &record(
                2,
                0,
                "waits",
                EventData::ConnectionQueued(ConnectionQueued {
                    peer: "p".into(),
                    position: 1,
                }),
            ),
        );
        observe(
            &mut metrics,
            &mut sessions,
            &record(
                3,
                2_000,
                "waits",
                EventData::ConnectionQueueTimeout(ConnectionQueueTimeout { waited_ms: 2_000 }),
            ),
        );
        assert_eq!(
            metrics.outcome(Outcome::Rejected(RejectReason::QueueFull)),
            1
        );
        assert_eq!(metrics.outcome(Outcome::QueueTimeout), 1);
        let text = metrics.render(&Gauges::default());
        assert!(
            text.contains("\nneuron_queue_wait_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nneuron_handshake_duration_seconds_count 0\n"),
            "never held a slot: {text}"
        );
    }
}
