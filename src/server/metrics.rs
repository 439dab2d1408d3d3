//! What the operator listener's `/metrics` shows (Prometheus text format 0.0.4).
//!
//! Counters and histograms are fed from committed records and batch reports, in commit order, by
//! the journal's observer: what they count is exactly what the log holds, since this process
//! started. Times between records use the records' own timestamps (the injected clock); commit
//! latency is the writer's measured time. Gauges (live sessions, queue length, log head) are read
//! from the live views and the journal when scraped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use neuron_events::event::{EventData, LogCheckpoint};
use neuron_events::{BatchReport, Record, Timestamp};

/// A cumulative histogram with fixed upper bounds.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not yet cumulative).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(index) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[index] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// How many observations were made.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

const SECONDS_SHORT: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const SECONDS_WAIT: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const COMMIT_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const BATCH_RECORDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

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
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Terminal events by (outcome, code).
    outcomes: BTreeMap<(&'static str, String), u64>,
    /// Connections turned away before a session existed, by reason (from the summaries).
    refused: BTreeMap<&'static str, u64>,
    handshake_seconds: Histogram,
    queue_wait_seconds: Histogram,
    commit_seconds: Histogram,
    batch_records: Histogram,
    /// Sessions of this process that hold a slot, with when they got it.
    accepted_at: HashMap<String, Timestamp>,
    /// Sessions of this process waiting in the queue.
    queued: HashSet<String>,
    last_checkpoint: Option<CheckpointSeen>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            outcomes: BTreeMap::new(),
            refused: BTreeMap::new(),
            handshake_seconds: Histogram::new(SECONDS_SHORT),
            queue_wait_seconds: Histogram::new(SECONDS_WAIT),
            commit_seconds: Histogram::new(COMMIT_SECONDS),
            batch_records: Histogram::new(BATCH_RECORDS),
            accepted_at: HashMap::new(),
            queued: HashSet::new(),
            last_checkpoint: None,
        }
    }
}

/// What is read at scrape time rather than counted.
#[derive(Clone, Copy, Debug, Default)]
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
}

impl Metrics {
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

