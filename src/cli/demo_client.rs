//! `neuron demo-client`: one real handshake with a freshly generated patient key, every message
//! printed.

use anyhow::Context;

use super::common::Outcome;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The server's handshake URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws/handshake")]
    url: String,
    /// The provider to consent to.
    #[arg(long, default_value = neuron::config::DEMO_PROVIDER_NPI)]
    provider: String,
    /// The patient agent id to claim.
    #[arg(long, default_value = "demo-patient-agent")]
    patient: String,
    /// Ask for a consent receipt, save it, check it, and say what it proves.
    #[arg(long)]
    receipt: bool,
    /// Where the receipt is saved.
    #[arg(long, default_value = "receipt.tlog-proof", requires = "receipt")]
    receipt_file: std::path::PathBuf,
    /// The log's verifier key to check the receipt against (`neuron vkey`), or a file holding
    /// it; by default the one the local server wrote to ./data/neuron.vkey.
    #[arg(long, requires = "receipt")]
    log_key: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::common::runtime()?.block_on(handshake(&args))
}

async fn handshake(args: &Args) -> anyhow::Result<Outcome> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|error| anyhow::anyhow!("random source: {error}"))?;
    let patient = neuron::tools::client::Patient::from_seed(&args.patient, seed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs() as i64;
    let payload = patient.claims(&args.provider, now - 5, now + 300);
    println!(
        "patient agent {}, fresh key {}",
        args.patient,
        neuron_events::b64::encode(patient.key.verifying_key().as_bytes())
    );
    println!("connecting to {}", args.url);
    let mut connection = neuron::tools::client::connect(&args.url, None)
        .await
        .context("connecting")?;
    let auth = if args.receipt {
        patient.auth_frame_with_receipt(&payload)
    } else {
        patient.auth_frame(&payload)
    };
    println!("-> {auth}");
    let transcript = neuron::tools::client::converse(
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
    if !transcript.completed() {
        return Ok(Outcome::Found);
    }
    if args.receipt {
        return check_receipt(args, &transcript);
    }
    Ok(Outcome::Done)
}

/// Saves the receipt the server sent, checks it offline and says what it proves.
fn check_receipt(
    args: &Args,
    transcript: &neuron::tools::client::Transcript,
) -> anyhow::Result<Outcome> {
    let Some(text) = transcript
        .received
        .last()
        .and_then(|complete| complete.get("receipt"))
        .and_then(|receipt| receipt.as_str())
    else {
        println!("the server sent no receipt");
        return Ok(Outcome::Found);
    };
    std::fs::write(&args.receipt_file, text)
        .with_context(|| format!("saving the receipt to {}", args.receipt_file.display()))?;
    println!("receipt saved to {}", args.receipt_file.display());
    let given = args
        .log_key
        .clone()
        .unwrap_or_else(|| "./data/neuron.vkey".to_string());
    let log = match super::check_receipt::vkey_argument("--log-key", &given) {
        Ok(log) => log,
        Err(error) => {
            println!(
                "not checked ({error}); check it with: neuron check-receipt {} --log-key <the log's vkey, from `neuron vkey`>",
                args.receipt_file.display()
            );
            return Ok(Outcome::Found);
        }
    };
    let policy = neuron_events::receipt::Policy {
        log,
        witnesses: Vec::new(),
        quorum: 0,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default(),
    };
    let checked = neuron_events::receipt::Receipt::parse(text)
        .and_then(|receipt| neuron_events::receipt::check(&receipt, &policy));
    match checked {
        Ok(proven) => {
            print!("{}", super::check_receipt::proven_text(&proven, &policy));
            println!(
                "anyone can check it again, offline: neuron check-receipt {} --log-key {}",
                args.receipt_file.display(),
                policy.log.to_text()
            );
            Ok(Outcome::Done)
        }
        Err(error) => {
            println!("INVALID: {error}");
            Ok(Outcome::Found)
        }
    }
}
