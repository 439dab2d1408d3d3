//! The `neuron` command: the process's setup (allocator, signals), then the command line
//! ([`cli`]), which calls into the library.

// Every error this crate's own code meets is handled; its tests may unwrap (a panic is a failed
// test).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e` (mimalloc.h, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A long-running server hands freed pages back to the system at once. With mimalloc's default
/// delay (1 s) the steady churn of handshakes kept some 20 MiB of freed pages resident (RSS after
/// 20,000 handshakes 51 MiB, 31 MiB without the delay, at the same speed). Investigators keep the
/// default: they run briefly and their speed is what counts.
pub(crate) fn purge_freed_memory_at_once() {
    // SAFETY: sets one of mimalloc's global options, which it reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// A write past the file size limit fails with `EFBIG` instead of killing the process, so that the
/// log's writer sees the cause and stops cleanly (fail-stop) with it.
fn report_oversized_writes_as_errors() {
    // SAFETY: ignoring SIGXFSZ before any thread is started has no memory-safety implications.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    report_oversized_writes_as_errors();
    cli::run(cli::Cli::parse())
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
