//! Fixed keys, a fixed clock and a small fixed log, shared by the tests of every crate in the
//! workspace (feature `test-support`), plus the one insta settings helper that sends every snapshot
//! to the workspace's `snapshots/` folder.

mod fixed;
mod review;
mod story;

pub use fixed::*;
pub use review::*;
pub use story::*;

/// Set by `.ci/run`: every test that needs something from outside the workspace (a Debian
/// package, a PyPI tool, a database) must find it, and fails rather than skip when it does not.
pub const REQUIRE_EXTERNAL: &str = "NEURON_REQUIRE_EXTERNAL";

/// Whether an outside requirement is there. When it is not, a test either fails (under
/// [`REQUIRE_EXTERNAL`], as CI runs) or says loudly, on the terminal itself (not in the output the
/// test harness captures), which test did not run and how to install what it needs, and skips.
pub fn external(available: bool, test: &str, what: &str, install: &str) -> bool {
    use std::io::Write as _;
    if available {
        return true;
    }
    let message = format!(
        "NOT RUN: {test} needs {what}, which this machine lacks; install it with: {install}"
    );
    assert!(
        std::env::var_os(REQUIRE_EXTERNAL).is_none(),
        "{message} ({REQUIRE_EXTERNAL} is set: this run must have it)"
    );
    let _ = writeln!(std::io::stderr(), "{message}");
    false
}
