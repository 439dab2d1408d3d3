//! `neuron verify`: a log checked offline, record by record, against its anchors.

use std::path::PathBuf;

use neuron::investigate::{self, InvestigateError, Source};

use super::common::{Outcome, OutputFormat};

#[derive(clap::Args)]
pub(crate) struct Args {
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
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::common::end_quietly_on_closed_pipe();
    let options = neuron_events::VerifyOptions {
        trusted_key: args
            .trusted_key
            .as_deref()
            .map(investigate::trusted_key)
            .transpose()?,
        expected_head: args
            .expect_head
            .as_deref()
            .map(investigate::expected_head)
            .transpose()?,
        allow_unsigned_tail: args.allow_unsigned_tail,
    };
    let source = Source::locate(&args.path)?;
    let progress = investigate::Progress::start("verifying", false);
    let report = source.verify(&options);
    progress.finish();
    let report = report?;
    let text = match args.format {
        OutputFormat::Table => {
            investigate::report_text(&source, &report, options.trusted_key.is_some())
        }
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::json!({"log": source.describe(), "intact": report.is_intact(), "report": report})
        ),
    };
    print_all(&text)?;
    Ok(if report.is_intact() && report.anomalies.is_empty() {
        Outcome::Done
    } else {
        Outcome::Found
    })
}

/// Writes `text` to standard output; a failure is an output error.
pub(super) fn print_all(text: &str) -> Result<(), InvestigateError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(super::common::output_error)
}
