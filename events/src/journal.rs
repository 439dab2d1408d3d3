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

use crate::checkpoint::NeuronKey;
use crate::event::{Event, EventData};
use crate::record::{encode, Digest, Record};
use crate::store::{Log, LogHead, StoredRecord};
use crate::time::{Clock, Timestamp};
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
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            queue_capacity: 65_536,
            max_batch_events: 8192,
        }
    }
}

/// What a caller learns when its event is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The record's seq.
    pub seq: u64,
    /// The hash of the record's bytes: the head of the chain right after it.
    pub hash: Digest,
    /// The time stamped on the record.
    pub at: Timestamp,
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
    /// Why the writer stopped writing, once a batch has failed.
    pub failed: Option<String>,
}

enum Request {
    Append {
        events: Vec<Event>,
        reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<Vec<Committed>, Error>>,
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
        log: Box<dyn Log>,
        key: Arc<NeuronKey>,
        clock: Arc<dyn Clock>,
        options: JournalOptions,
        observer: Box<dyn CommitObserver>,
    ) -> Result<Self, Error> {
        let head = crate::evidence::check(log.as_ref())?;
        // Records never go back in time: continue from the last record's time, whatever the clock
        // says now (a restarted server, a clock set back).
        let last_at = match log.read(head.seq, head.seq).next() {
            Some(Ok((_, bytes))) => crate::record::Envelope::parse(&bytes)
                .ok()
                .and_then(|envelope| Timestamp::parse_rfc3339(&envelope.at).ok()),
            _ => None,
        };
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let (status_sender, status) = watch::channel(JournalStatus {
            head,
            last_checkpoint: None,
            failed: None,
        });
        let writer = Writer {
            log,
            key,
            clock,
            checkpoint_every: options.checkpoint_every.max(1),
            max_batch_events: options.max_batch_events.max(1),
            observer,
            head,
            last_at,
            status: status_sender,
            failed: None,
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
    observer: Box<dyn CommitObserver>,
    head: LogHead,
    last_at: Option<Timestamp>,
    status: watch::Sender<JournalStatus>,
    failed: Option<String>,
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
                Request::Close { reply } => {
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

    fn now(&mut self) -> Timestamp {
        // Records never go back in time, even when the wall clock does.
        let now = self.clock.now();
        let at = match self.last_at {
            Some(last) if last > now => last,
            _ => now,
        };
        self.last_at = Some(at);
        at
    }

    fn commit(&mut self, batch: Vec<Request>) {
        if let Some(reason) = &self.failed {
            for request in batch {
                if let Request::Append { reply, .. } | Request::Checkpoint { reply } = request {
                    let _ = reply.send(Err(Error::WriterFailed {
                        reason: reason.clone(),
                    }));
                }
            }
            return;
        }
        let started = Instant::now();
        let mut head = self.head;
        let mut last_checkpoint = None;
        let mut stored: Vec<StoredRecord> = Vec::new();
        let mut records: Vec<Record> = Vec::new();
        let mut shares = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch {
            let (events, reply, explicit_checkpoint) = match request {
                Request::Append { events, reply } => (events, reply, false),
                Request::Checkpoint { reply } => (Vec::new(), reply, true),
                Request::Close { .. } => continue,
            };
            let mark = (stored.len(), records.len(), head, last_checkpoint);
            let mut positions = Vec::with_capacity(events.len().max(1));
            let mut outcome = Ok(());
            if explicit_checkpoint {
                outcome = self
                    .push_checkpoint(&mut head, &mut stored, &mut records)
                    .map(|position| {
                        last_checkpoint = Some(head.seq);
                        positions.push(position);
                    });
            }
            for event in events {
                if outcome.is_err() {
                    break;
                }
                if head.seq > 0 && (head.seq + 1).is_multiple_of(self.checkpoint_every) {
                    if let Err(error) = self.push_checkpoint(&mut head, &mut stored, &mut records) {
                        outcome = Err(error);
                        break;
                    }
                    last_checkpoint = Some(head.seq);
                }
                outcome = self
                    .push(&mut head, event, &mut stored, &mut records)
                    .map(|position| positions.push(position));
            }
            match outcome {
                Ok(()) => shares.push(Share::Records(positions)),
                Err(error) => {
                    // An event that cannot be encoded fails its own request only: roll back to
                    // before it, so the rest of the batch stays contiguous.
                    let (stored_len, records_len, previous_head, previous_checkpoint) = mark;
                    stored.truncate(stored_len);
                    records.truncate(records_len);
                    head = previous_head;
                    last_checkpoint = previous_checkpoint;
                    shares.push(Share::Refused(error));
                }
            }
            replies.push(reply);
        }

        let checkpointed = last_checkpoint.is_some();
        let written = self.log.append(&stored).and_then(|()| {
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
            let reason = crate::error::full_message(&error);
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
            return;
        }
        self.head = head;
        let report = BatchReport {
            records: records.len(),
            requests: replies.len(),
            commit_time: started.elapsed(),
        };
        if !records.is_empty() {
            self.observer.committed(&records, &report);
        }
        self.status.send_modify(|status| {
            status.head = head;
            if last_checkpoint.is_some() {
                status.last_checkpoint = last_checkpoint;
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
                    })
                    .collect()),
            };
            let _ = reply.send(answer);
        }
    }

    fn push_checkpoint(
        &mut self,
        head: &mut LogHead,
        stored: &mut Vec<StoredRecord>,
        records: &mut Vec<Record>,
    ) -> Result<usize, Error> {
        let checkpoint = self.key.sign_checkpoint(head.seq, &head.hash);
        self.push(
            head,
            Event::global(EventData::LogCheckpoint(checkpoint)),
            stored,
            records,
        )
    }

    fn push(
        &mut self,
        head: &mut LogHead,
        event: Event,
        stored: &mut Vec<StoredRecord>,
        records: &mut Vec<Record>,
    ) -> Result<usize, Error> {
        let seq = head.seq + 1;
        let at = self.now();
        let bytes = encode(seq, at, &event, &head.hash)?;
        let hash = Digest::of(&bytes);
        records.push(Record {
            seq,
            at,
            session: event.session,
            event: event.data,
            prev: head.hash,
            hash,
        });
        stored.push((seq, bytes));
        *head = LogHead { seq, hash };
        Ok(records.len() - 1)
    }
}
