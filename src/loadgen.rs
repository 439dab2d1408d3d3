//! `neuron loadgen`: real WebSocket patient agents against a running server, each with its own key.
//! A handshake counts only when `handshake.complete` arrives and the socket closes with 1000.
//! Reports handshakes/s and latency percentiles; `idle` mode instead holds upgrade requests open
//! (for measuring what a full queue costs the server).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{self, Patient};

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

/// Applies the load and returns what it achieved.
pub async fn run(load: Load) -> Summary {
    let run_id = crate::ids::IdSource::session_id(&crate::ids::RandomIds);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let concurrency = load.concurrency.clamp(1, load.total.max(1));
    // Existing mode: establish each worker's relationship first, outside the measurement.
    let mut patients = Vec::new();
    for worker in 0..concurrency {
        let patient = Patient::from_seed(&format!("loadgen-{run_id}-{worker}"), random_seed());
        if load.mode == Mode::Existing {
            let _ =
                client::handshake(&load.url, None, &patient, &load.provider, now_seconds()).await;
        }
        patients.push(patient);
    }
    let started = Instant::now();
    let workers: Vec<_> = patients
        .into_iter()
        .enumerate()
        .map(|(worker, patient)| {
            let (load, next, failed) = (load.clone(), next.clone(), failed.clone());
            let run_id = run_id.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < load.total {
                    let begun = Instant::now();
                    let ok = match load.mode {
                        Mode::Existing => client::handshake(
                            &load.url,
                            None,
                            &patient,
                            &load.provider,
                            now_seconds(),
                        )
                        .await
                        .is_ok_and(|transcript| transcript.completed()),
                        Mode::New => {
                            let index = latencies.len();
                            let fresh = Patient::from_seed(
                                &format!("loadgen-{run_id}-{worker}-{index}"),
                                random_seed(),
                            );
                            client::handshake(
                                &load.url,
                                None,
                                &fresh,
                                &load.provider,
                                now_seconds(),
                            )
                            .await
                            .is_ok_and(|transcript| transcript.completed())
                        }
                        Mode::Idle => {
                            // Held until the server answers (503 or an eventual 101 and timeout).
                            if let Ok(mut connection) = client::connect(&load.url, None).await {
                                let _ = client::converse(&mut connection, Vec::new(), None).await;
                            }
                            false
                        }
                    };
                    if ok {
                        latencies.push(begun.elapsed());
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        if let Ok(mut measured) = worker.await {
            latencies.append(&mut measured);
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Summary {
        completed: latencies.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}
