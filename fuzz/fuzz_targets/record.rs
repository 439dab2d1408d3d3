//! Fuzz target `record`: see `neuron_events::fuzzing::record_parsers_agree` for what it holds true of every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| neuron_events::fuzzing::record_parsers_agree(data));
