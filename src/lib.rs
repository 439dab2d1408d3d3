//! The Neuron: an organization's trust broker for patient agents.
//!
//! - [`admin`]: the operator listener: health, metrics, live views, providers, termination, audit.
//! - [`metrics`]: the counters and histograms behind `/metrics`.
//! - [`client`]: a patient agent's side of the handshake (demo client, load tool, tests).
//! - [`config`]: configuration from defaults, a TOML file, the environment and flags.
//! - [`fhir`]: the log as a FHIR R4 Bundle of AuditEvents (`neuron export --format fhir`).
//! - [`loadgen`]: the load tool: real WebSocket patients, handshakes/s and latency percentiles.
//! - [`investigate`]: `neuron verify` and `neuron export` over a data directory, a sled log or an export.
//! - [`ids`]: session ids, relationship ids and nonces (random, or seeded for tests).
//! - [`server`]: the warp server: WebSocket route, ceiling and queue, sessions, graceful stop.
//! - [`selfcheck`]: a durable-log self-check for a fresh machine.
//! - [`restore`]: a data directory rebuilt from a verified export.

pub mod client;
pub mod config;
pub mod fhir;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod investigate;
pub mod loadgen;
pub mod metrics;
pub mod operator;
pub mod restore;
pub mod selfcheck;
pub mod server;
