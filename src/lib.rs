//! The Neuron: an organization's trust broker for patient agents. The handshake itself (wire,
//! consent, the pure state machine) is the `neuron-handshake` crate, the log `neuron-events`, the
//! views `neuron-projections`; this crate is everything with I/O around them.
//!
//! - `audit`: the log's evidence as it is served: checkpoints, consistency and inclusion
//!   proofs.
//! - [`config`]: configuration from defaults, a TOML file, the environment and flags.
//! - [`ids`]: session ids, relationship ids and nonces (random, or seeded for tests).
//! - [`server`]: the handshake listener: admission, sessions, the shared live state, metrics,
//!   start and stop.
//! - [`operator`]: the operator listener: health, metrics, live views, providers, termination,
//!   audit.
//! - [`investigate`]: `neuron verify`, `replay`, `timeline` and `export` over a data directory, a
//!   sled log or an export, offline.
//! - [`restore`]: a data directory rebuilt from a verified export.
//! - [`tools`]: the demo client, the load generator, the self-check.

// Every error this crate's own code meets is handled; its tests may unwrap (a panic is a failed
// test).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub(crate) mod audit;
pub mod config;
#[doc(hidden)]
#[cfg(feature = "test-support")]
pub mod fuzzing;
pub mod ids;
pub mod investigate;
pub mod operator;
pub mod restore;
pub mod server;
pub mod tools;
