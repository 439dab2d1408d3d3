//! The writer thread: takes every request waiting, builds one batch of them, writes it, makes it
//! durable once, shows it to the observer, and only then answers each caller.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use super::batch::Batch;
use super::protocol::{
    BatchReport, CommitObserver, Committed, JournalOptions, JournalStatus, Request,
};
use super::resume::Resumed;
use crate::checkpoint::{NeuronKey, SignedCheckpoint, TreeHead};
use crate::event::{Event, EventData, ServerClockBehind};
use crate::receipt::BatchEvidence;
use crate::store::{Log, LogHead};
use crate::time::{Clock, Timestamp};
use crate::tree::Frontier;
use crate::Error;

/// Starts the writer thread on `log` from where it `resumed`; returns where requests go and the
/// status it keeps.
///
/// # Errors
/// [`Error::Io`] if the thread cannot be started.
pub(super) fn start(
    log: Box<dyn Log>,
    key: Arc<NeuronKey>,
    clock: Arc<dyn Clock>,
    options: JournalOptions,
    observer: Box<dyn CommitObserver>,
    resumed: Resumed,
) -> Result<(mpsc::Sender<Request>, watch::Receiver<JournalStatus>), Error> {
    let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
    let (status_sender, status) = watch::channel(JournalStatus {
        head: resumed.head,
        last_checkpoint: None,
        checkpoint: resumed.checkpoint.map(Arc::new),
        failed: None,
        signing_held: None,
    });
    let writer = Writer {
        log,
        key,
        clock,
        checkpoint_every: options.checkpoint_every.max(1),
        max_batch_events: options.max_batch_events.max(1),
        origin: options.origin,
        observer,
        head: resumed.head,
        frontier: resumed.frontier,
        ends_with_checkpoint: false,
        last_at: resumed.last_at,
        status: status_sender,
        failed: None,
        signing_held: None,
    };
    thread::Builder::new()
        .name("neuron-log-writer".into())
        .spawn(move || writer.run(receiver))
        .map_err(|source| Error::Io {
            action: "start the log writer thread for",
            path: "event log".into(),
            source,
        })?;
    Ok((sender, status))
}

struct Writer {
    log: Box<dyn Log>,
    key: Arc<NeuronKey>,
    clock: Arc<dyn Clock>,
    checkpoint_every: u64,
    max_batch_events: usize,
    origin: String,
    observer: Box<dyn CommitObserver>,
    head: LogHead,
    /// The right edge of the stored tree, at `head`.
    frontier: Frontier,
    /// Whether the record at `head` is a checkpoint.
    ends_with_checkpoint: bool,
    last_at: Option<Timestamp>,
    status: watch::Sender<JournalStatus>,
    failed: Option<String>,
    /// Why no checkpoint may be signed any more.
    signing_held: Option<String>,
}

/// A request of the batch being built, waiting for its answer.
struct Pending {
    reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
    share: Share,
}

