//! `neuron check-receipt`: a consent receipt checked offline, as a patient's agent or an auditor
//! would, against the log's verifier key and the witnesses they trust (SPEC §3.5). Exit 0 valid,
//! 1 invalid (saying why), 2 unreadable.

use std::path::PathBuf;

use neuron_events::note::{VerifierKey, COSIGNATURE_V1, ED25519};
use neuron_events::receipt::{self, Policy, Receipt};

use super::common::{Outcome, OutputFormat};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The receipt (a c2sp.org/tlog-proof@v1 text; `-` for standard input).
    file: PathBuf,
    /// The log's verifier key (`neuron vkey`), or a file holding it.
    #[arg(long)]
    log_key: String,
    /// A trusted witness's verifier key (cosignature/v1), or a file holding it; repeatable.
    #[arg(long)]
    witness: Vec<String>,
    /// How many of the witnesses must have cosigned (default: all given).
    #[arg(long)]
    quorum: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

/// Why the command could not check anything (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{what} {given:?} is neither a verifier key nor a file holding one: {reason}")]
    Key {
        what: &'static str,
        given: String,
        reason: String,
    },
    #[error("--quorum {quorum} is more than the {witnesses} witnesses given")]
    Quorum { quorum: usize, witnesses: usize },
}

/// A verifier key given inline, or a file holding one.
pub(crate) fn vkey_argument(what: &'static str, given: &str) -> Result<VerifierKey, Unusable> {
    let inline = VerifierKey::parse(given);
    let key = match inline {
        Ok(key) => key,
        Err(inline_error) => match std::fs::read_to_string(given) {
            Ok(text) => VerifierKey::parse(&text).map_err(|error| Unusable::Key {
                what,
                given: given.to_string(),
                reason: error.to_string(),
            })?,
            Err(_) => {
                return Err(Unusable::Key {
                    what,
                    given: given.to_string(),
                    reason: inline_error.to_string(),
                })
            }
        },
    };
    Ok(key)
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let text = read_receipt(&args.file)?;
    let policy = policy_of(&args)?;
    let checked = Receipt::parse(&text).and_then(|receipt| receipt::check(&receipt, &policy));
    let (text, outcome) = answer(&checked, args.format, &policy);
    super::verify::print_all(&text)?;
    Ok(outcome)
}

/// The receipt's text, from `file` or from standard input (`-`).
fn read_receipt(file: &std::path::Path) -> Result<String, Unusable> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text).map_err(
            |error| Unusable::Read {
                path: "standard input".into(),
                reason: error.to_string(),
            },
        )?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|error| Unusable::Read {
        path: file.display().to_string(),
        reason: error.to_string(),
    })
}

/// What a receipt must satisfy, as the arguments say: the log's key, the witnesses' keys and
/// the quorum of them (all by default), checked against this machine's clock.
fn policy_of(args: &Args) -> Result<Policy, Unusable> {
    let log = vkey_argument("--log-key", &args.log_key)?;
    if log.signature_type != ED25519 {
        return Err(Unusable::Key {
            what: "--log-key",
            given: args.log_key.clone(),
            reason: "not a log key (signature type 0x01)".into(),
        });
    }
    let witnesses = args
        .witness
        .iter()
        .map(|given| {
            let key = vkey_argument("--witness", given)?;
            if key.signature_type != COSIGNATURE_V1 {
                return Err(Unusable::Key {
                    what: "--witness",
                    given: given.clone(),
                    reason: "not a witness key (signature type 0x04, cosignature/v1)".into(),
                });
            }
            Ok(key)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = args.quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        return Err(Unusable::Quorum {
            quorum,
            witnesses: witnesses.len(),
        });
    }
    Ok(Policy {
        log,
        witnesses,
        quorum,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default(),
    })
}

/// The answer to print, and the exit it makes: what a valid receipt proves, or why it is not.
fn answer(
    checked: &Result<receipt::Proven, receipt::ReceiptError>,
    format: OutputFormat,
    policy: &Policy,
) -> (String, Outcome) {
    match (checked, format) {
        (Ok(proven), OutputFormat::Table) => (proven_text(proven, policy), Outcome::Done),
        (Err(error), OutputFormat::Table) => (
            format!(
                "INVALID: {}\n",
                neuron::investigate::safe(&error.to_string())
            ),
            Outcome::Found,
        ),
        (Ok(proven), OutputFormat::Json) => (
            format!(
                "{}\n",
                serde_json::json!({
                    "valid": true,
                    "origin": proven.checkpoint.origin,
                    "size": proven.checkpoint.size,
                    "root": proven.checkpoint.root.to_base64(),
                    "seq": proven.record.seq,
                    "at": proven.record.at,
                    "kind": proven.record.event.kind(),
                    "data": proven.record.event.data_json(),
                    "cosigned_by": proven.cosigned.iter().map(|(name, time)| serde_json::json!({"witness": name, "time": time})).collect::<Vec<_>>(),
                })
            ),
            Outcome::Done,
        ),
        (Err(error), OutputFormat::Json) => (
            format!(
                "{}\n",
                serde_json::json!({"valid": false, "reason": error.to_string()})
            ),
            Outcome::Found,
        ),
    }
}

/// What a valid receipt proves, in words.
pub(crate) fn proven_text(proven: &receipt::Proven, policy: &Policy) -> String {
    use neuron::investigate::safe;
    use neuron_events::event::EventData;
    let record = &proven.record;
    let what = match &record.event {
        EventData::HandshakeCompleted(completed) => format!(
            "a completed handshake: relationship {} with provider {} ({}), the provider's address {}",
            safe(&completed.relationship_id),
            safe(&completed.provider_npi),
            completed.status,
            safe(&completed.provider_endpoint)
        ),
        other => safe(&neuron_events::narrate::describe(other)).into_owned(),
    };
    let mut text = format!(
        "VALID\nrecord:     seq {} at {}{}\nproves:     {what}\nis in:      the log {} at leaf {} of its tree of {} records, root {}\nsigned by:  the log's key {}\n",
        record.seq,
        record.at,
        record
            .session
            .as_deref()
            .map(|session| format!(", session {}", safe(session)))
            .unwrap_or_default(),
        safe(&proven.checkpoint.origin),
        record.seq - 1,
        proven.checkpoint.size,
        proven.checkpoint.root,
        policy.log.to_text(),
    );
    if policy.witnesses.is_empty() {
        text.push_str("witnessed:  no witness asked: this proves what the log's key signed, not that the log showed everyone the same tree\n");
    } else {
        for (witness, time) in &proven.cosigned {
            text.push_str(&format!(
                "witnessed:  {} cosigned it at {}\n",
                safe(witness),
                neuron_events::Timestamp::saturating_from_millis(
                    i64::try_from(*time)
                        .unwrap_or(i64::MAX / 1000)
                        .saturating_mul(1000)
                )
            ));
        }
        text.push_str(&format!(
            "quorum:     {} of {} trusted witnesses (required {})\n",
            proven.cosigned.len(),
            policy.witnesses.len(),
            policy.quorum
        ));
    }
    text
}
