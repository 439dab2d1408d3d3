//! A tlog-witness for the tests, in process (tlog-witness v1.0.0's add-checkpoint on a loopback
//! port): an honest one that keeps the latest checkpoint it cosigned and answers 409/422 as the
//! specification says, and misbehaving ones (garbage, silence, another key's signature). The
//! independent witness is `aics-witness` (tests/witnesses.rs); this one can be made to lie.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neuron_events::note::{self, Checkpoint, Note, VerifierKey};
use neuron_events::tree::{self, Hash};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the witness behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// As tlog-witness says.
    Honest,
    /// 200 with a body that is no signature line.
    Garbage,
    /// Never answers (holds the connection).
    Silent,
    /// A well-formed cosignature line made with another key.
    WrongKey,
}

/// A running witness.
pub(crate) struct FakeWitness {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<Mutex<(u64, Hash)>>,
    pub(crate) name: String,
    pub(crate) key: ed25519_dalek::SigningKey,
    pub(crate) requests: Arc<Mutex<u64>>,
}

impl FakeWitness {
    /// Starts a witness named `name` with key seed `seed`, trusting `log`.
    pub(crate) async fn start(
        name: &str,
        seed: u8,
        log: VerifierKey,
        behaviour: Behaviour,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let state = Arc::new(Mutex::new((0u64, Hash::empty())));
        let requests = Arc::new(Mutex::new(0u64));
        let (shared, count, signing, witness_name) = (
            state.clone(),
            requests.clone(),
            key.clone(),
            name.to_string(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (shared, count, signing, witness_name, log) = (
                    shared.clone(),
                    count.clone(),
                    signing.clone(),
                    witness_name.clone(),
                    log.clone(),
                );
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut stream).await else {
                        return;
                    };
                    *count.lock().unwrap() += 1;
                    if behaviour == Behaviour::Silent {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                    let (status, content_type, answer) =
                        add_checkpoint(&body, &shared, &signing, &witness_name, &log, behaviour);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            state,
            name: name.to_string(),
            key,
            requests,
        }
    }

    /// Its verifier key.
    pub(crate) fn vkey(&self) -> VerifierKey {
        VerifierKey::new(&self.name, note::COSIGNATURE_V1, self.key.verifying_key()).unwrap()
    }

    /// Its submission prefix.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration entry for it.
    pub(crate) fn config(&self) -> neuron::config::Witness {
        neuron::config::Witness {
            name: self.name.clone(),
            vkey: self.vkey().to_text(),
            url: self.url(),
        }
    }

    /// The size it last cosigned.
    pub(crate) fn size(&self) -> u64 {
        self.state.lock().unwrap().0
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some(body[..length].to_string());
            }
        }
    }
}

fn add_checkpoint(
    body: &str,
    state: &Mutex<(u64, Hash)>,
    key: &ed25519_dalek::SigningKey,
    name: &str,
    log: &VerifierKey,
    behaviour: Behaviour,
) -> (u16, &'static str, String) {
    let text = "text/plain";
    let Some((head, checkpoint)) = body.split_once("\n\n") else {
        return (400, text, "no blank line\n".into());
    };
    let mut lines = head.lines();
    let Some(old) = lines
        .next()
        .and_then(|line| line.strip_prefix("old "))
        .and_then(|size| size.parse::<u64>().ok())
    else {
        return (400, text, "no old line\n".into());
    };
    let proof: Vec<Hash> = lines
        .filter_map(|line| Hash::from_base64(line).ok())
        .collect();
    let Ok(note) = Note::parse(checkpoint) else {
        return (400, text, "bad note\n".into());
    };
    if note::verify(&note, std::slice::from_ref(log)).is_err() {
        return (403, text, "not signed by the log\n".into());
    }
    let Ok(body) = Checkpoint::parse(&note.text) else {
        return (400, text, "not a checkpoint\n".into());
    };
    let mut state = state.lock().unwrap();
    if old != state.0 {
        return (409, "text/x.tlog.size", format!("{}\n", state.0));
    }
    if old == body.size {
        if body.root != state.1 {
            return (409, "text/x.tlog.size", format!("{}\n", state.0));
        }
    } else if old > 0
        && tree::verify_consistency(old, body.size, &proof, &state.1, &body.root).is_err()
    {
        return (422, text, "consistency proof does not verify\n".into());
    }
    *state = (body.size, body.root);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match behaviour {
        Behaviour::Garbage => (200, text, "hello, this is no cosignature\n".into()),
        Behaviour::WrongKey => {
            let other = ed25519_dalek::SigningKey::from_bytes(&[0x99; 32]);
            let mut line = note::cosign(name, &other, now, &note.text);
            line.id = note::key_id(name, note::COSIGNATURE_V1, key.verifying_key().as_bytes());
            (200, text, line.to_line())
        }
        _ => (
            200,
            text,
            note::cosign(name, key, now, &note.text).to_line(),
        ),
    }
}
