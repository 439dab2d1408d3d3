//! What a server is given besides its configuration: the seams tests replace, and what the
//! operator decided at start.

use std::sync::Arc;

use neuron_events::{Clock, NeuronKey};

use crate::ids::IdSource;

/// What the server is given besides its configuration: the seams tests replace.
pub struct Options {
    /// The clock stamped on records and used for token times.
    pub clock: Arc<dyn Clock>,
    /// Session ids, relationship ids and nonces.
    pub ids: Arc<dyn IdSource>,
    /// The Neuron's key; `None` loads or creates `{data_dir}/neuron.key`.
    pub key: Option<NeuronKey>,
    /// Accept the loss a witness conflict in the log proves, and record it
    /// (`neuron serve --acknowledge-rollback`); without it such a log is not served.
    pub acknowledge_rollback: bool,
    /// Start over without the log or without the key, which a start otherwise refuses when the
    /// other is there (`neuron serve --new-log` / `--new-key`); recorded in `server.started`.
    pub start_over: StartOver,
}

/// What a start may begin anew when part of a data directory is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartOver {
    /// Nothing: a key without a log, or a log without its key, is refused.
    #[default]
    Nothing,
    /// An empty log beside an existing key (`--new-log`): every relationship is gone.
    Log,
    /// A new key for an existing log (`--new-key`): receipts and checkpoints signed before
    /// stay checkable against the old key only.
    Key,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(neuron_events::SystemClock),
            ids: Arc::new(crate::ids::RandomIds),
            key: None,
            acknowledge_rollback: false,
            start_over: StartOver::Nothing,
        }
    }
}
