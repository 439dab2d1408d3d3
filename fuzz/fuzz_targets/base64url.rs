//! Fuzz target `base64url`: see `neuron_events::fuzzing::base64url_round_trips` for what it holds true of every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| neuron_events::fuzzing::base64url_round_trips(data));
