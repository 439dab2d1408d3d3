//! `neuron serve` as a child process, as an operator runs it: on free loopback ports, its output
//! in a file, under a resource limit when a test asks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NEURON: &str = env!("CARGO_BIN_EXE_neuron");

/// A `neuron serve` child on free loopback ports, its output in `{dir}/serve-N.log`.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) output: PathBuf,
}

/// A resource limit the server starts under, soft and hard alike (so that it cannot raise it).
#[derive(Clone, Copy)]
pub(crate) enum Limit {
    /// `RLIMIT_FSIZE`: the largest file it may write, in bytes (a full disk).
    FileSize(u64),
    /// `RLIMIT_NOFILE`: how many files it may hold open.
    OpenFiles(u64),
}

/// Starts `neuron serve` on `data` and waits (generously) until it listens or exits.
pub(crate) fn serve(data: &Path, run: usize, limit: Option<Limit>) -> Result<Served, String> {
    serve_with(data, run, limit, &[])
}

/// As [`serve`], with more configuration in the environment.
pub(crate) fn serve_with(
    data: &Path,
    run: usize,
    limit: Option<Limit>,
    environment: &[(&str, &str)],
) -> Result<Served, String> {
    serve_args(data, run, limit, environment, &[])
}

/// As [`serve_with`], with more arguments (`--config FILE`).
pub(crate) fn serve_args(
    data: &Path,
    run: usize,
    limit: Option<Limit>,
    environment: &[(&str, &str)],
    args: &[&str],
) -> Result<Served, String> {
    let _ = std::fs::remove_file(data.join("serve.addr"));
    let output = data.with_extension(format!("serve-{run}.log"));
    let logged = std::fs::File::create(&output).unwrap();
    let mut command = Command::new(NEURON);
    command
        .args(["serve", "--data-dir", data.to_str().unwrap(), "--port", "0"])
        .env("NEURON_ADMIN__PORT", "0")
        .env("NEURON_AUDIT__CHECKPOINT_EVERY", "50")
        .env("NO_COLOR", "1")
        .envs(environment.iter().copied())
        .args(args)
        .stdout(Stdio::from(logged.try_clone().unwrap()))
        .stderr(Stdio::from(logged));
    if let Some(limit) = limit {
        use std::os::unix::process::CommandExt;
        let (resource, value) = match limit {
            Limit::FileSize(bytes) => (libc::RLIMIT_FSIZE, bytes),
            Limit::OpenFiles(files) => (libc::RLIMIT_NOFILE, files),
        };
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(addr) = std::fs::read_to_string(data.join("serve.addr")) {
            if addr.ends_with('\n') {
                return Ok(Served {
                    child,
                    url: format!("ws://{}/ws/handshake", addr.trim()),
                    output,
                });
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "exited with {status}: {}",
                std::fs::read_to_string(&output).unwrap_or_default()
            ));
        }
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Served {
    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: kill on the pid of a child this test started and has not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits (generously) for the child to exit; its status and what it logged.
    pub(crate) fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, std::fs::read_to_string(&self.output).unwrap());
            }
            assert!(Instant::now() < deadline, "the server never exited");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
