//! What the witnesses have done, as the server shares it with `/ready`, the metrics and the
//! checkpoint routes: each witness's state, the latest witnessed checkpoint and a conflict. The
//! witness client (`witnesses.rs`) writes it; `Live` holds it. A leaf: it imports nothing of the
//! server.

use std::collections::HashMap;

/// What one witness has done, as `/ready`, the metrics and the checkpoint routes read it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WitnessState {
    /// The witness.
    pub name: String,
    /// The tree size it last cosigned (from the log at start, then from its answers).
    pub cosigned_size: u64,
    /// Rounds since it last cosigned the checkpoint it was sent (0: it cosigned the last one).
    pub rounds_behind: u32,
    /// Why the last submission failed, if it did.
    pub last_failure: Option<String>,
}

/// The state the server shares with the operator listener.
#[derive(Debug, Default)]
pub struct WitnessBoard {
    pub(super) witnesses: Vec<WitnessState>,
    /// The latest checkpoint with a quorum of cosignatures, its note with them.
    pub(super) witnessed: Option<(u64, String)>,
    /// The unacknowledged conflict, in words.
    pub(super) conflict: Option<String>,
    /// Cosignature and failure counts by witness, for the metrics.
    pub(super) counts: HashMap<String, (u64, u64)>,
}

impl WitnessBoard {
    /// Each witness's state.
    pub fn witnesses(&self) -> &[WitnessState] {
        &self.witnesses
    }

    /// The latest witnessed checkpoint: its size and its note, cosignatures included.
    pub fn witnessed(&self) -> Option<&(u64, String)> {
        self.witnessed.as_ref()
    }

    /// The conflict a witness reported, until an operator acknowledges it.
    pub fn conflict(&self) -> Option<&str> {
        self.conflict.as_deref()
    }

    /// Cosignatures obtained and submissions failed, by witness, since start.
    pub fn counts(&self) -> &HashMap<String, (u64, u64)> {
        &self.counts
    }
}
