//! The Neuron's side of C2SP tlog-witness v1.0.0 (SPEC §3.5): every `audit.witness_interval_ms`,
//! at start and at shutdown, the latest checkpoint goes to each witness with a consistency proof
//! from the size that witness last cosigned (a 409 names its size: the proof is made again from
//! there). Each cosignature obtained is verified and recorded as `log.cosigned`; the latest
//! checkpoint with a quorum of them is the *witnessed* one.
//!
//! A witness that has cosigned a larger tree than the log holds, or another root for a size,
//! proves the log was rolled back or forked: `log.witness_conflict` is recorded once, the journal
//! signs no further checkpoint, `/ready` answers 503 naming it, and the next start refuses to serve
//! until an operator acknowledges the loss. Everything else a witness does (garbage, a wrong
//! signature, silence, slowness) is logged and metered, never recorded as a cosignature, and never
//! delays a handshake: submissions run on their own task, each call bounded by a timeout.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{info, warn};

use neuron_events::checkpoint::SignedCheckpoint;
use neuron_events::event::{EventData, LogCosigned, LogWitnessConflict};
use neuron_events::note::{Note, SignatureLine, VerifierKey};
use neuron_events::store::Nodes;
use neuron_events::tree;
use neuron_events::Event;

use crate::config::Audit;

use super::live::{Live, StopPhase};
use super::witness_board::WitnessState;

/// The content type of a 409's body: the witness's latest cosigned size.
const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// One configured witness.
struct Witness {
    name: String,
    key: VerifierKey,
    /// `{url}/add-checkpoint`
    endpoint: String,
}

/// How one submission ended.
enum Answer {
    /// The witness's signature lines.
    Cosigned(String),
    /// 409: the witness's latest cosigned size is this.
    Conflict(u64),
    /// 422 (or 409 without a size): it refuses the proof or the root.
    Inconsistent(String),
    /// Anything else: no cosignature this time.
    Failed(String),
}

/// What a round found for one witness.
enum Outcome {
    /// A verified cosignature of the checkpoint.
    Cosigned(SignatureLine),
    /// The witness holds a view this log does not extend.
    Conflict { witness_size: u64, detail: String },
    /// No cosignature this round.
    Failed(String),
}

/// The witness client of one server.
pub(crate) struct Witnesses {
    live: Arc<Live>,
    list: Vec<Witness>,
    quorum: usize,
    client: reqwest::Client,
    /// `audit.witness_interval_ms`: how often the latest checkpoint is sent.
    interval: Duration,
    /// Conflicts already recorded, as (witness, its size): each is recorded once.
    recorded: Mutex<BTreeSet<(String, u64)>>,
    /// Witnesses whose conflict an operator acknowledged: their refusals of the continued log are
    /// failures, not new conflicts.
    acknowledged: BTreeSet<String>,
}

impl Witnesses {
    /// The witnesses `audit` lists, starting from what the log says they cosigned; what they do
    /// is shown on `live`'s witness board.
    pub(crate) fn new(live: Arc<Live>, audit: &Audit) -> Self {
        let list: Vec<Witness> = audit
            .witnesses
            .iter()
            .filter_map(|witness| {
                // Validated with the configuration.
                let key = VerifierKey::parse(&witness.vkey).ok()?;
                Some(Witness {
                    name: witness.name.clone(),
                    key,
                    endpoint: format!("{}/add-checkpoint", witness.url.trim_end_matches('/')),
                })
            })
            .collect();
        let quorum = match audit.witness_quorum as usize {
            0 => list.len(),
            quorum => quorum,
        };
        let timeout = Duration::from_millis(audit.witness_interval_ms.clamp(100, 10_000));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .unwrap_or_default();
        let (states, acknowledged) = {
            let views = live.views();
            let states = list
                .iter()
                .map(|witness| WitnessState {
                    name: witness.name.clone(),
                    cosigned_size: views
                        .witnesses
                        .cosigned(&witness.name)
                        .map_or(0, |cosigned| cosigned.size),
                    ..WitnessState::default()
                })
                .collect();
            (states, views.witnesses.acknowledged_witnesses().clone())
        };
        live.witness_board().witnesses = states;
        Self {
            live,
            list,
            quorum,
            client,
            interval: Duration::from_millis(audit.witness_interval_ms),
            recorded: Mutex::default(),
            acknowledged,
        }
    }

