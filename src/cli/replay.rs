//! `neuron replay`: the views as of a point in the log.

use std::path::PathBuf;

use neuron::investigate::{self, InvestigateError, Source};
use neuron_projections::Until;

use super::common::{Outcome, OutputFormat};

#[derive(clap::Args)]
pub(crate) struct Args {
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
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::common::end_quietly_on_closed_pipe();
    let until = match (args.until_seq, &args.until_time) {
        (Some(seq), _) => Until::Seq(seq),
        (None, Some(time)) => Until::Time(neuron_events::Timestamp::parse_rfc3339(time).map_err(
            |error| InvestigateError::BadArgument {
                what: "--until-time",
                reason: error.to_string(),
            },
        )?),
        (None, None) => Until::End,
    };
    let source = Source::locate(&args.path)?;
    let views = investigate::replay(&source, until)?;
    let text = match args.format {
        OutputFormat::Table => investigate::replay_text(&source, &views, args.limit),
        OutputFormat::Json => {
            let mut json = serde_json::to_value(&views)?;
            let conflicts = views.relationships.conflicts();
            if let (Some(object), false) = (json.as_object_mut(), conflicts.is_empty()) {
                object.insert("anomalies".into(), serde_json::to_value(conflicts)?);
            }
            format!("{json}\n")
        }
    };
    super::verify::print_all(&text)?;
    Ok(Outcome::Done)
}
