//! Fuzz target `jsonl`: see `neuron_events::fuzzing::lines_split_as_planned` for what it holds true of every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| neuron_events::fuzzing::lines_split_as_planned(data));
