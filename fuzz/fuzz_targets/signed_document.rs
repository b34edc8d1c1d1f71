//! Fuzzes signed-document verification: an attacker who can change any bytes of a signed
//! document on the wire or in the state dir must never get a different document verified,
//! and verification must never panic. The input is applied to a validly signed document
//! as byte edits of its protobuf encoding, and also decoded as a document of its own.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tether_proto::v1 as pb;
use tether_shared::signing::{SigningKey, VerifyingKey, desired_state_bytes};

const CP: &str = "cp-1";

struct Fixture {
    key: VerifyingKey,
    signed: pb::DesiredState,
    encoded: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        let mut signed = pb::DesiredState {
            generation: 7,
            clusters: vec![pb::NamedSpec {
                name: "etl".into(),
                spec_json: r#"{"presto_version":"0.293","workers":{"count":2}}"#.into(),
            }],
            settings: [("query_text".to_owned(), "redacted".to_owned())].into(),
            presto_access_json: r#"{"authentication":{"kind":"none"}}"#.into(),
            ..Default::default()
        };
        key.sign_desired_state(CP, &mut signed);
        Fixture {
            key: key.public().clone(),
            encoded: signed.encode_to_vec(),
            signed,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let original = desired_state_bytes(CP, &f.signed);
    // Edits: each 3-byte chunk is (position hi, position lo, xor value).
    let mut edited = f.encoded.clone();
    for chunk in data.chunks_exact(3) {
        let at = (usize::from(chunk[0]) << 8 | usize::from(chunk[1])) % edited.len();
        edited[at] ^= chunk[2];
    }
    for bytes in [edited.as_slice(), data] {
        let Ok(doc) = pb::DesiredState::decode(bytes) else {
            continue;
        };
        if f.key.verify_desired_state(CP, &doc).is_ok() {
            assert_eq!(
                desired_state_bytes(CP, &doc),
                original,
                "a different document verified"
            );
        }
        // Never for another compute plane.
        assert!(f.key.verify_desired_state("cp-2", &doc).is_err());
    }
    // Key statements and PEM parsing never panic either.
    let _ = VerifyingKey::from_pem(&String::from_utf8_lossy(data));
    if let Ok(st) = pb::SigningKeyStatement::decode(data) {
        let _ = f.key.follow(&st);
    }
});
