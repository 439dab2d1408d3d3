//! Tools around the server, not part of it: a patient agent's side of the handshake, the load
//! generator, and the self-check of a fresh machine's durable log.
//!
//! - [`client`]: a patient agent's side of the handshake (demo client, load tool, tests).
//! - [`loadgen`]: real WebSocket patients; handshakes/s and latency percentiles.
//! - [`selfcheck`]: a short story written through the durable log, verified and replayed.

pub mod client;
pub mod loadgen;
pub mod selfcheck;
