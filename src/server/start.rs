//! Starting a server: the stored log checked and folded into the views, the configuration's
//! providers reconciled with the log's, the listeners bound, and the process's open-file limit
//! raised to what the listeners may need.

use std::net::SocketAddr;
use std::path::Path;

use tracing::{info, warn};

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use neuron_events::event::*;
use neuron_events::store::LogReader;
use neuron_events::store::{PostgresLocation, PostgresLog};
use neuron_events::{
    BatchReport, Clock, Event, Journal, JournalOptions, Log, LogHead, NeuronKey, Record, SledLog,
};
use neuron_projections::Views;

use super::StartOver;
use super::{io_error, ServerError};
use crate::config::{Backend, Checked, Config};
use crate::server::metrics::Metrics;

/// The log, opened and checked against the evidence of its acknowledged head, with the Neuron's
/// key.
pub(super) struct Store {
    log: Box<dyn Log>,
    /// Where the log is, for messages: its folder, or its database and name.
    place: String,
    head: LogHead,
    pub(super) key: NeuronKey,
    pub(super) reader: Arc<dyn LogReader>,
    /// What the operator decided to start over, in words, for `server.started`.
    pub(super) decision: Option<String>,
}

/// Opens the log where `storage.backend` says and the key in `storage.data_dir`. A sled log is
/// opened first: its lock is the data directory's, held before the key file is read or created,
/// so two servers starting on one directory never race for either. A log that lost records it
/// acknowledged is refused before anything is read from it. Blocking: call it off the runtime.
pub(super) fn open_store(
    config: &Config,
    key: Option<NeuronKey>,
    start_over: StartOver,
) -> Result<Store, ServerError> {
    let data_dir = &config.storage.data_dir;
    let key_path = data_dir.join(neuron_events::checkpoint::KEY_FILE);
    // A key file says a log was signed with it: its log must be there (checked below, and for
    // sled before an empty store is made where the lost one was).
    let key_on_disk = key.is_none() && key_path.symlink_metadata().is_ok();
    let log_missing = |place: &str| ServerError::LogMissing {
        place: place.to_string(),
        key: key_path.display().to_string(),
    };
    let create_data_dir = || {
        std::fs::create_dir_all(data_dir).map_err(io_error(format!(
            "create data directory {}",
            data_dir.display()
        )))
    };
    let lost = |log: &dyn Log, records: u64, place: &str| {
        lost_parts(log, records, key_on_disk, key.is_some(), start_over).map_err(
            |lost| match lost {
                Lost::Log => log_missing(place),
                Lost::Key => ServerError::KeyMissing {
                    place: place.to_string(),
                    records,
                    key: key_path.display().to_string(),
                },
            },
        )
    };
    let mut decision = None;
    let (log, place): (Box<dyn Log>, String) =
        match (config.storage.backend, &config.storage.postgres) {
            (Backend::Postgres, Some(settings)) => {
                // The database first: a log that cannot be had leaves no trace on this machine,
                // and a start refused for a lost key does not fence the writer that has it.
                let log = take_over_postgres(config, settings, &mut |log, place| {
                    decision = lost(log, log.stored_records()?, place)?;
                    Ok(())
                })?;
                create_data_dir()?;
                let place = log.location().describe();
                (Box::new(log), place)
            }
            _ => {
                create_data_dir()?;
                let log_dir = data_dir.join("log");
                let place = log_dir.display().to_string();
                if key_on_disk && !log_dir.exists() && start_over != StartOver::Log {
                    return Err(log_missing(&place));
                }
                let log = SledLog::open(&log_dir).map_err(refusal(place.clone()))?;
                (Box::new(log), place)
            }
        };
    let refuse = refusal(place.clone());
    let head = neuron_events::evidence::check(log.as_ref()).map_err(&refuse)?;
    if config.storage.backend == Backend::Sled {
        decision = lost(log.as_ref(), head.seq, &place)?;
    }
    // What a restore into this directory left when it was killed midway (its lock no longer held)
    // would otherwise stay beside it for ever.
    match crate::restore::remove_abandoned_staging(data_dir) {
        Ok(removed) => {
            for path in removed {
                warn!(path = %path.display(), "removed the staging folder of a restore that was stopped midway");
            }
        }
        Err(error) => warn!(%error, "could not remove a staging folder a stopped restore left"),
    }
    let key = match key {
        Some(key) => key,
        None => NeuronKey::load_or_create(data_dir)?.0,
    };
    let reader = log.reader();
    Ok(Store {
        log,
        place,
        head,
        key,
        reader,
        decision,
    })
}