/// One request's share of a batch: where its records sit in the batch, or why it was refused alone.
enum Share {
    Records(Vec<usize>),
    Refused(Error),
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Request>) {
        let mut closing: Option<oneshot::Sender<Result<(), Error>>> = None;
        while closing.is_none() {
            let Some(first) = receiver.blocking_recv() else {
                break;
            };
            let mut batch = Vec::new();
            let mut events = 0;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Close { reply } => {
                        closing = Some(reply);
                        break;
                    }
                    Request::HoldSigning { reason, reply } => {
                        // Takes effect from the batch being gathered: none of it signs.
                        self.signing_held = Some(reason.clone());
                        self.status
                            .send_modify(|status| status.signing_held = Some(reason.clone()));
                        let _ = reply.send(Ok(()));
                        if events < self.max_batch_events {
                            next = receiver.try_recv().ok();
                        }
                        continue;
                    }
                    Request::Append {
                        events: ref list, ..
                    } => events += list.len(),
                    Request::Checkpoint { .. } => events += 1,
                }
                batch.push(request);
                if events < self.max_batch_events {
                    next = receiver.try_recv().ok();
                }
            }
            self.commit(batch);
        }
        receiver.close();
        while let Ok(request) = receiver.try_recv() {
            match request {
                Request::Append { reply, .. } | Request::Checkpoint { reply } => {
                    let _ = reply.send(Err(Error::WriterClosed));
                }
                Request::Close { reply } | Request::HoldSigning { reply, .. } => {
                    let _ = reply.send(Err(Error::WriterClosed));
                }
            }
        }
        let closed = match &self.failed {
            Some(reason) => Err(Error::WriterFailed {
                reason: reason.clone(),
            }),
            None => self.log.close().map_err(|error| Error::WriterFailed {
                reason: crate::error::full_message(&error),
            }),
        };
        drop(self.log);
        if let Some(reply) = closing {
            let _ = reply.send(closed);
        }
    }

    /// The time for the next record of `batch`: the wall clock, always. A clock that reads
    /// earlier than the log's latest record (set back, or a run with the clock ahead before) is
    /// recorded first as `server.clock_behind`, with both times, so that every step back in the
    /// log's times is explained by the record at it (SPEC §3.3).
    fn stamp(&self, batch: &mut Batch) -> Result<Timestamp, Error> {
        let now = self.clock.now();
        if let Some(step) = batch
            .last_at
            .and_then(|last_at| ServerClockBehind::between(last_at, now))
        {
            batch.push(Event::global(EventData::ServerClockBehind(step)), now)?;
        }
        Ok(now)
    }

    /// Builds, writes and answers one batch: every caller of it learns the same outcome.
    fn commit(&mut self, requests: Vec<Request>) {
        if let Some(reason) = &self.failed {
            for request in requests {
                if let Request::Append { reply, .. } | Request::Checkpoint { reply } = request {
                    let _ = reply.send(Err(Error::WriterFailed {
                        reason: reason.clone(),
                    }));
                }
            }
            return;
        }
        let started = Instant::now();
        let mut batch = Batch::new(
            self.head,
            self.frontier.clone(),
            self.ends_with_checkpoint,
            self.last_at,
        );
        let pending = self.gather(&mut batch, requests);
        // A batch that completes a handshake ends with a checkpoint of the tree holding it: the
        // handshake's receipt proves inclusion under it (SPEC §3.5).
        if batch.completed_since_checkpoint && self.signing_held.is_none() {
            if let Err(error) = self.push_checkpoint(&mut batch) {
                // Signing and encoding a checkpoint cannot fail for a record the batch could
                // hold; if it does, nothing of this batch is written.
                self.fail(&error.to_string(), pending);
                return;
            }
        }
        if let Err(error) = self.write(&batch) {
            // Fail-stop: the store may hold part of this batch in memory; nothing of it, and
            // nothing after it, may reach the disk from this process.
            self.log.abandon();
            self.fail(&crate::error::full_message(&error), pending);
            return;
        }
        self.settle(batch, pending, started);
    }

    /// Puts each request's records into `batch`; a request whose event cannot be a record is
    /// taken back alone and refused, so the rest of the batch stays contiguous.
    fn gather(&mut self, batch: &mut Batch, requests: Vec<Request>) -> Vec<Pending> {
        let mut pending = Vec::with_capacity(requests.len());
        for request in requests {
            let (events, reply, explicit_checkpoint) = match request {
                Request::Append { events, reply } => (events, reply, false),
                Request::Checkpoint { reply } => (Vec::new(), reply, true),
                Request::Close { .. } | Request::HoldSigning { .. } => continue,
            };
            let mark = batch.mark();
            let share = match self.push_request(batch, events, explicit_checkpoint) {
                Ok(positions) => Share::Records(positions),
                Err(error) => {
                    batch.rollback(mark);
                    Share::Refused(error)
                }
            };
            pending.push(Pending { reply, share });
        }
        pending
    }

    /// Writes the batch and, when it holds a checkpoint, makes the evidence durable with it.
    fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        self.log.append(&batch.appended)?;
        if batch.last_checkpoint.is_some() {
            self.log.sync_evidence()?;
        }
        Ok(())
    }

    /// After a durable write: the writer moves to the batch's end, the observer sees its records,
    /// the status shows the new head, and only then is each caller answered.
    fn settle(&mut self, batch: Batch, pending: Vec<Pending>, started: Instant) {
        self.head = batch.head;
        self.frontier = batch.frontier;
        self.ends_with_checkpoint = batch.ends_with_checkpoint;
        self.last_at = batch.last_at;
        let records = batch.records;
        let evidence = batch.checkpoint.clone().map(|checkpoint| {
            Arc::new(BatchEvidence::new(batch.start, batch.appended, checkpoint))
        });
        let report = BatchReport {
            records: records.len(),
            requests: pending.len(),
            commit_time: started.elapsed(),
        };
        if !records.is_empty() {
            self.observer.committed(&records, &report);
        }
        let (head, last_checkpoint, checkpoint) =
            (self.head, batch.last_checkpoint, batch.checkpoint);
        self.status.send_modify(|status| {
            status.head = head;
            if last_checkpoint.is_some() {
                status.last_checkpoint = last_checkpoint;
            }
            if checkpoint.is_some() {
                status.checkpoint = checkpoint;
            }
        });
        for Pending { reply, share } in pending {
            let answer = match share {
                Share::Refused(error) => Err(error),
                Share::Records(positions) => Ok(positions
                    .into_iter()
                    .filter_map(|position| records.get(position))
                    .map(|record| Committed {
                        seq: record.seq,
                        hash: record.hash,
                        at: record.at,
                        evidence: evidence.clone(),
                    })
                    .collect()),
            };
            let _ = reply.send(answer);
        }
    }

    /// Stops the writer for good: every caller of this batch is told why.
    fn fail(&mut self, reason: &str, pending: Vec<Pending>) {
        let reason = reason.to_string();
        self.failed = Some(reason.clone());
        self.status
            .send_modify(|status| status.failed = Some(reason.clone()));
        for Pending { reply, share } in pending {
            let answer = match share {
                Share::Refused(error) => Err(error),
                Share::Records(_) => Err(Error::WriterFailed {
                    reason: reason.clone(),
                }),
            };
            let _ = reply.send(answer);
        }
    }

    /// One request's records (and the checkpoints due before them), their positions in the batch.
    fn push_request(
        &mut self,
        batch: &mut Batch,
        events: Vec<Event>,
        explicit_checkpoint: bool,
    ) -> Result<Vec<usize>, Error> {
        let mut positions = Vec::with_capacity(events.len().max(1));
        if explicit_checkpoint {
            if let Some(reason) = &self.signing_held {
                return Err(Error::SigningHeld {
                    reason: reason.clone(),
                });
            }
            // Checkpoints asked for together are one: a request that finds this batch already
            // ending with a checkpoint of its own is answered with that one, which covers it.
            let last = batch.records.len().checked_sub(1);
            match last.filter(|_| batch.last_checkpoint == Some(batch.head.seq)) {
                Some(position) if events.is_empty() => positions.push(position),
                _ => positions.push(self.push_checkpoint(batch)?),
            }
        }
        for event in events {
            let seq = batch.head.seq;
            if seq > 0
                && (seq + 1).is_multiple_of(self.checkpoint_every)
                && !batch.ends_with_checkpoint
                && self.signing_held.is_none()
            {
                self.push_checkpoint(batch)?;
            }
            let at = self.stamp(batch)?;
            positions.push(batch.push(event, at)?);
        }
        Ok(positions)
    }

    /// Signs the chain head and the tree as they stand in `batch`, and appends the checkpoint.
    fn push_checkpoint(&mut self, batch: &mut Batch) -> Result<usize, Error> {
        // Stamped first: a clock found behind adds its record, which the checkpoint then covers.
        let at = self.stamp(batch)?;
        let tree = TreeHead {
            origin: &self.origin,
            root: batch.frontier.root(),
        };
        let checkpoint = self
            .key
            .sign_checkpoint(batch.head.seq, &batch.head.hash, &tree);
        let seq = batch.head.seq + 1;
        let signed = SignedCheckpoint::of(seq, &checkpoint);
        let position = batch.push(Event::global(EventData::LogCheckpoint(checkpoint)), at)?;
        batch.last_checkpoint = Some(seq);
        batch.checkpoint = signed.map(Arc::new);
        batch.completed_since_checkpoint = false;
        Ok(position)
    }
}