    /// Whether any witness is configured.
    pub(crate) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// Sends the latest checkpoint to every witness, every interval, until the stop begins.
    pub(crate) async fn run(self: Arc<Self>) {
        let interval = self.interval;
        let mut stopping = self.live.stop.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stopping.reached(StopPhase::Draining) => return,
            }
            self.round().await;
        }
    }

    /// One submission of the latest checkpoint to every witness, at once; returns the conflict
    /// found, if any.
    pub(crate) async fn round(&self) -> Option<String> {
        let checkpoint = self.live.journal.status().checkpoint?;
        let submissions = self
            .list
            .iter()
            .enumerate()
            .map(|(index, witness)| self.submit_one(index, witness, &checkpoint));
        let outcomes = futures_util::future::join_all(submissions).await;
        let mut lines = Vec::new();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let witness = &self.list[index];
            match outcome {
                Outcome::Cosigned(line) => {
                    self.cosigned(index, &checkpoint, &line).await;
                    lines.push(line);
                }
                Outcome::Conflict {
                    witness_size,
                    detail,
                } => {
                    self.conflict(witness, witness_size, checkpoint.size, detail)
                        .await;
                }
                Outcome::Failed(reason) => {
                    warn!(witness = %witness.name, %reason, "the witness did not cosign the checkpoint");
                    let mut board = self.live.witness_board();
                    board.counts.entry(witness.name.clone()).or_default().1 += 1;
                    if let Some(state) = board.witnesses.get_mut(index) {
                        state.last_failure = Some(reason);
                        state.rounds_behind = state.rounds_behind.saturating_add(1);
                    }
                }
            }
        }
        if lines.len() >= self.quorum && self.quorum > 0 {
            if let Ok(mut note) = Note::parse(&checkpoint.note) {
                note.signatures.extend(lines);
                self.live.witness_board().witnessed = Some((checkpoint.size, note.to_text()));
            }
        }
        self.live.witness_board().conflict.clone()
    }

    /// One witness's answer to the checkpoint, with one resubmission from the size a 409 names.
    async fn submit_one(
        &self,
        index: usize,
        witness: &Witness,
        checkpoint: &SignedCheckpoint,
    ) -> Outcome {
        let known = self
            .live
            .witness_board()
            .witnesses
            .get(index)
            .map_or(0, |state| state.cosigned_size);
        if known > checkpoint.size {
            return self.judged(
                witness,
                known,
                format!(
                    "the log records that this witness cosigned a tree of {known} records, larger than the {} the log holds",
                    checkpoint.size
                ),
            );
        }
        let mut old = known;
        for attempt in 0..2 {
            let answer = self.post(witness, checkpoint, old).await;
            match answer {
                Answer::Cosigned(body) => return verify_cosignature(witness, checkpoint, &body),
                Answer::Conflict(size) if size > checkpoint.size => {
                    return self.judged(
                        witness,
                        size,
                        format!(
                            "it has cosigned a tree of {size} records; this log holds {}",
                            checkpoint.size
                        ),
                    )
                }
                Answer::Conflict(size) if attempt == 0 && size != old => old = size,
                Answer::Conflict(size) => {
                    return Outcome::Failed(format!(
                        "it answered 409 again, naming {size} records"
                    ))
                }
                Answer::Inconsistent(reason) => {
                    return self.judged(
                        witness,
                        old,
                        format!(
                            "it refused the tree of {} records as an extension of its tree of {old}: {reason}",
                            checkpoint.size
                        ),
                    )
                }
                Answer::Failed(reason) => return Outcome::Failed(reason),
            }
        }
        Outcome::Failed("no answer".into())
    }

    /// A witness's view against this log: a conflict, unless an operator acknowledged this
    /// witness's earlier one (then it is a witness that cannot follow the continued log).
    fn judged(&self, witness: &Witness, witness_size: u64, detail: String) -> Outcome {
        if self.acknowledged.contains(&witness.name) {
            return Outcome::Failed(format!(
                "{detail} (the rollback it saw was acknowledged: this witness cannot cosign the log any more until its operator resets it)"
            ));
        }
        Outcome::Conflict {
            witness_size,
            detail,
        }
    }

    /// POSTs `add-checkpoint` (tlog-witness v1.0.0): `old <size>`, the consistency proof from it,
    /// a blank line, the checkpoint.
    async fn post(&self, witness: &Witness, checkpoint: &SignedCheckpoint, old: u64) -> Answer {
        let proof = if old > 0 && old < checkpoint.size {
            let reader = self.live.reader.clone();
            let size = checkpoint.size;
            let proof = tokio::task::spawn_blocking(move || {
                tree::prove_consistency(old, size, &Nodes(reader.as_ref()))
            })
            .await;
            match proof {
                Ok(Ok(proof)) => proof,
                Ok(Err(error)) => return Answer::Failed(format!("no proof from {old}: {error}")),
                Err(error) => return Answer::Failed(error.to_string()),
            }
        } else {
            Vec::new()
        };
        let mut body = format!("old {old}\n");
        for hash in &proof {
            body.push_str(&hash.to_base64());
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&checkpoint.note);
        let response = match self.client.post(&witness.endpoint).body(body).send().await {
            Ok(response) => response,
            Err(error) => return Answer::Failed(format!("no answer: {error}")),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // Witness answers are a few lines: anything much longer is not one.
        let text = match response.text().await {
            Ok(text) if text.len() <= 64 * 1024 => text,
            Ok(_) => return Answer::Failed(format!("HTTP {status} with an oversized body")),
            Err(error) => {
                return Answer::Failed(format!("HTTP {status}, body unreadable: {error}"))
            }
        };
        match status {
            200 => Answer::Cosigned(text),
            409 => {
                let size = text
                    .strip_suffix('\n')
                    .filter(|_| content_type.starts_with(SIZE_CONTENT_TYPE))
                    .and_then(|digits| digits.parse::<u64>().ok());
                match size {
                    Some(size) => Answer::Conflict(size),
                    // tlog-witness v1.0.0 answers an equal size with another root 409 too.
                    None => Answer::Inconsistent(format!("409: {}", first_line(&text))),
                }
            }
            422 => Answer::Inconsistent(format!("422: {}", first_line(&text))),
            404 => Answer::Failed("404: the witness does not know this log's origin".into()),
            403 => Answer::Failed("403: the witness does not trust this log's key".into()),
            other => Answer::Failed(format!("HTTP {other}: {}", first_line(&text))),
        }
    }

    /// Records a verified cosignature as `log.cosigned`.
    async fn cosigned(&self, index: usize, checkpoint: &SignedCheckpoint, line: &SignatureLine) {
        let Some(witness) = self.list.get(index) else {
            return;
        };
        let data = EventData::LogCosigned(LogCosigned {
            witness: witness.name.clone(),
            size: checkpoint.size,
            root: checkpoint.root.to_base64(),
            cosignature: line.to_line().trim_end_matches('\n').to_string(),
        });
        if let Err(error) = self.live.journal.append(Event::global(data)).await {
            warn!(%error, witness = %witness.name, "could not record the cosignature");
            return;
        }
        info!(witness = %witness.name, size = checkpoint.size, "cosigned");
        let mut board = self.live.witness_board();
        board.counts.entry(witness.name.clone()).or_default().0 += 1;
        if let Some(state) = board.witnesses.get_mut(index) {
            state.cosigned_size = checkpoint.size;
            state.rounds_behind = 0;
            state.last_failure = None;
        }
    }

    /// Records a conflict once, stops the journal signing, and makes `/ready` name it.
    async fn conflict(&self, witness: &Witness, witness_size: u64, our_size: u64, detail: String) {
        let reason = format!(
            "witness {} holds a view of this log that it does not extend ({detail}): the log was rolled back or forked",
            witness.name
        );
        tracing::error!(witness = %witness.name, witness_size, our_size, %detail, "WITNESS CONFLICT: the log was rolled back or forked; no checkpoint is signed until an operator acknowledges it (neuron serve --acknowledge-rollback)");
        let first = lock(&self.recorded).insert((witness.name.clone(), witness_size));
        if first {
            let data = EventData::LogWitnessConflict(LogWitnessConflict {
                witness: witness.name.clone(),
                witness_size,
                our_size,
                detail,
            });
            if let Err(error) = self.live.journal.append(Event::global(data)).await {
                warn!(%error, "could not record the witness conflict");
            }
        }
        if let Err(error) = self.live.journal.hold_signing(reason.clone()).await {
            warn!(%error, "could not stop checkpoint signing");
        }
        self.live.witness_board().conflict = Some(reason);
    }
}

