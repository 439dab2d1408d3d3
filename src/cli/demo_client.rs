//! `neuron demo-client`: one real handshake with a freshly generated patient key, every message
//! printed.

use anyhow::Context;

use super::Outcome;

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
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    super::runtime()?.block_on(handshake(&args))
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
    let auth = patient.auth_frame(&payload);
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
    Ok(if transcript.completed() {
        Outcome::Done
    } else {
        Outcome::Found
    })
}
