//! Starting a server: the stored log checked and folded into the views, the configuration's
//! providers reconciled with the log's, the listeners bound, and the process's open-file limit
//! raised to what the listeners may need.
//!
//! - `open.rs`: the store opened and refused when it lost what it acknowledged.
//! - `fold.rs`: the views rebuilt, the journal started, the start's records.
//! - `listen.rs`: the listeners and the connection budget.

mod fold;
mod listen;
mod open;

pub(super) use fold::{journal_over, settle_conflicts, startup_events, write_vkey, Serving};
pub(super) use listen::{bind_both, connection_budget};
pub(super) use open::open_store;