/// A part of the data directory that is gone while the other is there.
enum Lost {
    Log,
    Key,
}

/// Whether a key without its log, or a log without its key, is started over (and the decision,
/// in words, for `server.started`) or refused. A key injected by the caller has no file to lose;
/// a log whose last record is a restore made without the key is expected to get a new one.
fn lost_parts(
    log: &dyn Log,
    records: u64,
    key_on_disk: bool,
    key_given: bool,
    start_over: StartOver,
) -> Result<Option<String>, Lost> {
    if key_given {
        return Ok(None);
    }
    let decision = match (records, key_on_disk) {
        (0, true) if start_over == StartOver::Log => {
            "a new, empty log beside the existing key (neuron serve --new-log): the log that key signed was lost"
        }
        (0, true) => return Err(Lost::Log),
        (1.., false) if start_over == StartOver::Key => {
            "a new key for this log (neuron serve --new-key): the key that signed it was lost"
        }
        (1.., false) if !restored_without_key(log, records) => return Err(Lost::Key),
        _ => {
            if start_over != StartOver::Nothing {
                warn!(?start_over, "nothing to start over: both the log and the key are there (or neither), and the flag is ignored");
            }
            return Ok(None);
        }
    };
    warn!(
        decision,
        "starting over, as the operator asked: recorded in server.started"
    );
    Ok(Some(decision.to_string()))
}

/// Whether the log's last record is a `log.restored`: a restore made without the key, whose
/// server makes a new one at its first start.
fn restored_without_key(log: &dyn Log, last: u64) -> bool {
    let mut restored = false;
    let _ = log.scan(last, last, &mut |_, bytes| {
        restored = Record::decode(bytes)
            .is_ok_and(|record| matches!(record.event, EventData::LogRestored(_)));
    });
    restored
}

/// Connects to the PostgreSQL log, checks that the cluster replicates commits synchronously
/// (SPEC §3.6), logs its members, and takes the log over, fencing any earlier writer.
fn take_over_postgres(
    config: &Config,
    settings: &crate::config::Postgres,
    before: &mut dyn FnMut(&PostgresLog, &str) -> Result<(), ServerError>,
) -> Result<PostgresLog, ServerError> {
    let location = PostgresLocation::parse(&settings.url)
        .map(|parsed| PostgresLocation {
            log: settings.log.clone(),
            ..parsed
        })
        .map_err(ServerError::Log)?;
    let timeout = Duration::from_millis(settings.commit_timeout_ms);
    let mut log = PostgresLog::connect(&location, timeout)?;
    let replication = log.replication()?;
    for standby in &replication.standbys {
        info!(
            name = %standby.name,
            address = %standby.address,
            state = %standby.state,
            sync_state = %standby.sync_state,
            "PostgreSQL standby (pg_stat_replication)"
        );
    }
    if !replication.is_synchronous() {
        let why = format!(
            "the database does not wait for a synchronous standby (synchronous_standby_names = {:?}, synchronous_commit = {:?})",
            replication.synchronous_standby_names, replication.synchronous_commit
        );
        if settings.require_sync_standbys {
            return Err(ServerError::Unreplicated { reason: why });
        }
        warn!("{why}: an acknowledged handshake can be lost with the primary (storage.postgres.require_sync_standbys = false)");
    } else if replication
        .standbys
        .iter()
        .all(|standby| standby.state.is_empty())
    {
        warn!("pg_stat_replication hides the standbys' state from this role: grant it pg_monitor to see which are synchronous");
    } else if !replication.standbys.iter().any(|standby| {
        standby.state == "streaming" && matches!(standby.sync_state.as_str(), "sync" | "quorum")
    }) {
        warn!(
            synchronous_standby_names = %replication.synchronous_standby_names,
            "no synchronous standby is streaming now: commits wait for one, and a batch no standby confirms within storage.postgres.commit_timeout_ms stops the server"
        );
    }
    before(&log, &location.describe())?;
    log.take_over(Some(&config.origin()))
        .map_err(refusal(location.describe()))?;
    info!(
        log = %location.describe(),
        epoch = log.epoch().unwrap_or_default(),
        "took the PostgreSQL log over: an earlier writer is fenced at its next batch"
    );
    Ok(log)
}

/// How a log error met while opening the store is reported: damage and lost records refuse the
/// store by name; anything else is the log's error.
fn refusal(place: String) -> impl Fn(neuron_events::Error) -> ServerError {
    move |error| match error {
        neuron_events::Error::AcknowledgedButAbsent { .. }
        | neuron_events::Error::HeadEvidence { .. }
        | neuron_events::Error::Corrupt { .. } => ServerError::StoreRefused {
            place: place.clone(),
            reason: error.to_string(),
        },
        error if error.is_damage() => ServerError::StoreRefused {
            place: place.clone(),
            reason: neuron_events::full_message(&error),
        },
        error => ServerError::Log(error),
    }
}

