//! The fixed values every test starts from: the Neuron's key, the clock, the story's ids, and
//! where snapshots go.

use crate::time::{SteppingClock, Timestamp};
use crate::NeuronKey;

/// The seed of the Neuron's key in every test.
pub const NEURON_SEED: [u8; 32] = [0x4e; 32];

/// 2026-11-26T10:00:00.000Z, the first instant of every fixed log.
pub const START_MILLIS: i64 = 1_795_687_200_000;

/// The Neuron's key in every test.
pub fn neuron_key() -> NeuronKey {
    NeuronKey::from_seed(NEURON_SEED)
}

/// A clock that starts at [`START_MILLIS`] and moves 250 ms per reading.
pub fn fixed_clock() -> SteppingClock {
    SteppingClock::new(Timestamp::saturating_from_millis(START_MILLIS), 250)
}

/// The fixed clock a day later: for a restart of a log the fixed clock wrote, whose records it is
/// then not behind (a clock behind the log is recorded as `server.clock_behind`).
pub fn restarted_clock() -> SteppingClock {
    SteppingClock::new(
        Timestamp::saturating_from_millis(START_MILLIS + 86_400_000),
        250,
    )
}

/// insta settings that write every snapshot to the workspace's `snapshots/` folder, named
/// `area__scenario` without a module prefix.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings
}

/// The relationship established in the fixed story.
pub const RELATIONSHIP_ID: &str = "5b0c2a1e-8f3d-4c6b-9a7e-2d4f6b8c0e1a";
/// A patient agent of the fixed story.
pub const PATIENT: &str = "patient-agent-ada";
/// The provider of the fixed story.
pub const PROVIDER: &str = "1234567893";
/// A second provider, removed during the story.
pub const OTHER_PROVIDER: &str = "1245319599";
