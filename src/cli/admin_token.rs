//! `neuron admin-token`: a fresh bearer token for the operator API and the hash to configure.

use super::common::Outcome;

pub(crate) fn run() -> anyhow::Result<Outcome> {
    let (token, hash) =
        neuron::operator::new_token().map_err(|error| anyhow::anyhow!("random source: {error}"))?;
    println!("token: {token}");
    println!("hash:  {hash}");
    println!();
    println!("In neuron.toml:");
    println!("[admin]");
    println!("token_hashes = [\"{hash}\"]");
    println!();
    println!("Then call the operator API with: Authorization: Bearer {token}");
    Ok(Outcome::Done)
}
