//! The opened log folded into the views and metrics, the journal started on it, and what a start
//! records: `server.started`, the providers' changes, conflicts the witnesses saw settled.

use std::path::Path;

use tracing::warn;

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use neuron_events::event::*;
use neuron_events::{
    BatchReport, Clock, Event, Journal, JournalOptions, Log, LogHead, NeuronKey, Record,
};
use neuron_projections::Views;

use crate::config::Config;
use crate::server::error::{io_error, ServerError};
use crate::server::metrics::{Metrics, SessionSeen};

use super::open::{store_error, Store};

/// The journal that appends to the store, and the views and metrics it keeps current: both are
/// rebuilt from the stored log first, then fed every committed batch.
pub(in crate::server) struct Serving {
    pub(in crate::server) journal: Journal,
    pub(in crate::server) views: Arc<RwLock<Views>>,
    pub(in crate::server) metrics: Arc<Mutex<Metrics>>,
}

/// Folds the store into the views and metrics and starts the journal on it, signing with `key`.
pub(in crate::server) fn journal_over(
    store: Store,
    clock: Arc<dyn Clock>,
    config: &Config,
) -> Result<Serving, ServerError> {
    let refuse = store_error(store.place.clone());
    let mut recalled = Metrics::default();
    let views =
        rebuild(store.log.as_ref(), store.head, &mut recalled).map_err(|error| match error {
            ServerError::Log(error) => refuse(error),
            other => other,
        })?;
    let views = Arc::new(RwLock::new(views));
    let metrics = Arc::new(Mutex::new(recalled));
    let (observed, counted) = (views.clone(), metrics.clone());
    let observer = move |records: &[Record], report: &BatchReport| {
        // Each record is counted with what the view held of its session just before it (the
        // view follows sessions; the metrics keep none of it). Taken while folding, so that the
        // views' lock, which every handshake step reads under, is never held waiting for the
        // metrics' (a scrape renders under it).
        let seen: Vec<SessionSeen> = {
            let mut views = observed.write().unwrap_or_else(PoisonError::into_inner);
            records
                .iter()
                .map(|record| {
                    let seen = SessionSeen::of(
                        record
                            .session
                            .as_deref()
                            .and_then(|id| views.sessions.get(id)),
                    );
                    views.apply(record);
                    seen
                })
                .collect()
        };
        {
            let mut metrics = counted.lock().unwrap_or_else(PoisonError::into_inner);
            for (record, seen) in records.iter().zip(seen) {
                metrics.observe(record, seen);
            }
            metrics.observe_batch(report);
        }
        for record in records {
            if let EventData::ServerClockBehind(behind) = &record.event {
                tracing::warn!(
                    "the wall clock reads {} but the log's latest record is stamped {}: the clock is {} ms behind the log (recorded at seq {}). Records carry the wall clock from here on, so the log's times step back here; replay --until-time counts a time as reached at the last record stamped at or before it (README: time across a clock step). Check the clock (NTP) of this machine and of the run before",
                    behind.now,
                    behind.last_at,
                    behind.behind_ms,
                    record.seq
                );
            }
        }
    };
    let journal = Journal::start(
        store.log,
        Arc::new(store.key),
        clock,
        JournalOptions {
            checkpoint_every: config.audit.checkpoint_every,
            origin: config.origin(),
            ..JournalOptions::default()
        },
        Box::new(observer),
    )
    .map_err(&refuse)?;
    Ok(Serving {
        journal,
        views,
        metrics,
    })
}

/// What a start records: `server.started`, then the provider changes that bring the log in line
/// with the configuration.
pub(in crate::server) fn startup_events(
    config: &Config,
    public_key: String,
    decision: Option<String>,
    views: &Views,
) -> Vec<Event> {
    let mut startup = vec![Event::global(EventData::ServerStarted(ServerStarted {
        version: env!("CARGO_PKG_VERSION").into(),
        public_key,
        organization_npi: config.organization.npi.clone(),
        config_digest: config.digest(),
        origin: Some(config.origin()),
        decision,
    }))];
    startup.extend(provider_changes(config, views));
    startup
}

