//! `neuron loadgen`: real WebSocket patient agents against a running server, each with its own key.
//! Keys are made and consent tokens signed before the measured phase (on every core), so that the
//! numbers are the server's; the challenge is answered live. A handshake counts only when
//! `handshake.complete` arrives and the socket closes with 1000.
//! Reports handshakes/s and latency percentiles; `idle` mode instead holds upgrade requests open
//! (for measuring what a full queue costs the server).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tools::client::{self, Patient};

/// What each simulated patient does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every handshake is a new patient: a new relationship each time.
    New,
    /// Each worker's patient is established once (not counted), then handshakes again and again
    /// with the same key: `existing` every time.
    Existing,
    /// Open the upgrade request and hold it, sending nothing, until the server answers or closes.
    Idle,
}

/// The load to apply.
#[derive(Clone, Debug)]
pub struct Load {
    /// The handshake URL.
    pub url: String,
    /// Handshakes (or held connections) in all.
    pub total: u64,
    /// Concurrent clients.
    pub concurrency: u64,
    /// What they do.
    pub mode: Mode,
    /// The provider the consents name.
    pub provider: String,
    /// Whether each handshake asks for a consent receipt.
    pub receipt: bool,
}

/// What the load achieved.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Handshakes completed (complete + close 1000).
    pub completed: u64,
    /// Attempts that did not complete.
    pub failed: u64,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Latencies of completed handshakes, sorted.
    pub latencies: Vec<Duration>,
    /// The relationship id of every `handshake.complete` received, whether or not the close that
    /// follows arrived: what the server acknowledged, which its log must hold.
    pub acknowledged: Vec<String>,
}

impl Summary {
    /// The latency at quantile `q` (0..=1).
    pub fn percentile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)]
    }

    /// Completed handshakes per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if getrandom::getrandom(&mut seed).is_err() {
        // Load keys need not be secret; a time-derived seed still gives each patient its own key.
        seed = *blake3::hash(format!("{:?}", Instant::now()).as_bytes()).as_bytes();
    }
    seed
}

/// A patient ready to go: its key made and its consent token signed before the measured phase,
/// so that the numbers are the server's, not the load tool's key generation.
struct Ready {
    patient: Patient,
    auth: String,
}

impl Ready {
    fn new(agent_id: String, provider: &str, receipt: bool) -> Self {
        let patient = Patient::from_seed(&agent_id, random_seed());
        let now = now_seconds();
        let claims = patient.claims(provider, now - 60, now + 3600);
        let auth = if receipt {
            patient.auth_frame_with_receipt(&claims)
        } else {
            patient.auth_frame(&claims)
        };
        Self { patient, auth }
    }
}

/// `count` patients made on every core.
fn prepare(
    count: u64,
    name: impl Fn(u64) -> String + Sync,
    provider: &str,
    receipt: bool,
) -> Vec<Ready> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    let share = count.div_ceil(threads.max(1));
    std::thread::scope(|scope| {
        let makers: Vec<_> = (0..threads)
            .map(|thread| {
                let name = &name;
                scope.spawn(move || {
                    (thread * share..((thread + 1) * share).min(count))
                        .map(|index| Ready::new(name(index), provider, receipt))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        makers
            .into_iter()
            .flat_map(|maker| maker.join().unwrap_or_default())
            .collect()
    })
}

/// Applies the load and returns what it achieved.
pub async fn run(load: Load) -> Summary {
    let run_id = crate::ids::IdSource::session_id(&crate::ids::RandomIds);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let concurrency = load.concurrency.clamp(1, load.total.max(1));
    // New mode: a patient per handshake; existing mode: one per worker, established first, its
    // consent token shown again each time. All made outside the measurement.
    let (per_worker, fresh) = match load.mode {
        Mode::New => (0, load.total),
        Mode::Existing => (concurrency, 0),
        Mode::Idle => (0, 0),
    };
    let provider = load.provider.clone();
    let receipt = load.receipt;
    let made = tokio::task::spawn_blocking(move || {
        let workers = prepare(
            per_worker,
            |worker| format!("loadgen-{run_id}-{worker}"),
            &provider,
            receipt,
        );
        let fresh = prepare(
            fresh,
            |index| format!("loadgen-{run_id}-n{index}"),
            &provider,
            receipt,
        );
        (workers, fresh)
    })
    .await;
    let (workers_ready, fresh) = made.unwrap_or_default();
    let fresh = Arc::new(fresh);
    for ready in &workers_ready {
        let _ = client::handshake_with(&load.url, None, &ready.patient, ready.auth.clone()).await;
    }
    let mut workers_ready = workers_ready.into_iter();
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (load, next, failed) = (load.clone(), next.clone(), failed.clone());
            let fresh = Arc::clone(&fresh);
            let own = workers_ready.next();
            tokio::spawn(async move { work(&load, &next, &failed, &fresh, own.as_ref()).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut acknowledged = Vec::new();
    for worker in workers {
        if let Ok((mut measured, mut ids)) = worker.await {
            latencies.append(&mut measured);
            acknowledged.append(&mut ids);
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Summary {
        completed: latencies.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        latencies,
        acknowledged,
    }
}

/// One concurrent client: takes the next handshake until all are taken; returns the latency of
/// each completed one and the relationship ids the server acknowledged.
async fn work(
    load: &Load,
    next: &AtomicU64,
    failed: &AtomicU64,
    fresh: &[Ready],
    own: Option<&Ready>,
) -> (Vec<Duration>, Vec<String>) {
    let mut latencies = Vec::new();
    let mut acknowledged = Vec::new();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= load.total {
            break;
        }
        let begun = Instant::now();
        let ready = match load.mode {
            Mode::New => usize::try_from(index)
                .ok()
                .and_then(|index| fresh.get(index)),
            Mode::Existing => own,
            Mode::Idle => None,
        };
        let ok = attempt(load, ready, &mut acknowledged).await;
        if ok {
            latencies.push(begun.elapsed());
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    (latencies, acknowledged)
}

/// One handshake with `ready`'s patient (or, in idle mode, one connection held until the server
/// answers): whether it completed; the relationship id acknowledged goes to `acknowledged`.
async fn attempt(load: &Load, ready: Option<&Ready>, acknowledged: &mut Vec<String>) -> bool {
    match ready {
        Some(ready) => {
            match client::handshake_with(&load.url, None, &ready.patient, ready.auth.clone()).await
            {
                Ok(transcript) => {
                    acknowledged.extend(transcript.relationship_id());
                    transcript.completed()
                }
                Err(_) => false,
            }
        }
        None => {
            if load.mode == Mode::Idle {
                // Held until the server answers (503, or a 101 and a timeout).
                if let Ok(mut connection) = client::connect(&load.url, None).await {
                    let _ = client::converse(&mut connection, Vec::new(), None).await;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_from_the_sorted_latencies_by_nearest_rank() {
        let summary = Summary {
            completed: 100,
            failed: 0,
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(Duration::from_millis).collect(),
            acknowledged: Vec::new(),
        };
        let ms = |q| summary.percentile(q).as_millis();
        assert_eq!(
            (ms(0.0), ms(0.5), ms(0.9), ms(0.99), ms(1.0)),
            (1, 51, 90, 99, 100)
        );
        assert_eq!(summary.rate(), 50.0);
        let empty = Summary {
            completed: 0,
            failed: 3,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            acknowledged: Vec::new(),
        };
        assert_eq!(
            (empty.percentile(0.99), empty.rate()),
            (Duration::ZERO, 0.0)
        );
    }
}
