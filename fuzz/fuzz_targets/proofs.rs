//! Fuzz target `proofs`: see `neuron_events::fuzzing::proofs_read_totally` for what it holds true of every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| neuron_events::fuzzing::proofs_read_totally(data));
