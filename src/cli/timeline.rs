//! `neuron timeline`: every record touching one subject, in order, in words. Lines are written as
//! they are found: a long timeline is never held whole.

use std::path::PathBuf;

use neuron::investigate::{self, Source, Subject, TimelineFormat, TimelineWriter};

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
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
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A table for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line, one line per step.
    Jsonl,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::common::end_quietly_on_closed_pipe();
    let subject = match (args.session, args.patient, args.relationship, args.provider) {
        (Some(id), ..) => Subject::Session(id),
        (_, Some(id), ..) => Subject::Patient(id),
        (_, _, Some(id), _) => Subject::Relationship(id),
        (_, _, _, Some(npi)) => Subject::Provider(npi),
        _ => {
            anyhow::bail!("name what to follow: --session, --patient, --relationship or --provider")
        }
    };
    let source = Source::locate(&args.path)?;
    let stdout = std::io::stdout();
    let format = match args.format {
        Format::Table => TimelineFormat::Table,
        Format::Json => TimelineFormat::Json,
        Format::Jsonl => TimelineFormat::Jsonl,
    };
    let mut writer = TimelineWriter::new(format, std::io::BufWriter::new(stdout.lock()));
    match investigate::timeline(&source, &subject, &mut |step| writer.step(&step)) {
        Ok(count) => writer.finish(count).map_err(super::common::output_error)?,
        Err(error) => {
            // What was found before the failure still reaches the reader.
            let _ = writer.flush();
            return Err(error.into());
        }
    }
    Ok(Outcome::Done)
}
