//! Group commit: the one writer every append goes through. Callers on many tasks hand it events;
//! the writer thread takes everything waiting, numbers and chains it, writes the batch, makes it
//! durable once, tells the observer (the live views), and only then acknowledges each caller.
//!
//! Invariants: a caller's `append` resolves `Ok` only after its records are durable; records are
//! numbered without gaps; if a batch fails, every caller of that batch gets the error and nothing is
//! ever written on top of it.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint::{NeuronKey, SignedCheckpoint, TreeHead};
use crate::event::{Event, EventData, ServerClockBehind};
use crate::receipt::BatchEvidence;
use crate::record::{encode, Digest, Record};
use crate::store::{frontier_of, Appended, Log, LogHead, LogNodes};
use crate::time::{Clock, Timestamp};
use crate::tree::Frontier;
use crate::Error;

/// Tuning of the writer.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// A `log.checkpoint` is appended whenever the next seq is a multiple of this (SPEC §3.2).
    pub checkpoint_every: u64,
    /// How many requests may wait for the writer before callers wait to hand theirs over.
    pub queue_capacity: usize,
    /// The most events one batch takes.
    pub max_batch_events: usize,
    /// The log's C2SP origin: the first line of every checkpoint and its key name (SPEC §3.5).
    pub origin: String,
}

/// The origin of the built-in demo configuration's log (`http://localhost:3000`, organization
/// 1245319599): what tests and tools use when they do not name one.
pub const DEMO_ORIGIN: &str = "localhost/neuron/1245319599";

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            queue_capacity: 65_536,
            max_batch_events: 8192,
            origin: DEMO_ORIGIN.to_string(),
        }
    }
}

/// What a caller learns when its event is durable.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The record's seq.
    pub seq: u64,
    /// The hash of the record's bytes: the head of the chain right after it.
    pub hash: Digest,
    /// The time stamped on the record.
    pub at: Timestamp,
    /// When the batch ended with a signed checkpoint: what proves the record under it (its
    /// receipt) without reading the store. Shared by every caller of the batch.
    pub evidence: Option<Arc<BatchEvidence>>,
}

/// What one durable batch cost, for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct BatchReport {
    /// Records written, checkpoints included.
    pub records: usize,
    /// Requests acknowledged.
    pub requests: usize,
    /// Time from taking the batch to its being durable.
    pub commit_time: Duration,
}

/// Sees every committed batch, in order, before any of its callers is acknowledged. The live server
/// applies records to its views here, so a view never shows a record that is not durable and every
/// caller sees its own record in the views once `append` returns.
pub trait CommitObserver: Send + 'static {
    /// Called with the records of one durable batch, in seq order.
    fn committed(&mut self, records: &[Record], report: &BatchReport);
}

impl<F: FnMut(&[Record], &BatchReport) + Send + 'static> CommitObserver for F {
    fn committed(&mut self, records: &[Record], report: &BatchReport) {
        self(records, report);
    }
}

/// The writer's state as others may read it at any moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalStatus {
    /// The durable head.
    pub head: LogHead,
    /// The seq of the last `log.checkpoint` written by this writer, if any.
    pub last_checkpoint: Option<u64>,
    /// The latest checkpoint signed as a note (by this writer, or found in the log at start):
    /// every record up to its size is durable.
    pub checkpoint: Option<Arc<SignedCheckpoint>>,
    /// Why the writer stopped writing, once a batch has failed.
    pub failed: Option<String>,
    /// Why the writer signs no more checkpoints, once told to hold ([`Journal::hold_signing`]).
    pub signing_held: Option<String>,
}

