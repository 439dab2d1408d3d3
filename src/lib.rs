//! The Neuron: an organization's trust broker for patient agents.
//!
//! - [`selfcheck`]: writes a short, real handshake story through the durable log and verifies it,
//!   so an operator can see on a fresh machine that the log works.
//!
//! The server, the consent verification and the handshake state machine come here next (see
//! ARCHITECTURE.md); the event log lives in `neuron-events` and the views in `neuron-projections`.

pub mod selfcheck;
