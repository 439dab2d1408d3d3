//! Fuzz target `timestamp`: see `neuron_events::fuzzing::timestamps_round_trip` for what it holds true of every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| neuron_events::fuzzing::timestamps_round_trip(data));
