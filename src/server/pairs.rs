//! One decision at a time per (patient, provider): the lock a session holds from the step that
//! answers its challenge until that step's records are committed (SPEC §2.3 steps 4 and 7).
//!
//! The step decides `new` or `existing` from the views, and the views change only once a batch is
//! durable. Two sessions of one pair deciding at once would both see no relationship and both
//! establish one; holding this lock across step and commit, the second decides only after the
//! first's records are in the views, so it sees them. Sessions of different pairs never wait for
//! each other. An entry lives only while someone holds or awaits it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedMutexGuard;

type Pair = (String, String);

/// One pair's lock and how many sessions hold or await it.
#[derive(Default)]
struct Entry {
    users: usize,
    mutex: Arc<tokio::sync::Mutex<()>>,
}

/// The locks of the pairs being decided now.
#[derive(Default)]
pub(crate) struct PairLocks {
    held: Mutex<HashMap<Pair, Entry>>,
}

/// Held while one pair's decision is stepped and committed; dropping it lets the next one decide.
/// It exists from the moment its session starts waiting, so a wait given up midway (its future
/// dropped) still gives back its place.
pub(crate) struct PairGuard<'a> {
    locks: &'a PairLocks,
    pair: Pair,
    guard: Option<OwnedMutexGuard<()>>,
}

impl PairLocks {
    fn held(&self) -> MutexGuard<'_, HashMap<Pair, Entry>> {
        // Every change to the map is one call: a poisoned lock still guards a consistent map.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no other decision of this pair is in flight, then holds it.
    pub(crate) async fn lock(&self, patient_agent_id: &str, provider_npi: &str) -> PairGuard<'_> {
        let pair = (patient_agent_id.to_owned(), provider_npi.to_owned());
        let mutex = {
            let mut held = self.held();
            let entry = held.entry(pair.clone()).or_default();
            entry.users += 1;
            Arc::clone(&entry.mutex)
        };
        let mut guard = PairGuard {
            locks: self,
            pair,
            guard: None,
        };
        guard.guard = Some(mutex.lock_owned().await);
        guard
    }

    /// How many pairs are held or awaited.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held().len()
    }
}

impl Drop for PairGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut held = self.locks.held();
        if let Some(entry) = held.get_mut(&self.pair) {
            entry.users = entry.users.saturating_sub(1);
            if entry.users == 0 {
                held.remove(&self.pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_pair_is_decided_by_one_session_at_a_time_and_other_pairs_never_wait() {
        let locks = Arc::new(PairLocks::default());
        let first = locks.lock("ada", "1234567893").await;
        let other_pair = locks.lock("bob", "1234567893").await;
        drop(other_pair);

        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _second = locks.lock("ada", "1234567893").await;
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !waiter.is_finished(),
            "the second decision waits for the first"
        );
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0, "nothing is kept once no one holds a pair");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_given_up_mid_wait_leaves_nothing_behind() {
        let locks = PairLocks::default();
        let first = locks.lock("ada", "1234567893").await;
        let abandoned =
            tokio::time::timeout(Duration::from_secs(1), locks.lock("ada", "1234567893")).await;
        assert!(abandoned.is_err());
        drop(first);
        assert_eq!(locks.len(), 0);
    }
}
