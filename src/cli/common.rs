//! What the commands share: how one comes out, its runtime, its output.

/// How a command that ran to its end came out.
pub(super) enum Outcome {
    /// What was asked was done, and all was well (exit 0).
    Done,
    /// What was asked was done, and it found something wrong: a log not intact, handshakes that
    /// failed (exit 1).
    Found,
}

/// A multi-threaded runtime for the commands that need one.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Commands that print to stdout end quietly when the reader goes away (`neuron timeline … | head`),
/// as Unix tools do: the Rust runtime ignores SIGPIPE, which would make the next print panic. Only
/// for printing commands: a server must never be killed by a peer closing a socket.
pub(super) fn end_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started has no
    // memory-safety implications.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A failed write to standard output, named as such (not as a log that cannot be read).
pub(super) fn output_error(error: std::io::Error) -> neuron::investigate::InvestigateError {
    neuron::investigate::InvestigateError::Output { source: error }
}

/// `--format` of the commands that print a report.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum OutputFormat {
    /// A table for people.
    Table,
    /// One JSON document.
    Json,
}

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e` (mimalloc.h, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A long-running server hands freed pages back to the system at once. With mimalloc's default
/// delay (1 s) the steady churn of handshakes kept some 20 MiB of freed pages resident (RSS after
/// 20,000 handshakes 51 MiB, 31 MiB without the delay, at the same speed). Investigators keep the
/// default: they run briefly and their speed is what counts.
pub(super) fn purge_freed_memory_at_once() {
    // SAFETY: sets one of mimalloc's global options, which it reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc v3 purges freed memory after 1000 ms by default (src/options.c); the
        // neighbouring options read differently (eager commit delay 1, use_numa_nodes 0).
        // SAFETY: reads and writes mimalloc's global options.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                1000
            );
            super::purge_freed_memory_at_once();
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                0
            );
        }
    }
}
