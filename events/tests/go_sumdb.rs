//! The signed notes and checkpoints checked against Go's sumdb test files (Debian's
//! `golang-golang-x-mod-dev`, `/usr/share/gocode/src/golang.org/x/mod/sumdb/`): Go's verifier key
//! parses, our signature of Go's text is Go's, Go's signed notes verify with ours and its malformed
//! ones are refused; Go's tree note is our checkpoint text, hash for hash. And the `signed_note`
//! crate as an oracle: our notes verify with it, its notes with ours.

use ed25519_dalek::SigningKey;
use neuron_events::note::{self, Checkpoint, Note, VerifierKey};
use neuron_events::testing::external;
use neuron_events::tree;

const SUMDB: &str = "/usr/share/gocode/src/golang.org/x/mod/sumdb";

/// A Go test file, or `None` (said loudly) when the package is not installed.
fn go_file(test: &str, path: &str) -> Option<String> {
    let full = format!("{SUMDB}/{path}");
    let found = std::fs::read_to_string(&full).ok();
    external(
        found.is_some(),
        test,
        &format!("Go's sumdb test file {full}"),
        "apt-get install golang-golang-x-mod-dev",
    )
    .then_some(found)
    .flatten()
}

/// The Go string literal that begins with `prefix` (inside its quotes), escapes `\n` resolved.
fn literal(source: &str, prefix: &str) -> String {
    let start = source
        .find(&format!("\"{}", prefix.replace('\n', "\\n")))
        .unwrap_or_else(|| panic!("no literal beginning {prefix:?}"))
        + 1;
    let end = start + source[start..].find('"').unwrap();
    source[start..end].replace("\\n", "\n")
}

/// The Ed25519 seed of a Go private key `PRIVATE+KEY+<name>+<id>+base64(1 ‖ seed)`.
fn seed_of(skey: &str) -> [u8; 32] {
    use base64::Engine as _;
    // PRIVATE+KEY+<name>+<id>+<key>: the key's base64 may itself hold a '+'.
    let encoded = skey.splitn(5, '+').nth(4).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(blob[0], note::ED25519);
    blob[1..].try_into().unwrap()
}

#[test]
fn go_notes_keys_and_signatures_are_ours() {
    let Some(source) = go_file("go_notes_keys_and_signatures_are_ours", "note/note_test.go") else {
        return;
    };
    let peter = VerifierKey::parse(&literal(&source, "PeterNeumann+c74f20a3+")).unwrap();
    let enoch = VerifierKey::parse(&literal(&source, "EnochRoot+af0cfe78+")).unwrap();
    assert_eq!(peter.to_text(), literal(&source, "PeterNeumann+c74f20a3+"));
    assert_eq!(peter.id(), 0xc74f20a3);

    // Go's signature of Go's text, made again by us from Go's private key.
    let skey = literal(&source, "PRIVATE+KEY+PeterNeumann+");
    let signing = SigningKey::from_bytes(&seed_of(&skey));
    assert_eq!(signing.verifying_key(), peter.key);
    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let peter_sig = literal(&source, "— PeterNeumann ");
    let enoch_sig = literal(&source, "— EnochRoot ");
    assert_eq!(
        note::sign("PeterNeumann", &signing, text).to_line(),
        peter_sig
    );

    // Go's note with two signatures: both verify with both keys; with one key, one.
    let message = format!("{text}\n{peter_sig}{enoch_sig}");
    let parsed = Note::parse(&message).unwrap();
    assert_eq!(parsed.text, text);
    assert_eq!(parsed.to_text(), message);
    assert_eq!(
        note::verify(&parsed, &[peter.clone(), enoch.clone()])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        note::verify(&parsed, std::slice::from_ref(&peter))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(note::verify(&parsed, &[]), Err(note::NoteError::Unverified));

    // Go's invalid messages, refused as Go refuses them.
    let altered = format!("{text}\n{}ABCD{}", &peter_sig[..60], &peter_sig[60..]);
    assert!(note::verify(
        &Note::parse(&altered).unwrap(),
        std::slice::from_ref(&peter)
    )
    .is_err());
    let too_many = format!("{text}\n{}", peter_sig.repeat(101));
    assert!(Note::parse(&too_many).is_err());
    for bad in [
        text.to_string(),
        format!("{text}\n"),
        format!("{text}\n{}", &peter_sig[..peter_sig.len() - 1]),
        format!("\x01{text}\n{peter_sig}"),
        format!(
            "{text}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        ),
        format!("{text}\n{peter_sig}Unexpected line.\n"),
    ] {
        assert!(Note::parse(&bad).is_err(), "{bad:?}");
    }
    // Go's keys with a wrong length or an unknown algorithm.
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(source.contains(bad));
        assert!(VerifierKey::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn gos_tree_note_is_our_checkpoint_text() {
    let Some(source) = go_file("gos_tree_note_is_our_checkpoint_text", "tlog/note_test.go") else {
        return;
    };
    let golden = literal(&source, "go.sum database tree\n123456789012\n");
    let checkpoint = Checkpoint {
        origin: "go.sum database tree".into(),
        size: 123_456_789_012,
        root: tree::leaf_hash(b"hello world"),
        extensions: vec![],
    };
    assert_eq!(checkpoint.to_text(), golden);
    assert_eq!(Checkpoint::parse(&golden).unwrap(), checkpoint);
    assert!(Checkpoint::parse(&golden.replace("123456789012", "0xabcdef")).is_err());
    let too_big = golden.replace("Bb0=", "BTOOBIG=");
    assert!(source.contains(&too_big.replace('\n', "\\n")));
    assert!(Checkpoint::parse(&too_big).is_err());
}

#[test]
fn the_signed_note_crate_and_ours_verify_each_others_notes() {
    use signed_note::{Note as TheirNote, StandardSigner, StandardVerifier, VerifierList};

    let signing = SigningKey::from_bytes(&[0x42; 32]);
    let ours = VerifierKey::new(
        "example.org/neuron/1245319599",
        note::ED25519,
        signing.verifying_key(),
    )
    .unwrap();
    let text = Checkpoint {
        origin: "example.org/neuron/1245319599".into(),
        size: 42,
        root: tree::leaf_hash(b"x"),
        extensions: vec![],
    }
    .to_text();

    // Ours, verified by theirs.
    let our_note = Note {
        text: text.clone(),
        signatures: vec![note::sign(&ours.name, &signing, &text)],
    }
    .to_text();
    let verifier = StandardVerifier::new(&ours.to_text()).unwrap();
    let read = TheirNote::from_bytes(our_note.as_bytes()).unwrap();
    let (verified, _) = read
        .verify(&VerifierList::new(vec![Box::new(verifier.clone())]))
        .unwrap();
    assert_eq!(verified.len(), 1);

    // Theirs, verified by ours.
    use base64::Engine as _;
    let mut blob = vec![note::ED25519];
    blob.extend_from_slice(&signing.to_bytes());
    let skey = format!(
        "PRIVATE+KEY+{}+{:08x}+{}",
        ours.name,
        ours.id(),
        base64::engine::general_purpose::STANDARD.encode(blob)
    );
    let signer = StandardSigner::new(&skey).unwrap();
    let mut their_note = TheirNote::new(text.as_bytes(), &[]).unwrap();
    their_note.add_sigs(&[&signer]).unwrap();
    let their_text = String::from_utf8(their_note.to_bytes()).unwrap();
    assert_eq!(their_text, our_note, "the same bytes either way");
    assert_eq!(
        note::verify(&Note::parse(&their_text).unwrap(), &[ours])
            .unwrap()
            .len(),
        1
    );
}