    /// Counts a record committed by this process.
    pub fn observe(&mut self, record: &Record) {
        self.recall(record);
        let session = record.session.as_deref().unwrap_or_default();
        let outcome: Option<(&'static str, String)> = match &record.event {
            EventData::ConnectionQueued(_) => {
                self.queued.insert(session.to_string());
                None
            }
            EventData::ConnectionPromoted(promoted) => {
                self.queued.remove(session);
                self.queue_wait_seconds.observe(seconds(promoted.waited_ms));
                None
            }
            EventData::ConnectionAccepted(_) => {
                self.accepted_at.insert(session.to_string(), record.at);
                None
            }
            EventData::HandshakeCompleted(_) => Some(("completed", "none".into())),
            EventData::HandshakeFailed(failed) => Some(("failed", failed.code.as_str().into())),
            EventData::ConnectionTimeout(timeout) => {
                Some(("timeout", timeout.code.as_str().into()))
            }
            EventData::ConnectionClosed(closed) => {
                self.queued.remove(session);
                let code = closed
                    .code
                    .map_or_else(|| "none".to_string(), |code| code.to_string());
                Some(("closed", code))
            }
            EventData::ConnectionRefused(refused) => {
                *self.refused.entry(refused.reason.as_str()).or_default() += refused.count;
                None
            }
            EventData::ConnectionQueueTimeout(timeout) => {
                self.queued.remove(session);
                self.queue_wait_seconds.observe(seconds(timeout.waited_ms));
                Some(("queue_timeout", "none".into()))
            }
            EventData::ConnectionRejected(rejected) => {
                if self.queued.remove(session) {
                    self.queue_wait_seconds.observe(seconds(rejected.waited_ms));
                }
                Some(("rejected", rejected.reason.as_str().into()))
            }
            EventData::ServerStarted(_) => {
                self.accepted_at.clear();
                self.queued.clear();
                None
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            *self.outcomes.entry(outcome).or_default() += 1;
            if let Some(accepted) = self.accepted_at.remove(session) {
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

    /// Handshakes ended with `outcome` and `code` since start.
    pub fn outcome(&self, outcome: &str, code: &str) -> u64 {
        self.outcomes
            .iter()
            .filter(|((o, c), _)| *o == outcome && c == code)
            .map(|(_, count)| count)
            .sum()
    }

    /// Durations of handshakes that held a slot.
    pub fn handshake_seconds(&self) -> &Histogram {
        &self.handshake_seconds
    }

    /// The whole exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let _ = writeln!(
            out,
            "# HELP neuron_handshakes_total Sessions ended since start, by outcome (completed, failed, timeout, closed, queue_timeout, rejected) and code (the error code for failed and timeout, the WebSocket close code for closed, the reason for rejected, none otherwise)."
        );
        let _ = writeln!(out, "# TYPE neuron_handshakes_total counter");
        for ((outcome, code), count) in &self.outcomes {
            let _ = writeln!(
                out,
                "neuron_handshakes_total{{outcome=\"{outcome}\",code=\"{code}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP neuron_connections_refused_total Connections turned away before a session existed, by reason (queue_full, connection_limit), as the log's connection.refused summaries count them."
        );
        let _ = writeln!(out, "# TYPE neuron_connections_refused_total counter");
        for (reason, count) in &self.refused {
            let _ = writeln!(
                out,
                "neuron_connections_refused_total{{reason=\"{reason}\"}} {count}"
            );
        }
        self.handshake_seconds.render(
            &mut out,
            "neuron_handshake_duration_seconds",
            "Time from connection.accepted to the session's terminal record, by the records' timestamps.",
        );
        self.queue_wait_seconds.render(
            &mut out,
            "neuron_queue_wait_seconds",
            "Time upgrade requests waited in the queue before promotion, timeout or rejection.",
        );
        self.batch_records.render(
            &mut out,
            "neuron_commit_batch_records",
            "Records written per durable batch (group commit).",
        );
        self.commit_seconds.render(
            &mut out,
            "neuron_commit_duration_seconds",
            "Time to make one batch durable (write, flush, fdatasync).",
        );
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            &mut out,
            "neuron_live_sessions",
            "Sessions holding a handshake slot.",
            gauges.live_sessions.to_string(),
        );
        gauge(
            &mut out,
            "neuron_queue_length",
            "Upgrade requests waiting for a slot.",
            gauges.queue_length.to_string(),
        );
        gauge(
            &mut out,
            "neuron_log_seq",
            "Seq of the last durable record.",
            gauges.log_seq.to_string(),
        );
        gauge(
            &mut out,
            "neuron_checkpoint_seq",
            "Seq of the last log.checkpoint record (0 when none).",
            self.last_checkpoint
                .as_ref()
                .map_or(0, |checkpoint| checkpoint.seq)
                .to_string(),
        );
        gauge(
            &mut out,
            "neuron_log_writable",
            "1 while the event log accepts appends, 0 once a write has failed.",
            u8::from(gauges.log_writable).to_string(),
        );
        gauge(
            &mut out,
            "neuron_providers_registered",
            "Providers new handshakes may name.",
            gauges.providers.to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP neuron_relationships Care relationships in the log, by status."
        );
        let _ = writeln!(out, "# TYPE neuron_relationships gauge");
        let (active, terminated) = gauges.relationships;
        let _ = writeln!(out, "neuron_relationships{{status=\"active\"}} {active}");
        let _ = writeln!(
            out,
            "neuron_relationships{{status=\"terminated\"}} {terminated}"
        );
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
        metrics.observe(&record(
            1,
            1_000,
            "s1",
            EventData::ConnectionAccepted(ConnectionAccepted {
                peer: "127.0.0.1:1".into(),
                live_sessions: 1,
            }),
        ));
        metrics.observe(&record(
            2,
            1_750,
            "s1",
            EventData::HandshakeCompleted(HandshakeCompleted {
                relationship_id: "r".into(),
                status: RelationshipStatus::New,
                provider_npi: "1234567893".into(),
                provider_endpoint: "http://x".into(),
            }),
        ));
        assert_eq!(metrics.outcome("completed", "none"), 1);
        assert_eq!(metrics.handshake_seconds().count(), 1);
        let text = metrics.render(&Gauges::default());
        assert!(text.contains("neuron_handshake_duration_seconds_bucket{le=\"0.5\"} 0\n"));
        assert!(text.contains("neuron_handshake_duration_seconds_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("neuron_handshake_duration_seconds_sum 0.75\n"));
        assert!(text.contains("neuron_handshakes_total{outcome=\"completed\",code=\"none\"} 1\n"));
    }

    #[test]
    fn queue_waits_count_only_for_requests_that_were_queued() {
        let mut metrics = Metrics::default();
        metrics.observe(&record(
            1,
            0,
            "full",
            EventData::ConnectionRejected(ConnectionRejected {
                peer: "p".into(),
                reason: RejectReason::QueueFull,
                waited_ms: 0,
            }),
        ));
        metrics.observe(&record(
            2,
            0,
            "waits",
            EventData::ConnectionQueued(ConnectionQueued {
                peer: "p".into(),
                position: 1,
            }),
        ));
        metrics.observe(&record(
            3,
            2_000,
            "waits",
            EventData::ConnectionQueueTimeout(ConnectionQueueTimeout { waited_ms: 2_000 }),
        ));
        assert_eq!(metrics.outcome("rejected", "queue_full"), 1);
        assert_eq!(metrics.outcome("queue_timeout", "none"), 1);
        assert_eq!(metrics.queue_wait_seconds.count(), 1);
        assert_eq!(metrics.handshake_seconds().count(), 0, "never held a slot");
    }
}
