//! Fuzz target `wire`: see `neuron::fuzzing::wire_frames_keep_their_limits` for what it holds true of every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| neuron::fuzzing::wire_frames_keep_their_limits(data));
