//! The `neuron` command: parses the command line, sets up output, and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e` (mimalloc.h, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A long-running server hands freed pages back to the system at once. With mimalloc's default
/// delay (1 s) the steady churn of handshakes kept some 20 MiB of freed pages resident (RSS after
/// 20,000 handshakes 51 MiB, 31 MiB without the delay, at the same speed). Investigators keep the
/// default: they run briefly and their speed is what counts.
fn purge_freed_memory_at_once() {
    // SAFETY: sets one of mimalloc's global options, which it reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

use clap::{Parser, Subcommand};

/// The Neuron: an audit-first trust broker for healthcare agents.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Neuron: the handshake WebSocket listener on the durable event log.
    Serve {
        /// Configuration file (default: ./neuron.toml when present, else built-in demo defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides storage.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides server.port (0 picks a free port and writes {data_dir}/serve.addr).
        #[arg(long)]
        port: Option<u16>,
        /// Log output format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print a fresh bearer token for the operator API and the hash to list in
    /// `[admin] token_hashes`. The server keeps only the hash; keep the token secret.
    AdminToken,
    /// Run one real handshake against a server with a freshly generated patient key, printing
    /// every message.
    DemoClient {
        /// The server's handshake URL.
        #[arg(long, default_value = "ws://127.0.0.1:3000/ws/handshake")]
        url: String,
        /// The provider to consent to.
        #[arg(long, default_value = "1234567893")]
        provider: String,
        /// The patient agent id to claim.
        #[arg(long, default_value = "demo-patient-agent")]
        patient: String,
    },
    /// Apply load: real WebSocket patients, each with its own key; prints handshakes/s and latency.
    Loadgen {
        /// The server's handshake URL.
        #[arg(long, default_value = "ws://127.0.0.1:3000/ws/handshake")]
        url: String,
        /// Handshakes in all.
        #[arg(long, default_value_t = 10_000)]
        n: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        c: u64,
        /// new: a new patient per handshake; existing: repeat handshakes of established patients;
        /// idle: hold upgrade requests open without sending anything.
        #[arg(long, value_enum, default_value_t = neuron::loadgen::Mode::New)]
        mode: neuron::loadgen::Mode,
        /// The provider the consents name.
        #[arg(long, default_value = "1234567893")]
        provider: String,
    },
    /// Verify a log offline: a data directory, a sled log or a JSONL export. Exit 0 intact, 1 not
    /// intact, 2 unreadable.
    Verify {
        /// The data directory, sled log directory or JSONL file.
        path: PathBuf,
        /// Checkpoints must be signed by this key (base64url, or a file holding it).
        #[arg(long, allow_hyphen_values = true)]
        trusted_key: Option<String>,
        /// The log must hold this record, as SEQ:HEX (for example from the admin API's audit head).
        #[arg(long)]
        expect_head: Option<String>,
        /// With --trusted-key: accept records after the last trusted checkpoint (a copy of a
        /// running or crashed server's log); the report names them.
        #[arg(long, requires = "trusted_key")]
        allow_unsigned_tail: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// The state as of a point in the log: providers, relationships, live sessions, the queue, and
    /// how handshakes ended.
    Replay {
        /// The data directory, sled log directory or JSONL file.
        path: PathBuf,
        /// Stop after this seq.
        #[arg(long, conflicts_with = "until_time")]
        until_seq: Option<u64>,
        /// Stop after the last record at or before this time (RFC 3339).
        #[arg(long)]
        until_time: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Most rows per list in the table.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Every record touching one session, patient, relationship or provider, in order, in words.
    Timeline {
        /// The data directory, sled log directory or JSONL file.
        path: PathBuf,
        /// A session id.
        #[arg(long, group = "subject")]
        session: Option<String>,
        /// A patient agent id.
        #[arg(long, group = "subject")]
        patient: Option<String>,
        /// A relationship id.
        #[arg(long, group = "subject")]
        relationship: Option<String>,
        /// A provider NPI.
        #[arg(long, group = "subject")]
        provider: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TimelineFormat::Table)]
        format: TimelineFormat,
    },
    /// Write a log's records: as JSONL, byte for byte (verifiable on its own), or as FHIR.
    Export {
        /// The data directory, sled log directory or JSONL file.
        path: PathBuf,
        /// First seq to write.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// Last seq to write.
        #[arg(long, default_value_t = u64::MAX)]
        to_seq: u64,
        /// jsonl: the records byte for byte; fhir: a FHIR R4 Bundle of AuditEvents (docs/fhir.md).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Rebuild a data directory from an export (the backup): the export is verified, written as a
    /// store, verified again, and moved into place. Exit 0 restored, 1 the export does not verify,
    /// 2 anything else.
    Restore {
        /// The JSONL export (`neuron export`, or the operator API's GET /v1/audit/export).
        export: PathBuf,
        /// The data directory to create; it must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// The Neuron's key file to restore with it (it must have signed the export's
        /// checkpoints); without it the server makes a new key at its first start.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The export's checkpoints must be signed by this key (base64url, or a file holding it).
        #[arg(long, allow_hyphen_values = true)]
        trusted_key: Option<String>,
        /// With --trusted-key: accept records after the last trusted checkpoint.
        #[arg(long, requires = "trusted_key")]
        allow_unsigned_tail: bool,
    },
    /// Write a commented neuron.toml with every key at its default.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "neuron.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Write a short handshake story through the durable event log, then verify and replay it.
    SelfCheck {
        /// Where to keep the log; a temporary directory, removed afterwards, when not given.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    /// A table for people.
    Table,
    /// One JSON document.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// One record's bytes per line.
    Jsonl,
    /// A FHIR R4 Bundle of AuditEvent resources.
    Fhir,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimelineFormat {
    /// A table for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line, one line per step.
    Jsonl,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("neuron: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Commands that print to stdout end quietly when the reader goes away (`neuron timeline … | head`),
/// as Unix tools do: the Rust runtime ignores SIGPIPE, which would make the next print panic. Only
/// for printing commands: a server must never be killed by a peer closing a socket.
fn end_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started has no
    // memory-safety implications.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Verify { .. }
            | Command::Replay { .. }
            | Command::Timeline { .. }
            | Command::Export { .. }
    ) {
        end_quietly_on_closed_pipe();
    }
    if matches!(cli.command, Command::Serve { .. }) {
        purge_freed_memory_at_once();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            port,
            log_format,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            match log_format {
                LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
                LogFormat::Json => tracing_subscriber::fmt()
                    .json()
                    .with_env_filter(filter)
                    .init(),
            }
            let flags = neuron::config::Flags { data_dir, port };
            let (config, source) =
                neuron::config::Config::load(config.as_deref(), std::env::vars(), &flags)?;
            match &source {
                neuron::config::Source::BuiltInDefaults => tracing::info!(
                    organization = %config.organization.npi,
                    providers = ?config.providers.iter().map(|p| p.npi.as_str()).collect::<Vec<_>>(),
                    data_dir = %config.storage.data_dir.display(),
                    "no configuration file: running on the built-in DEMO defaults (demo organization {} \"{}\", demo provider 1234567893); write one with `neuron init`",
                    config.organization.npi,
                    config.organization.name,
                ),
                neuron::config::Source::File(path) => {
                    tracing::info!(file = %path.display(), organization = %config.organization.npi, "configuration loaded")
                }
            }
            let shutdown = {
                let _inside = runtime.enter();
                shutdown_signal().context("listening for SIGINT and SIGTERM")?
            };
            let outcome = runtime.block_on(neuron::server::run(
                config,
                neuron::server::Options::default(),
                shutdown,
            ));
            // After a failed write the process exits at once: tasks still blocked on a client are
            // not waited for.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            outcome?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoClient {
            url,
            provider,
            patient,
        } => runtime.block_on(demo_client(&url, &provider, &patient)),
        Command::Loadgen {
            url,
            n,
            c,
            mode,
            provider,
        } => {
            let load = neuron::loadgen::Load {
                url,
                total: n,
                concurrency: c,
                mode,
                provider,
            };
            let summary = runtime.block_on(neuron::loadgen::run(load));
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{} completed, {} failed in {:.2} s: {:.0} handshakes/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                summary.completed,
                summary.failed,
                summary.elapsed.as_secs_f64(),
                summary.rate(),
                ms(summary.percentile(0.5)),
                ms(summary.percentile(0.9)),
                ms(summary.percentile(0.99)),
                ms(summary.percentile(1.0)),
            );
            Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Verify {
            path,
            trusted_key,
            expect_head,
            allow_unsigned_tail,
            format,
        } => {
            use neuron::investigate::{self, Source};
            let outcome = (|| {
                let options = neuron_events::VerifyOptions {
                    trusted_key: trusted_key
                        .as_deref()
                        .map(investigate::trusted_key)
                        .transpose()?,
                    expected_head: expect_head
                        .as_deref()
                        .map(investigate::expected_head)
                        .transpose()?,
                    allow_unsigned_tail,
                };
                let source = Source::locate(&path)?;
                let progress = investigate::Progress::start("verifying", false);
                let report = source.verify(&options);
                progress.finish();
                let report = report?;
                Ok::<_, investigate::InvestigateError>((
                    source,
                    report,
                    options.trusted_key.is_some(),
                ))
            })();
            let (source, report, trusted) = match outcome {
                Ok(found) => found,
                Err(error) => {
                    eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                    return Ok(ExitCode::from(2));
                }
            };
            match format {
                OutputFormat::Table => {
                    print!("{}", investigate::report_text(&source, &report, trusted))
                }
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({"log": source.describe(), "intact": report.is_intact(), "report": report})
                ),
            }
            Ok(if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Replay {
            path,
            until_seq,
            until_time,
            format,
            limit,
        } => {
            use neuron::investigate::{self, Source};
            let outcome = (|| {
                let until = match (until_seq, until_time) {
                    (Some(seq), _) => neuron_projections::Until::Seq(seq),
                    (None, Some(time)) => neuron_projections::Until::Time(
                        neuron_events::Timestamp::parse_rfc3339(&time).map_err(|error| {
                            investigate::InvestigateError::BadArgument {
                                what: "--until-time",
                                reason: error.to_string(),
                            }
                        })?,
                    ),
                    (None, None) => neuron_projections::Until::End,
                };
                let source = Source::locate(&path)?;
                let views = investigate::replay(&source, until)?;
                Ok::<_, investigate::InvestigateError>((source, views))
            })();
            match outcome {
                Ok((source, views)) => {
                    match format {
                        OutputFormat::Table => {
                            print!("{}", investigate::replay_text(&source, &views, limit))
                        }
                        OutputFormat::Json => println!(
                            "{}",
                            serde_json::to_string(&views).context("writing the views")?
                        ),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Timeline {
            path,
            session,
            patient,
            relationship,
            provider,
            format,
        } => {
            use neuron::investigate::{self, Source, Subject};
            let subject = match (session, patient, relationship, provider) {
                (Some(id), ..) => Subject::Session(id),
                (_, Some(id), ..) => Subject::Patient(id),
                (_, _, Some(id), _) => Subject::Relationship(id),
                (_, _, _, Some(npi)) => Subject::Provider(npi),
                _ => anyhow::bail!(
                    "name what to follow: --session, --patient, --relationship or --provider"
                ),
            };
            // Lines are written as they are found: a long timeline is never held whole.
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut written = Ok(());
            let mut first = true;
            if format == TimelineFormat::Json {
                written = out.write_all(b"[");
            }
            let outcome = Source::locate(&path).and_then(|source| {
                investigate::timeline(&source, &subject, &mut |step| {
                    if written.is_err() {
                        return;
                    }
                    written = match format {
                        TimelineFormat::Table => {
                            out.write_all(investigate::timeline_line(&step).as_bytes())
                        }
                        TimelineFormat::Json => {
                            let separator: &[u8] = if first { b"" } else { b"," };
                            out.write_all(separator).and_then(|()| {
                                serde_json::to_writer(&mut out, &step).map_err(std::io::Error::from)
                            })
                        }
                        TimelineFormat::Jsonl => serde_json::to_writer(&mut out, &step)
                            .map_err(std::io::Error::from)
                            .and_then(|()| out.write_all(b"\n")),
                    };
                    first = false;
                })
            });
            match outcome {
                Ok(count) => {
                    match format {
                        TimelineFormat::Table if count == 0 => {
                            written = written.and_then(|()| {
                                out.write_all(investigate::TIMELINE_EMPTY.as_bytes())
                            });
                        }
                        TimelineFormat::Json => {
                            written = written.and_then(|()| out.write_all(b"]\n"));
                        }
                        _ => {}
                    }
                    written
                        .and_then(|()| out.flush())
                        .context("writing the timeline")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    let _ = out.flush();
                    eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Export {
            path,
            from_seq,
            to_seq,
            format,
        } => {
            use neuron::investigate::Source;
            if format == ExportFormat::Fhir {
                let written = Source::locate(&path).and_then(|source| {
                    let unwritable =
                        |error: std::io::Error| neuron::investigate::InvestigateError::Unreadable {
                            path: path.clone(),
                            reason: format!("writing the bundle: {error}"),
                        };
                    let stdout = std::io::stdout();
                    let mut bundle =
                        neuron::fhir::BundleWriter::start(std::io::BufWriter::new(stdout.lock()))
                            .map_err(unwritable)?;
                    let mut failure = None;
                    source.for_each_record_shown("converting", &mut |record| {
                        if failure.is_none() && (from_seq..=to_seq).contains(&record.seq) {
                            failure = bundle.add(&record).err();
                        }
                    })?;
                    if let Some(error) = failure {
                        return Err(unwritable(error));
                    }
                    bundle.finish().map_err(unwritable)
                });
                return match written {
                    Ok(_) => Ok(ExitCode::SUCCESS),
                    Err(error) => {
                        eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                        Ok(ExitCode::from(2))
                    }
                };
            }
            let exported = Source::locate(&path).and_then(|source| {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                let written = source.export(from_seq, to_seq, &mut out)?;
                std::io::Write::flush(&mut out).map_err(|error| {
                    neuron::investigate::InvestigateError::Unreadable {
                        path: path.clone(),
                        reason: error.to_string(),
                    }
                })?;
                Ok(written)
            });
            match exported {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(error) => {
                    eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::AdminToken => {
            let (token, hash) = neuron::admin::new_token()
                .map_err(|error| anyhow::anyhow!("random source: {error}"))?;
            println!("token: {token}");
            println!("hash:  {hash}");
            println!();
            println!("In neuron.toml:");
            println!("[admin]");
            println!("token_hashes = [\"{hash}\"]");
            println!();
            println!("Then call the operator API with: Authorization: Bearer {token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            export,
            data_dir,
            key,
            trusted_key,
            allow_unsigned_tail,
        } => {
            let trusted_key = match trusted_key
                .as_deref()
                .map(neuron::investigate::trusted_key)
                .transpose()
            {
                Ok(key) => key,
                Err(error) => {
                    eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                    return Ok(ExitCode::from(2));
                }
            };
            let options = neuron_events::VerifyOptions {
                trusted_key,
                expected_head: None,
                allow_unsigned_tail,
            };
            match neuron::restore::restore(&export, &data_dir, &options, key.as_deref()) {
                Ok(restored) => {
                    let report = &restored.report;
                    println!(
                        "restored {} records into {} (head {} at seq {})",
                        report.records,
                        data_dir.display(),
                        report.head,
                        report.last_seq
                    );
                    if let Some(tail) = &report.unsigned_tail {
                        println!("{tail} signed by no trusted checkpoint (accepted: --allow-unsigned-tail)");
                    }
                    if restored.key_restored {
                        println!("the Neuron's key was restored with it");
                    } else {
                        println!("no key restored: `neuron serve` will create a new one and record it in server.started");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("neuron: {}", neuron::investigate::safe(&error.to_string()));
                    Ok(ExitCode::from(match error {
                        neuron::restore::RestoreError::NotIntact { .. } => 1,
                        _ => 2,
                    }))
                }
            }
        }
        Command::Init { path, force } => {
            if path.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            std::fs::write(&path, neuron::config::TEMPLATE)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::SelfCheck { data_dir } => {
            let temporary;
            let dir = match data_dir {
                Some(dir) => dir,
                None => {
                    temporary = tempfile::tempdir().context("creating a temporary directory")?;
                    temporary.path().to_path_buf()
                }
            };
            println!("neuron self-check: event log in {}", dir.display());
            let outcome = runtime
                .block_on(neuron::selfcheck::run(&dir))
                .context("self-check")?;
            println!(
                "appended {} events from 8 concurrent sessions in {} durable batches ({:.1} ms, fdatasync'd)",
                outcome.appended,
                outcome.batches,
                outcome.append_time.as_secs_f64() * 1000.0
            );
            let report = &outcome.report;
            println!(
                "verified {} records: head {} at seq {}",
                report.records, report.head, report.last_seq
            );
            if let Some(checkpoint) = &report.last_checkpoint {
                println!(
                    "last checkpoint: seq {} covering up to seq {}, signed by {}",
                    checkpoint.seq, checkpoint.upto, checkpoint.signer
                );
            }
            let (active, terminated) = outcome.views.relationships.counts();
            println!(
                "views: {} sessions ({} live), {} relationships active, {} terminated; neuron key {}",
                outcome.views.sessions.all().count(),
                outcome.views.sessions.live_count(),
                active,
                terminated,
                outcome.public_key
            );
            match &report.problem {
                None => {
                    println!("log intact");
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    println!(
                        "log NOT intact at seq {}: {}",
                        problem.seq,
                        problem.fault.describe()
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// Listens for SIGINT and SIGTERM from now on and resolves with the reason. The handlers are
/// installed before the server starts, so that a signal sent as soon as it listens stops it
/// gracefully instead of killing it. Must be called inside the runtime.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = String>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT".to_string(),
            _ = terminate.recv() => "SIGTERM".to_string(),
        }
    })
}

async fn demo_client(url: &str, provider: &str, patient_id: &str) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|error| anyhow::anyhow!("random source: {error}"))?;
    let patient = neuron::client::Patient::from_seed(patient_id, seed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs() as i64;
    let payload = patient.claims(provider, now - 5, now + 300);
    println!(
        "patient agent {patient_id}, fresh key {}",
        neuron_events::b64::encode(patient.key.verifying_key().as_bytes())
    );
    println!("connecting to {url}");
    let mut connection = neuron::client::connect(url, None)
        .await
        .context("connecting")?;
    let auth = patient.auth_frame(&payload);
    println!("-> {auth}");
    let transcript = neuron::client::converse(
        &mut connection,
        vec![tokio_tungstenite::tungstenite::Message::text(auth)],
        Some(&patient),
    )
    .await;
    for message in &transcript.received {
        println!("<- {message}");
        if message.get("type").and_then(|t| t.as_str()) == Some("handshake.challenge") {
            if let Some(answer) = patient.answer(message) {
                println!("-> {answer}");
            }
        }
    }
    println!(
        "closed with {}",
        transcript
            .close_code
            .map_or("no close frame".to_string(), |code| code.to_string())
    );
    Ok(if transcript.completed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
