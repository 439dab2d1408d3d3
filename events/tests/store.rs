//! Opening a sled log: at once after the previous handle was dropped (a restart in one process),
//! and never while another handle holds it.

use neuron_events::store::Appended;
use neuron_events::{Log, SledLog};

#[test]
fn a_log_reopens_at_once_after_its_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20u64 {
        let mut log = SledLog::open(dir.path()).unwrap();
        assert_eq!(log.last_key().unwrap(), round);
        let seq = round + 1;
        let mut frontier = neuron_events::store::frontier_of(&log).unwrap();
        let appended = Appended::all(
            vec![(seq, format!("record {seq}").into_bytes())],
            &mut frontier,
        );
        log.append(&appended).unwrap();
        assert_eq!(log.tree_size().unwrap(), seq);
        drop(log);
    }
}

#[test]
fn a_log_held_by_another_handle_is_refused_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledLog::open(dir.path()).unwrap();
    let second = SledLog::open(dir.path()).map(|_| ());
    assert!(
        matches!(&second, Err(neuron_events::Error::Locked { path }) if path == dir.path()),
        "{second:?}"
    );
    let message = second
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(message.contains("in use by another process"), "{message}");
}