/// The journal that appends to the store, and the views and metrics it keeps current: both are
/// rebuilt from the stored log first, then fed every committed batch.
pub(super) struct Serving {
    pub(super) journal: Journal,
    pub(super) views: Arc<RwLock<Views>>,
    pub(super) metrics: Arc<Mutex<Metrics>>,
}

/// Folds the store into the views and metrics and starts the journal on it, signing with `key`.
pub(super) fn journal_over(
    store: Store,
    clock: Arc<dyn Clock>,
    config: &Config,
) -> Result<Serving, ServerError> {
    let refuse = refusal(store.place.clone());
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
        {
            let mut views = observed.write().unwrap_or_else(PoisonError::into_inner);
            for record in records {
                views.apply(record);
            }
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
        let mut metrics = counted.lock().unwrap_or_else(PoisonError::into_inner);
        for record in records {
            metrics.observe(record);
        }
        metrics.observe_batch(report);
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
pub(super) fn startup_events(
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

/// Both listeners, bound, with the addresses they took.
pub(super) struct Listeners {
    pub(super) public: tokio::net::TcpListener,
    pub(super) public_addr: SocketAddr,
    pub(super) admin: tokio::net::TcpListener,
    pub(super) admin_addr: SocketAddr,
}

/// Binds the public and the operator listener, writing each bound address to the data directory
/// (`serve.addr`, `admin.addr`).
pub(super) async fn bind_both(
    checked: &Checked,
    data_dir: &Path,
) -> Result<Listeners, ServerError> {
    let (public, public_addr) = bind(
        checked.server_addr,
        "the handshake listener",
        data_dir,
        "serve.addr",
    )
    .await?;
    let (admin, admin_addr) = bind(
        checked.admin_addr,
        "the operator listener",
        data_dir,
        "admin.addr",
    )
    .await?;
    Ok(Listeners {
        public,
        public_addr,
        admin,
        admin_addr,
    })
}

/// What a witness conflict the log holds means for this start: without an operator's
/// acknowledgement, the log is not served; with it, the loss is recorded for good
/// (`log.rollback_acknowledged`, the sizes witnesses had seen beyond this log) and the start goes
/// on.
pub(super) async fn settle_conflicts(
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
pub(super) fn write_vkey(
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

/// Binds `addr` and writes the bound address (a chosen port when `addr` asked for 0) to
/// `{data_dir}/{file}`.
async fn bind(
    addr: SocketAddr,
    what: &str,
    data_dir: &Path,
    file: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(io_error(format!("bind {what} {addr}")))?;
    let bound = listener
        .local_addr()
        .map_err(io_error(format!("read the address of {what}")))?;
    write_address(data_dir, file, bound)?;
    Ok((listener, bound))
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

fn write_address(data_dir: &Path, name: &str, addr: SocketAddr) -> Result<(), ServerError> {
    let path = data_dir.join(name);
    std::fs::write(&path, format!("{addr}\n"))
        .map_err(io_error(format!("write {}", path.display())))
}

/// File descriptors kept for everything but the public listener's connections: the log's files,
/// the key, the operator listener's connections, the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft limit on open files to the hard one (logging the result), and returns how many
/// connections the public listener may hold: `server.max_connections`, or fewer when the limit
/// leaves no room for them beside the operator listener and the log, so that a flood of clients
/// can never take the descriptors the operator API and the log need.
pub(super) fn connection_budget(config: &Config) -> u32 {
    let wanted = u64::from(config.server.max_connections);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !known {
        warn!("the open-file limit could not be read; serving up to server.max_connections");
        return config.server.max_connections;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            info!(
                from = limit.rlim_cur,
                to = limit.rlim_max,
                "raised the open-file limit"
            );
            limit = raised;
        } else {
            warn!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "the open-file limit could not be raised"
            );
        }
    }
    let room = limit
        .rlim_cur
        .saturating_sub(RESERVED_DESCRIPTORS + u64::from(config.admin.max_connections))
        .max(1);
    if room < wanted {
        warn!(
            open_file_limit = limit.rlim_cur,
            max_connections = room,
            "server.max_connections is more than the open-file limit leaves room for: serving fewer"
        );
    }
    u32::try_from(room.min(wanted)).unwrap_or(config.server.max_connections)
}