/// Picks this witness's signature line out of a 200's body and verifies it over the checkpoint.
fn verify_cosignature(witness: &Witness, checkpoint: &SignedCheckpoint, body: &str) -> Outcome {
    let Ok(note) = Note::parse(&checkpoint.note) else {
        return Outcome::Failed("the checkpoint's own note does not parse".into());
    };
    let lines = body.strip_suffix('\n').unwrap_or(body);
    let mut found = None;
    for text in lines.split('\n') {
        let Ok(line) = SignatureLine::parse(text) else {
            return Outcome::Failed(format!(
                "its answer is not signature lines: {}",
                first_line(text)
            ));
        };
        if witness.key.claims(&line) {
            found = Some(line);
        }
    }
    let Some(line) = found else {
        return Outcome::Failed("its answer holds no cosignature by its key".into());
    };
    match witness.key.verify_line(&note.text, &line) {
        Ok(Some(time)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.as_secs())
                .unwrap_or_default();
            if time > now + neuron_events::receipt::MAX_FUTURE_SECONDS {
                return Outcome::Failed(format!("its cosignature is dated {time}, in the future"));
            }
            Outcome::Cosigned(line)
        }
        Ok(None) => Outcome::Failed("its key is not a cosignature key".into()),
        Err(error) => Outcome::Failed(format!("its cosignature does not verify: {error}")),
    }
}

fn first_line(text: &str) -> String {
    neuron_events::narrate::safe(text.lines().next().unwrap_or_default())
        .chars()
        .take(200)
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
