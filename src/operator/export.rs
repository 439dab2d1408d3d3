//! `GET /v1/audit/export`: the log's stored bytes streamed as JSONL, up to the head at the time of
//! the request, a bounded number of streams at once.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_util::Stream;
use hyper::body::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;
use warp::reply::Reply;

use super::errors::{set_content_type, Answer, ApiError, Code};
use super::request::{query, seq_parameter};
use super::OperatorState;

/// Bytes of records gathered before they are handed to the connection.
pub(super) const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// `GET /v1/audit/export`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParameters {
    from_seq: Option<String>,
    to_seq: Option<String>,
}

pub(super) fn export(state: &OperatorState, raw_query: &str) -> Answer {
    let parameters: ExportParameters = query(raw_query)?;
    let from = seq_parameter(parameters.from_seq.as_deref(), "from_seq")?.unwrap_or(1);
    // A to_seq below from_seq is an empty range, not an error: nothing is sent.
    let to = seq_parameter(parameters.to_seq.as_deref(), "to_seq")?;
    // Streams are bounded: each holds a thread reading the log until it ends or its client is
    // cut off by the write timeout.
    let Ok(stream_place) = state.exports.clone().try_acquire_owned() else {
        let mut refusal = ApiError::new(
            Code::ExportsBusy,
            format!(
                "{} export streams are running already; try again shortly",
                state.max_exports
            ),
        );
        refusal.header = Some(("retry-after", "1".to_string()));
        return Err(refusal);
    };
    // Only what is durable now: at most the head when the request arrived.
    let head = state.live.journal.status().head.seq;
    let to = to.map_or(head, |to| to.min(head));
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let reader = state.reader.clone();
    tokio::task::spawn_blocking(move || {
        let _stream_place = stream_place;
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK_BYTES);
        let mut open = true;
        let scanned = reader.scan_while(from, to, &mut |_, bytes| {
            chunk.extend_from_slice(bytes);
            chunk.push(b'\n');
            if chunk.len() >= EXPORT_CHUNK_BYTES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK_BYTES));
                open = sender.blocking_send(Ok(Bytes::from(full))).is_ok();
            }
            open
        });
        match scanned {
            Ok(()) if open && !chunk.is_empty() => {
                let _ = sender.blocking_send(Ok(Bytes::from(chunk)));
            }
            Ok(()) => {}
            Err(failure) => {
                // Ends the response abruptly: the client sees an incomplete body, not a short log
                // that looks whole.
                let _ = sender.blocking_send(Err(std::io::Error::other(failure.to_string())));
            }
        }
    });
    let mut response = warp::reply::stream(Chunks(receiver)).into_response();
    set_content_type(&mut response, "application/x-ndjson");
    for (name, value) in [("x-neuron-from-seq", from), ("x-neuron-to-seq", to)] {
        if let Ok(value) = value.to_string().parse() {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// The export's chunks as a stream for the response body.
pub(super) struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(context)
    }
}