enum Request {
    Append {
        events: Vec<Event>,
        reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
    },
    HoldSigning {
        reason: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// A handle on the group-commit writer. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct Journal {
    sender: mpsc::Sender<Request>,
    status: watch::Receiver<JournalStatus>,
}

impl Journal {
    /// Starts the writer on `log`, continuing its chain.
    ///
    /// # Errors
    /// As [`crate::evidence::check`] when the store lacks a record it acknowledged or its evidence
    /// is gone (nothing is written on top of such a store); the store's error when it cannot be
    /// read; [`Error::Io`] if the writer thread cannot be started.
    pub fn start(
        mut log: Box<dyn Log>,
        key: Arc<NeuronKey>,
        clock: Arc<dyn Clock>,
        options: JournalOptions,
        observer: Box<dyn CommitObserver>,
    ) -> Result<Self, Error> {
        let head = crate::evidence::check(log.as_ref())?;
        let frontier = complete_tree(log.as_mut(), head)?;
        let checkpoint = latest_checkpoint(log.as_ref(), head, &options.origin)?;
        // The last record's time: a clock behind it is recorded before the next record.
        let last_at = match log.read(head.seq, head.seq).next() {
            Some(Ok((_, bytes))) => crate::record::Envelope::time_of(&bytes),
            _ => None,
        };
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let (status_sender, status) = watch::channel(JournalStatus {
            head,
            last_checkpoint: None,
            checkpoint: checkpoint.map(Arc::new),
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
            head,
            frontier,
            ends_with_checkpoint: false,
            last_at,
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
        Ok(Self { sender, status })
    }

    /// Appends one event; resolves once it is durable.
    ///
    /// # Errors
    /// [`Error::WriterFailed`] when its batch (or an earlier one) could not be written;
    /// [`Error::WriterClosed`] after [`Journal::close`]; [`Error::RecordTooLarge`] or
    /// [`Error::Encode`] for an event that cannot be a record (nothing else in the batch suffers).
    pub async fn append(&self, event: Event) -> Result<Committed, Error> {
        let committed = self.append_all(vec![event]).await?;
        committed.into_iter().next().ok_or(Error::WriterClosed)
    }

    /// Appends several events as consecutive records of one batch: all are durable or none is.
    ///
    /// # Errors
    /// As [`Journal::append`].
    pub async fn append_all(&self, events: Vec<Event>) -> Result<Vec<Committed>, Error> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Append { events, reply }, answer)
            .await
    }

    /// Appends a signed `log.checkpoint` of the current head now.
    ///
    /// # Errors
    /// As [`Journal::append`].
    pub async fn checkpoint(&self) -> Result<Committed, Error> {
        let (reply, answer) = oneshot::channel();
        let committed = self.request(Request::Checkpoint { reply }, answer).await?;
        committed.into_iter().next().ok_or(Error::WriterClosed)
    }

    async fn request(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<Vec<Committed>, Error>>,
    ) -> Result<Vec<Committed>, Error> {
        self.sender
            .send(request)
            .await
            .map_err(|_| Error::WriterClosed)?;
        answer.await.map_err(|_| Error::WriterClosed)?
    }

    /// Stops signing checkpoints for good, for `reason`: a witness holds a view of the log the
    /// writer cannot tell its next checkpoint would be consistent with (SPEC §3.5). Records are
    /// still appended; periodic and per-batch checkpoints are left out, and an explicit one
    /// refused. Resolves once every batch after it signs nothing.
    ///
    /// # Errors
    /// [`Error::WriterClosed`] after [`Journal::close`].
    pub async fn hold_signing(&self, reason: String) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        self.sender
            .send(Request::HoldSigning { reason, reply })
            .await
            .map_err(|_| Error::WriterClosed)?;
        done.await.map_err(|_| Error::WriterClosed)?
    }

    /// The writer's current state.
    pub fn status(&self) -> JournalStatus {
        self.status.borrow().clone()
    }

