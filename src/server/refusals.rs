//! Connections turned away before a session exists (queue full, connection limit) are counted,
//! not recorded one by one (SPEC §2.5): a flood costs one `connection.refused` summary per reason
//! per second, naming up to 16 peers with their counts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use neuron_events::event::{ConnectionRefused, EventData, PeerCount, RefuseReason};
use neuron_events::{Event, Timestamp};

/// Peers named in one summary at most.
pub(crate) const MAX_PEERS: usize = 16;

/// The refusals of one reason since the last summary.
#[derive(Debug)]
struct Tally {
    count: u64,
    first_at: Timestamp,
    last_at: Timestamp,
    peers: Vec<PeerCount>,
}

/// Refusals counted since the last summaries were taken.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    tallies: Mutex<BTreeMap<RefuseReason, Tally>>,
}

impl Refusals {
    fn tallies(&self) -> std::sync::MutexGuard<'_, BTreeMap<RefuseReason, Tally>> {
        // A panic while counting cannot leave a tally half-updated in a way that matters: at
        // worst one refusal is miscounted.
        self.tallies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one connection from `peer` turned away for `reason` at `at`.
    pub(crate) fn count(&self, reason: RefuseReason, peer: IpAddr, at: Timestamp) {
        let mut tallies = self.tallies();
        let tally = tallies.entry(reason).or_insert_with(|| Tally {
            count: 0,
            first_at: at,
            last_at: at,
            peers: Vec::new(),
        });
        tally.count += 1;
        tally.last_at = at;
        let peer = peer.to_string();
        match tally.peers.iter().position(|known| known.peer == peer) {
            Some(known) => tally.peers[known].count += 1,
            None if tally.peers.len() < MAX_PEERS => tally.peers.push(PeerCount { peer, count: 1 }),
            None => {}
        }
    }

    /// The summaries of everything counted since the last call, one per reason, and a fresh
    /// start.
    pub(crate) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.tallies())
            .into_iter()
            .map(|(reason, tally)| {
                Event::global(EventData::ConnectionRefused(ConnectionRefused {
                    reason,
                    count: tally.count,
                    first_at: tally.first_at,
                    last_at: tally.last_at,
                    peers: tally.peers,
                }))
            })
            .collect()
    }
}

/// Records the summaries once a second, while the server serves (a stop records the last ones).
pub(crate) async fn summarize(
    live: std::sync::Arc<super::live::Live>,
    refusals: std::sync::Arc<Refusals>,
) {
    let mut every_second = tokio::time::interval(std::time::Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every_second.tick().await;
        for summary in refusals.take() {
            if live.journal.append(summary).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_becomes_one_summary_per_reason_naming_sixteen_peers() {
        let refusals = Refusals::default();
        let at = |millis| Timestamp::saturating_from_millis(millis);
        for index in 0..200u32 {
            let peer = IpAddr::from([10, 0, (index / 256) as u8, (index % 20) as u8]);
            refusals.count(RefuseReason::QueueFull, peer, at(1000 + i64::from(index)));
        }
        refusals.count(
            RefuseReason::ConnectionLimit,
            IpAddr::from([127, 0, 0, 1]),
            at(1500),
        );
        let summaries = refusals.take();
        assert_eq!(summaries.len(), 2);
        let EventData::ConnectionRefused(full) = &summaries[0].data else {
            panic!("not a summary: {:?}", summaries[0]);
        };
        assert_eq!(
            (full.reason, full.count, full.first_at, full.last_at),
            (RefuseReason::QueueFull, 200, at(1000), at(1199))
        );
        assert_eq!(full.peers.len(), MAX_PEERS);
        assert_eq!(full.peers[0].count, 10, "each of 20 peers sent 10");
        assert!(refusals.take().is_empty(), "counted once");
    }
}
