//! Opening a store with sled, whose recovery panics on some damaged stores: the panic becomes an
//! error naming the store.

use std::path::Path;

use crate::Error;

/// How long opening a log waits for a lock that a just-dropped handle still holds.
pub(super) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled's page cache size (sled's default is 1 GiB). The log is appended and read in order: a
/// larger cache made neither faster (4 and 16 MiB: the same appends, verify and replay times), and
/// it is resident in the server.
pub(super) const SLED_CACHE_BYTES: u64 = 4 << 20;

thread_local! {
    /// Set while this thread has sled recover a store: a panic then is sled's way of saying that the
    /// store is damaged, and is reported as an error instead of printed.
    static RECOVERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Has sled open (and recover) a store. sled 0.34 panics on some damaged stores instead of
/// returning an error ("tried to serialize Uninitialized" for a zeroed range): that panic is caught
/// and becomes [`Error::Unrecoverable`], so a damaged store is refused by name rather than crashing
/// the server or the investigator. A panic hook, installed once and chained to the previous one,
/// keeps such a caught panic from printing; every other panic prints as before.
pub(super) fn recover(config: &sled::Config, path: &Path) -> Result<sled::Result<sled::Db>, Error> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !RECOVERING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    RECOVERING.with(|recovering| recovering.set(true));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
    RECOVERING.with(|recovering| recovering.set(false));
    opened.map_err(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no reason given".into());
        Error::Unrecoverable {
            path: path.to_path_buf(),
            reason,
        }
    })
}

/// Whether another handle (another process, or one of this process just dropped) holds the lock
/// sled takes on a store's data file. sled reports a held lock only as words in an I/O error, so
/// the lock is asked about first, the way sled takes it (an exclusive `flock` on `db`), and
/// released at once: a store that a later holder takes in between fails to open with sled's own
/// error, never mistaken for something else.
pub(super) fn held_by_another(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path.join("db")) else {
        // No data file yet (a new store), or one this process may not read: sled decides.
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}