    /// Writes what was handed over before this call, makes the evidence of the head durable, then
    /// stops the writer and releases the store. Later appends, from any clone, get
    /// [`Error::WriterClosed`].
    ///
    /// # Errors
    /// [`Error::WriterFailed`] when the writer had stopped after a failed write, or the evidence
    /// could not be made durable; [`Error::WriterClosed`] when it was already closed.
    pub async fn close(&self) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        self.sender
            .send(Request::Close { reply })
            .await
            .map_err(|_| Error::WriterClosed)?;
        done.await.map_err(|_| Error::WriterClosed)?
    }

    /// Resolves with the reason once a write has failed and the writer has stopped for good
    /// (fail-stop): the caller must record nothing more and stop.
    pub async fn failed(&self) -> String {
        let mut status = self.status.clone();
        let failed = status
            .wait_for(|status| status.failed.is_some())
            .await
            .map(|status| status.failed.clone().unwrap_or_default());
        match failed {
            Ok(reason) => reason,
            // The writer is gone without failing: it was closed, and nothing can fail any more.
            Err(_) => std::future::pending().await,
        }
    }
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
        let mut shares = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            let (events, reply, explicit_checkpoint) = match request {
                Request::Append { events, reply } => (events, reply, false),
                Request::Checkpoint { reply } => (Vec::new(), reply, true),
                Request::Close { .. } | Request::HoldSigning { .. } => continue,
            };
            let mark = batch.mark();
            match self.push_request(&mut batch, events, explicit_checkpoint) {
                Ok(positions) => shares.push(Share::Records(positions)),
                Err(error) => {
                    // An event that cannot be encoded fails its own request only: roll back to
                    // before it, so the rest of the batch stays contiguous.
                    batch.rollback(mark);
                    shares.push(Share::Refused(error));
                }
            }
            replies.push(reply);
        }
        // A batch that completes a handshake ends with a checkpoint of the tree holding it: the
        // handshake's receipt proves inclusion under it (SPEC §3.5).
        if batch.completed_since_checkpoint && self.signing_held.is_none() {
            if let Err(error) = self.push_checkpoint(&mut batch) {
                // Signing and encoding a checkpoint cannot fail for a record the batch could
                // hold; if it does, nothing of this batch is written.
                self.fail(&error.to_string(), replies, shares);
                return;
            }
        }

        let checkpointed = batch.last_checkpoint.is_some();
        let written = self.log.append(&batch.appended).and_then(|()| {
            if checkpointed {
                self.log.sync_evidence()
            } else {
                Ok(())
            }
        });
        if let Err(error) = written {
            // Fail-stop: the store may hold part of this batch in memory; nothing of it, and
            // nothing after it, may reach the disk from this process.
            self.log.abandon();
            self.fail(&crate::error::full_message(&error), replies, shares);
            return;
        }
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
            requests: replies.len(),
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
        for (reply, share) in replies.into_iter().zip(shares) {
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
    fn fail(
        &mut self,
        reason: &str,
        replies: Vec<oneshot::Sender<Result<Vec<Committed>, Error>>>,
        shares: Vec<Share>,
    ) {
        let reason = reason.to_string();
        self.failed = Some(reason.clone());
        self.status
            .send_modify(|status| status.failed = Some(reason.clone()));
        for (reply, share) in replies.into_iter().zip(shares) {
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

/// The records of one group commit as they are built: numbered, chained, in the tree, with what
/// they need of a checkpoint. A request that fails is taken back whole ([`Batch::rollback`]).
struct Batch {
    /// The tree before the batch, to rebuild the frontier after a rollback.
    start: Frontier,
    head: LogHead,
    frontier: Frontier,
    appended: Vec<Appended>,
    records: Vec<Record>,
    /// The seq of the last checkpoint in the batch.
    last_checkpoint: Option<u64>,
    /// The last checkpoint in the batch, as a signed note.
    checkpoint: Option<Arc<SignedCheckpoint>>,
    /// Whether a `connection.handshake_completed` follows the batch's last checkpoint.
    completed_since_checkpoint: bool,
    /// Whether the last record (in the batch, or before it) is a checkpoint: a periodic one is
    /// then not needed.
    ends_with_checkpoint: bool,
    /// The time of the last record (in the batch, or before it).
    last_at: Option<Timestamp>,
}

/// Where a batch stood before a request, to take the request back.
struct Mark {
    len: usize,
    head: LogHead,
    last_checkpoint: Option<u64>,
    checkpoint: Option<Arc<SignedCheckpoint>>,
    completed_since_checkpoint: bool,
    ends_with_checkpoint: bool,
    last_at: Option<Timestamp>,
}

impl Batch {
    fn new(
        head: LogHead,
        frontier: Frontier,
        ends_with_checkpoint: bool,
        last_at: Option<Timestamp>,
    ) -> Self {
        Self {
            start: frontier.clone(),
            head,
            frontier,
            appended: Vec::new(),
            records: Vec::new(),
            last_checkpoint: None,
            checkpoint: None,
            completed_since_checkpoint: false,
            ends_with_checkpoint,
            last_at,
        }
    }

    /// Numbers, chains and stamps `event`, puts it in the tree, and returns its position.
    fn push(&mut self, event: Event, at: Timestamp) -> Result<usize, Error> {
        let seq = self.head.seq + 1;
        let bytes = encode(seq, at, &event, &self.head.hash)?;
        let hash = Digest::of(&bytes);
        let tree = self.frontier.append(crate::tree::leaf_hash(&bytes));
        if matches!(event.data, EventData::HandshakeCompleted(_)) {
            self.completed_since_checkpoint = true;
        }
        self.ends_with_checkpoint = matches!(event.data, EventData::LogCheckpoint(_));
        self.last_at = Some(at);
        self.records.push(Record {
            seq,
            at,
            session: event.session,
            event: event.data,
            prev: self.head.hash,
            hash,
        });
        self.appended.push(Appended { seq, bytes, tree });
        self.head = LogHead { seq, hash };
        Ok(self.records.len() - 1)
    }

    fn mark(&self) -> Mark {
        Mark {
            len: self.records.len(),
            head: self.head,
            last_checkpoint: self.last_checkpoint,
            checkpoint: self.checkpoint.clone(),
            completed_since_checkpoint: self.completed_since_checkpoint,
            ends_with_checkpoint: self.ends_with_checkpoint,
            last_at: self.last_at,
        }
    }

    fn rollback(&mut self, mark: Mark) {
        self.records.truncate(mark.len);
        self.appended.truncate(mark.len);
        self.head = mark.head;
        self.last_checkpoint = mark.last_checkpoint;
        self.checkpoint = mark.checkpoint;
        self.completed_since_checkpoint = mark.completed_since_checkpoint;
        self.ends_with_checkpoint = mark.ends_with_checkpoint;
        self.last_at = mark.last_at;
        // Rare (an event that cannot be a record): the tree's edge is rebuilt from the leaves kept.
        let mut frontier = self.start.clone();
        for appended in &self.appended {
            if let Some(leaf) = appended.tree.first() {
                frontier.append(*leaf);
            }
        }
        self.frontier = frontier;
    }
}

/// The frontier of the store's tree at `head`, after adding the tree hashes of records stored
/// before the tree existed (a store written by an earlier version): computed from their bytes
/// and stored once, durably.
fn complete_tree(log: &mut dyn Log, head: LogHead) -> Result<Frontier, Error> {
    const CHUNK: u64 = 10_000;
    let size = log.tree_size()?;
    if size > head.seq {
        return Err(Error::TreeMissing {
            reason: format!(
                "the tree holds {size} leaves but the log {} records",
                head.seq
            ),
        });
    }
    let mut frontier = frontier_of(log)?;
    let mut next = size + 1;
    while next <= head.seq {
        let last = (next + CHUNK - 1).min(head.seq);
        let mut tree = Vec::new();
        for record in log.read(next, last) {
            let (seq, bytes) = record?;
            if seq != next + tree.len() as u64 {
                return Err(Error::Corrupt {
                    reason: format!(
                        "record {} is missing from the store",
                        next + tree.len() as u64
                    ),
                });
            }
            tree.push(frontier.append(crate::tree::leaf_hash(&bytes)));
        }
        log.add_tree(next, &tree)?;
        next = last + 1;
    }
    Ok(frontier)
}

/// The log's latest checkpoint that carries a note, found from the end, after checking that the
/// stored tree still has the root it signed and that it names this log's origin: the journal
/// never signs a checkpoint inconsistent with one the log already holds (SPEC §3.5).
fn latest_checkpoint(
    log: &dyn Log,
    head: LogHead,
    origin: &str,
) -> Result<Option<SignedCheckpoint>, Error> {
    const CHUNK: u64 = 1024;
    let mut last = head.seq;
    while last > 0 {
        let first = last.saturating_sub(CHUNK - 1).max(1);
        let mut found = None;
        log.scan(first, last, &mut |seq, bytes| {
            if let Ok(parts) = crate::record::parts(bytes) {
                if parts.kind == "log.checkpoint" {
                    if let Ok(data) = serde_json::from_slice(parts.data) {
                        if let Some(signed) = SignedCheckpoint::of(seq, &data) {
                            found = Some(signed);
                        }
                    }
                }
            }
        })?;
        if let Some(signed) = found {
            check_checkpoint(log, &signed, origin)?;
            return Ok(Some(signed));
        }
        last = first - 1;
    }
    Ok(None)
}

fn check_checkpoint(log: &dyn Log, signed: &SignedCheckpoint, origin: &str) -> Result<(), Error> {
    let body = crate::note::Note::parse(&signed.note)
        .ok()
        .and_then(|note| crate::note::Checkpoint::parse(&note.text).ok());
    let signed_origin = body.map(|body| body.origin).unwrap_or_default();
    if signed_origin != origin {
        return Err(Error::OriginChanged {
            log: signed_origin,
            configured: origin.to_string(),
        });
    }
    let root = crate::tree::tree_hash(signed.size, &LogNodes(log)).map_err(|error| {
        Error::TreeMissing {
            reason: error.to_string(),
        }
    })?;
    if root != signed.root {
        return Err(Error::Corrupt {
            reason: format!(
                "the checkpoint at seq {} signed the tree of {} records with root {}, but the stored tree has root {root}: the log was rewritten, and no checkpoint consistent with both can be signed",
                signed.seq, signed.size, signed.root
            ),
        });
    }
    Ok(())
}
