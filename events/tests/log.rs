//! The fixed story's records, locked whole: bytes, times, signatures and hashes. A change here is a
//! change of the log format or of the fixed story, and must be intended.

use neuron_events::testing::fixed_log;
use neuron_events::Record;

#[test]
fn the_fixed_story_records_are_locked() {
    let records = fixed_log().unwrap();
    let text: String = records
        .iter()
        .map(|record| format!("{}\n", String::from_utf8_lossy(record)))
        .collect();
    neuron_events::lock_records!("log__fixed_story", &text);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| Record::decode(r).unwrap().event.kind())
        .collect();
    for kind in neuron_events::EventData::KINDS {
        assert!(kinds.contains(kind), "the fixed story lacks {kind}");
    }
}
