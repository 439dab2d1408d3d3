//! The handle callers hold: hands events to the writer and waits for them to be durable.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::protocol::{CommitObserver, Committed, JournalOptions, JournalStatus, Request};
use super::resume::resume;
use super::writer;
use crate::checkpoint::NeuronKey;
use crate::event::Event;
use crate::store::Log;
use crate::time::Clock;
use crate::Error;

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
        let resumed = resume(log.as_mut(), &options.origin)?;
        let (sender, status) = writer::start(log, key, clock, options, observer, resumed)?;
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
