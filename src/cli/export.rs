//! `neuron export`: a log's records as JSONL, byte for byte, or as a FHIR R4 Bundle.

use std::io::Write;
use std::path::PathBuf;

use neuron::investigate::Source;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The data directory, sled log directory or JSONL file.
    path: PathBuf,
    /// First seq to write.
    #[arg(long, default_value_t = 1)]
    from_seq: u64,
    /// Last seq to write.
    #[arg(long, default_value_t = u64::MAX)]
    to_seq: u64,
    /// jsonl: the records byte for byte; fhir: a FHIR R4 Bundle of AuditEvents (docs/fhir.md).
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One record's bytes per line.
    Jsonl,
    /// A FHIR R4 Bundle of AuditEvent resources.
    Fhir,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::common::end_quietly_on_closed_pipe();
    let source = Source::locate(&args.path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Jsonl => {
            source.export(args.from_seq, args.to_seq, &mut out)?;
            out.flush().map_err(super::common::output_error)?;
        }
        Format::Fhir => {
            let mut bundle = neuron::investigate::fhir::BundleWriter::start(out)
                .map_err(super::common::output_error)?;
            let mut failure = None;
            let wanted = args.from_seq..=args.to_seq;
            source.for_each_record_shown("converting", &mut |record| {
                if failure.is_none() && wanted.contains(&record.seq) {
                    failure = bundle.add(&record).err();
                }
            })?;
            if let Some(error) = failure {
                return Err(super::common::output_error(error).into());
            }
            bundle.finish().map_err(super::common::output_error)?;
        }
    }
    Ok(Outcome::Done)
}
