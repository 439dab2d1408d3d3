//! The one parallel reader every pass over a log goes through: items (blocks of an export, seq
//! ranges of a store, batches of entries) are handed out to worker threads, one per core up to
//! four, and their results come back in the order of the items. At most two items per worker are
//! in flight, so memory stays bounded whatever the length of the log.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::{self, Scope};

/// How many workers a pass uses: one per core, at most four.
pub fn workers() -> usize {
    thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
}

/// Results of `work` over items, in item order (an iterator, so the caller may stop early).
pub struct Ordered<'scope, T, U> {
    items: Box<dyn Iterator<Item = T> + 'scope>,
    workers: Vec<(mpsc::SyncSender<T>, mpsc::Receiver<U>)>,
    in_flight: VecDeque<usize>,
    next_worker: usize,
    exhausted: bool,
}

/// Starts workers in `scope` that apply `work` to each item of `items`.
pub fn ordered<'scope, 'env, T, U, I, F>(
    scope: &'scope Scope<'scope, 'env>,
    items: I,
    work: &'scope F,
) -> Ordered<'scope, T, U>
where
    T: Send + 'scope,
    U: Send + 'scope,
    I: Iterator<Item = T> + 'scope,
    F: Fn(T) -> U + Sync,
{
    let workers = (0..workers())
        .map(|_| {
            let (to_worker, handed) = mpsc::sync_channel::<T>(2);
            let (to_caller, done) = mpsc::sync_channel::<U>(2);
            scope.spawn(move || {
                for item in handed {
                    if to_caller.send(work(item)).is_err() {
                        break;
                    }
                }
            });
            (to_worker, done)
        })
        .collect();
    Ordered {
        items: Box::new(items),
        workers,
        in_flight: VecDeque::new(),
        next_worker: 0,
        exhausted: false,
    }
}

impl<T, U> Ordered<'_, T, U> {
    fn fill(&mut self) {
        while !self.exhausted && self.in_flight.len() < self.workers.len() * 2 {
            let Some(item) = self.items.next() else {
                self.exhausted = true;
                break;
            };
            let worker = self.next_worker;
            self.next_worker = (worker + 1) % self.workers.len();
            if self.workers[worker].0.send(item).is_err() {
                self.exhausted = true;
                break;
            }
            self.in_flight.push_back(worker);
        }
    }
}

impl<T, U> Iterator for Ordered<'_, T, U> {
    type Item = U;

    fn next(&mut self) -> Option<U> {
        self.fill();
        let worker = self.in_flight.pop_front()?;
        self.workers[worker].1.recv().ok()
    }
}

impl<T, U> Drop for Ordered<'_, T, U> {
    fn drop(&mut self) {
        // Workers end when their channel closes; results still in flight are dropped with it.
        self.workers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order_and_a_caller_may_stop_early() {
        let work = |item: u64| {
            // Uneven work, so that workers finish out of order.
            thread::sleep(std::time::Duration::from_micros((item * 7919) % 300));
            item * 2
        };
        let all: Vec<u64> = thread::scope(|scope| ordered(scope, 0..500u64, &work).collect());
        assert_eq!(all, (0..500).map(|item| item * 2).collect::<Vec<_>>());
        let first: Vec<u64> =
            thread::scope(|scope| ordered(scope, 0..u64::MAX, &work).take(3).collect());
        assert_eq!(first, vec![0, 2, 4]);
    }
}
