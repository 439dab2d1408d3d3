//! The Neuron's handshake domain (SPEC §2): what a patient agent sends and is sent, what makes a
//! consent acceptable, and the handshake as a pure state machine. Inputs in, events and effects
//! out: no socket, no clock, no async runtime (this crate depends on none, so none can creep in).
//!
//! - [`wire`]: the v1 client frames parsed and validated into domain values; the server's frames.
//! - [`consent`]: strict Ed25519 verification of a consent token and its claims.
//! - [`npi`]: the NPI check digit.
//! - [`failure`]: close codes, and the failure a handshake ends with when it does not complete.
//! - [`machine`]: `step(&phase, input, &context) -> Transition`, the handshake itself.

// Every error this crate's own code meets is handled; its tests may unwrap (a panic is a failed
// test).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod consent;
pub mod failure;
pub mod machine;
pub mod npi;
pub mod wire;

pub use failure::{CloseCode, Failure};
pub use machine::{step, Context, Effect, Input, Phase, Transition};
