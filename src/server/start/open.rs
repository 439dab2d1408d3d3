//! Opening the store: the log where the configuration says, the key beside it, what was lost
//! refused by name, and a PostgreSQL log taken over.

use tracing::{info, warn};

use std::sync::Arc;
use std::time::Duration;

use neuron_events::event::*;
use neuron_events::store::LogReader;
use neuron_events::store::{PostgresLocation, PostgresLog};
use neuron_events::{Log, LogHead, NeuronKey, Record, SledLog};

use crate::config::{Backend, Config};
use crate::server::error::{io_error, ServerError};
use crate::server::options::StartOver;

/// The log, opened and checked against the evidence of its acknowledged head, with the Neuron's
/// key.
pub(in crate::server) struct Store {
    pub(super) log: Box<dyn Log>,
    /// Where the log is, for messages: its folder, or its database and name.
    pub(super) place: String,
    pub(super) head: LogHead,
    pub(in crate::server) key: NeuronKey,
    pub(in crate::server) reader: Arc<dyn LogReader>,
    /// What the operator decided to start over, in words, for `server.started`.
    pub(in crate::server) decision: Option<String>,
}

/// Opens the log where `storage.backend` says and the key in `storage.data_dir`. A sled log is
/// opened first: its lock is the data directory's, held before the key file is read or created,
/// so two servers starting on one directory never race for either. A log that lost records it
/// acknowledged is refused before anything is read from it. Blocking: call it off the runtime.
pub(in crate::server) fn open_store(
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
                let log = SledLog::open(&log_dir).map_err(store_error(place.clone()))?;
                (Box::new(log), place)
            }
        };
    let refuse = store_error(place.clone());
    let head = neuron_events::evidence::check(log.as_ref()).map_err(&refuse)?;
    if config.storage.backend == Backend::Sled {
        decision = lost(log.as_ref(), head.seq, &place)?;
    }
    remove_abandoned_restores(data_dir);
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

/// Removes what a restore into `data_dir` left when it was killed midway (its lock no longer
/// held), which would otherwise stay beside it for ever; said in the server's log.
fn remove_abandoned_restores(data_dir: &std::path::Path) {
    match crate::restore::remove_abandoned_staging(data_dir) {
        Ok(removed) => {
            for path in removed {
                warn!(path = %path.display(), "removed the staging folder of a restore that was stopped midway");
            }
        }
        Err(error) => warn!(%error, "could not remove a staging folder a stopped restore left"),
    }
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
        .map_err(store_error(location.describe()))?;
    info!(
        log = %location.describe(),
        epoch = log.epoch().unwrap_or_default(),
        "took the PostgreSQL log over: an earlier writer is fenced at its next batch"
    );
    Ok(log)
}

/// How a log error met while opening the store is reported: damage and lost records refuse the
/// store by name; anything else is the log's error.
pub(in crate::server) fn store_error(
    place: String,
) -> impl Fn(neuron_events::Error) -> ServerError {
    move |error| match error {
        neuron_events::Error::AcknowledgedButAbsent { .. }
        | neuron_events::Error::HeadEvidence { .. }
        | neuron_events::Error::Corrupt { .. } => ServerError::StoreRefused {
            place: place.clone(),
            source: error,
        },
        error if error.is_damage() => ServerError::StoreRefused {
            place: place.clone(),
            source: error,
        },
        error => ServerError::Log(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_store_names_the_place_what_to_do_and_beneath_it_what_is_wrong() {
        let refuse = store_error("data/log".into());
        let error = refuse(neuron_events::Error::AcknowledgedButAbsent { first: 7, last: 9 });
        assert!(matches!(error, ServerError::StoreRefused { .. }));
        assert_eq!(
            neuron_events::full_message(&error),
            "refusing the log at data/log (run `neuron verify` on it and rebuild it from an export with `neuron restore`): records 7..9 acknowledged but absent: the store lost them"
        );
    }
}
