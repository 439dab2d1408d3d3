//! Fuzz target `admin`: see `neuron::fuzzing::Operator::requests_get_documented_answers` for what
//! it holds true of every request.
#![no_main]

use std::sync::OnceLock;

static OPERATOR: OnceLock<neuron::fuzzing::Operator> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    OPERATOR
        .get_or_init(|| {
            let records = neuron_events::testing::fixed_log()
                .unwrap_or_else(|error| panic!("the fixed log: {error}"));
            neuron::fuzzing::Operator::over(records)
        })
        .requests_get_documented_answers(data)
});
