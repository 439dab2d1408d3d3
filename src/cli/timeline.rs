//! `neuron timeline`: every record touching one subject, in order, in words. Lines are written as
//! they are found: a long timeline is never held whole.

use std::io::Write;
use std::path::PathBuf;

use neuron::investigate::{self, Source, Step, Subject};

use super::Outcome;

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
    super::end_quietly_on_closed_pipe();
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
    let mut writer = StepWriter::new(args.format, std::io::BufWriter::new(stdout.lock()));
    match investigate::timeline(&source, &subject, &mut |step| writer.step(&step)) {
        Ok(count) => writer.finish(count).map_err(super::output_error)?,
        Err(error) => {
            // What was found before the failure still reaches the reader.
            let _ = writer.out.flush();
            return Err(error.into());
        }
    }
    Ok(Outcome::Done)
}

/// Writes a timeline's steps as they come, in one of the formats; the first failed write is kept
/// and ends the writing.
struct StepWriter<W: Write> {
    format: Format,
    out: W,
    written: std::io::Result<()>,
    steps: usize,
}

impl<W: Write> StepWriter<W> {
    fn new(format: Format, mut out: W) -> Self {
        let written = if format == Format::Json {
            out.write_all(b"[")
        } else {
            Ok(())
        };
        StepWriter {
            format,
            out,
            written,
            steps: 0,
        }
    }

    fn step(&mut self, step: &Step) {
        if self.written.is_err() {
            return;
        }
        let out = &mut self.out;
        self.written = match self.format {
            Format::Table => out.write_all(investigate::timeline_line(step).as_bytes()),
            Format::Json => {
                let separator: &[u8] = if self.steps == 0 { b"" } else { b"," };
                out.write_all(separator).and_then(|()| {
                    serde_json::to_writer(&mut *out, step).map_err(std::io::Error::from)
                })
            }
            Format::Jsonl => serde_json::to_writer(&mut *out, step)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
        };
        self.steps += 1;
    }

    /// Closes the output of a timeline of `count` steps.
    fn finish(mut self, count: u64) -> std::io::Result<()> {
        let closing: &[u8] = match self.format {
            Format::Table if count == 0 => investigate::TIMELINE_EMPTY.as_bytes(),
            Format::Json => b"]\n",
            _ => b"",
        };
        self.written?;
        self.out.write_all(closing)?;
        self.out.flush()
    }
}