/// What a witness conflict the log holds means for this start: without an operator's
/// acknowledgement, the log is not served; with it, the loss is recorded for good
/// (`log.rollback_acknowledged`, the sizes witnesses had seen beyond this log) and the start goes
/// on.
pub(in crate::server) async fn settle_conflicts(
    serving: &Serving,
    acknowledge: bool,
) -> Result<(), ServerError> {
    let conflicts: Vec<LogWitnessConflict> = {
        let views = serving.views.read().unwrap_or_else(PoisonError::into_inner);
        views
            .witnesses
            .conflicts()
            .iter()
            .map(|conflict| conflict.conflict.clone())
            .collect()
    };
    let Some(widest) = conflicts
        .iter()
        .max_by_key(|conflict| conflict.witness_size)
    else {
        return Ok(());
    };
    let our_size = conflicts
        .iter()
        .map(|conflict| conflict.our_size)
        .min()
        .unwrap_or_default();
    if !acknowledge {
        return Err(ServerError::RolledBack {
            reason: format!(
                "the log records that witness {} cosigned a tree of {} records this log (at {} records) does not extend: it was rolled back or forked",
                widest.witness, widest.witness_size, our_size
            ),
        });
    }
    let lost = SeqRange {
        first: our_size.saturating_add(1),
        last: widest.witness_size.max(our_size.saturating_add(1)),
    };
    warn!(
        first = lost.first,
        last = lost.last,
        "rollback acknowledged: recorded in the log"
    );
    serving
        .journal
        .append(Event::global(EventData::LogRollbackAcknowledged(
            LogRollbackAcknowledged {
                lost,
                by: "operator (neuron serve --acknowledge-rollback)".into(),
            },
        )))
        .await?;
    Ok(())
}

/// Writes the log's verifier key to `{data_dir}/neuron.vkey` (public: the Neuron's public key under
/// the log's origin), where an operator or the demo client finds what patients' agents check
/// receipts against. `neuron vkey` prints the same.
pub(in crate::server) fn write_vkey(
    data_dir: &Path,
    key: &NeuronKey,
    origin: &str,
) -> Result<(), ServerError> {
    let vkey = key.verifier_key(origin).map_err(|error| {
        ServerError::Config(crate::config::ConfigError::Invalid {
            key: "audit.origin".into(),
            reason: error.to_string(),
        })
    })?;
    let path = data_dir.join("neuron.vkey");
    std::fs::write(&path, format!("{}\n", vkey.to_text()))
        .map_err(io_error(format!("write {}", path.display())))
}

/// Folds the stored log into the views, record by record (start-up memory does not grow with the
/// length of the log), checking on the way that it is one unbroken chain ending at the store's
/// head: the server never appends onto a log that does not verify.
fn rebuild(
    log: &dyn Log,
    stored_head: LogHead,
    metrics: &mut Metrics,
) -> Result<Views, ServerError> {
    let mut views = Views::serving();
    let mut expected = 1;
    let mut head = neuron_events::Digest::GENESIS;
    let mut failure = None;
    log.scan(1, u64::MAX, &mut |seq, bytes| {
        if failure.is_some() {
            return;
        }
        match Record::decode(bytes) {
            Ok(record) if record.seq == seq && seq == expected && record.prev == head => {
                views.apply(&record);
                metrics.recall(&record);
                head = record.hash;
                expected += 1;
            }
            Ok(_) if seq != expected => {
                failure = Some((expected, format!("record {expected} is missing")));
            }
            Ok(_) => {
                failure = Some((seq, "it does not continue the chain".to_string()));
            }
            Err(error) => failure = Some((seq, error.to_string())),
        }
    })?;
    if failure.is_none() && (expected - 1, head) != (stored_head.seq, stored_head.hash) {
        // A damaged store can answer for its last record yet not read back the ones before it.
        failure = Some((
            expected,
            format!(
                "the store's last record is seq {}, but reading it back ends at seq {}",
                stored_head.seq,
                expected - 1
            ),
        ));
    }
    match failure {
        Some((seq, reason)) => Err(ServerError::Damaged { seq, reason }),
        None => Ok(views),
    }
}

/// The provider events that bring the providers view in line with the configuration. The
/// configuration governs the providers it lists and those it registered earlier; providers the
/// operator API registered stay when they are not in the file, and a listed provider that the API
/// removed stays removed (the API registers it again).
fn provider_changes(config: &Config, views: &Views) -> Vec<Event> {
    let mut changes = Vec::new();
    for provider in &config.providers {
        let current = views.providers.get(&provider.npi);
        if let Some(known) =
            current.filter(|known| !known.registered && known.changed_by == ChangeSource::Api)
        {
            warn!(
                npi = %known.npi,
                "provider listed in the configuration stays removed: the operator API removed it"
            );
            continue;
        }
        if current.is_none_or(|known| !known.registered || known.name != provider.name) {
            changes.push(Event::global(EventData::ProviderRegistered(
                ProviderChanged {
                    npi: provider.npi.clone(),
                    name: provider.name.clone(),
                    by: ChangeSource::Config,
                },
            )));
        }
    }
    for known in views.providers.registered() {
        if known.changed_by == ChangeSource::Config
            && !config
                .providers
                .iter()
                .any(|provider| provider.npi == known.npi)
        {
            changes.push(Event::global(EventData::ProviderRemoved(ProviderChanged {
                npi: known.npi.clone(),
                name: known.name.clone(),
                by: ChangeSource::Config,
            })));
        }
    }
    changes
}
