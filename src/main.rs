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
