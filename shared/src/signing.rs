//! Signed desired state: the control plane signs every desired-state document with an
//! Ed25519 key (aws-lc-rs, the one crypto provider of the project); the agent pins the
//! public half at enrollment and applies only documents that verify under it, for its own
//! compute plane. A new key is introduced by a [`pb::SigningKeyStatement`] signed with the
//! key before it, so agents follow a rotation without enrolling again.
//!
//! What is signed is a canonical encoding of the document's fields as sent (each spec's
//! JSON text, not a re-encoding of it), so an agent of another version verifies exactly
//! what the control plane signed, whatever fields its own spec types know.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tether_proto::v1 as pb;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// Domain separation of a desired-state signature.
const DESIRED_STATE_CONTEXT: &[u8] = b"tether desired state v1\n";
/// Domain separation of a key statement's signature.
const KEY_STATEMENT_CONTEXT: &[u8] = b"tether signing key statement v1\n";

/// Why a document or statement does not verify. Each says what the agent saw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature at all.
    #[error("the document is not signed")]
    Unsigned,
    /// Signed by a key the agent has not pinned.
    #[error("the document is signed by key {got:?}, not by the pinned key {pinned:?}")]
    UnknownKey {
        /// The key id the document names.
        got: String,
        /// The key id pinned.
        pinned: String,
    },
    /// The signature does not match the content (tampered, or for another compute plane).
    #[error(
        "the signature does not match the document (altered after signing, or signed for another compute plane)"
    )]
    Mismatch,
    /// A key is not an Ed25519 public key in PEM.
    #[error("not an Ed25519 public key in PEM: {0}")]
    MalformedKey(String),
}

/// The control plane's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: VerifyingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key, as PKCS#8 DER (what the control plane seals and stores).
    pub fn generate_pkcs8() -> Vec<u8> {
        // Generation fails only when the system's random source does, which nothing
        // here can recover from.
        #[allow(clippy::expect_used)]
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("the system random source works");
        doc.as_ref().to_vec()
    }

    /// The key from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SignatureError> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| SignatureError::MalformedKey(format!("PKCS#8: {e}")))?;
        let public = VerifyingKey::from_raw(pair.public_key().as_ref())?;
        Ok(Self { pair, public })
    }

    /// The public half, which agents pin.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `doc` for compute plane `cp`, filling its signature fields.
    pub fn sign_desired_state(&self, cp: &str, doc: &mut pb::DesiredState) {
        doc.signature_key_id = self.public.key_id.clone();
        doc.signature = self
            .pair
            .sign(&desired_state_bytes(cp, doc))
            .as_ref()
            .to_vec();
    }

    /// A statement, signed with this key, that `next` succeeds it.
    pub fn introduce(&self, next: &VerifyingKey) -> pb::SigningKeyStatement {
        let key_pem = next.to_pem();
        let signature = self
            .pair
            .sign(&statement_bytes(&self.public.key_id, &key_pem))
            .as_ref()
            .to_vec();
        pb::SigningKeyStatement {
            key_pem,
            signed_by_key_id: self.public.key_id.clone(),
            signature,
        }
    }
}

/// A public key that verifies desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    raw: [u8; 32],
    key_id: String,
}

impl VerifyingKey {
    fn from_raw(raw: &[u8]) -> Result<Self, SignatureError> {
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| SignatureError::MalformedKey(format!("{} bytes, not 32", raw.len())))?;
        let key_id = hex::encode(&Sha256::digest(raw)[..8]);
        Ok(Self { raw, key_id })
    }

    /// Reads a `PUBLIC KEY` PEM block (an Ed25519 SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<Self, SignatureError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PUBLIC KEY-----")
            .collect();
        if body.is_empty() {
            return Err(SignatureError::MalformedKey("no PUBLIC KEY block".into()));
        }
        let der = STANDARD
            .decode(body)
            .map_err(|e| SignatureError::MalformedKey(e.to_string()))?;
        match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(raw) => Self::from_raw(raw),
            None => Err(SignatureError::MalformedKey(
                "not an Ed25519 key (RFC 8410)".into(),
            )),
        }
    }

    /// The key as a `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    /// The key's id: the first 8 bytes of the SHA-256 of the key, hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Checks that `doc` was signed by this key for compute plane `cp`.
    pub fn verify_desired_state(
        &self,
        cp: &str,
        doc: &pb::DesiredState,
    ) -> Result<(), SignatureError> {
        if doc.signature.is_empty() {
            return Err(SignatureError::Unsigned);
        }
        if doc.signature_key_id != self.key_id {
            return Err(SignatureError::UnknownKey {
                got: doc.signature_key_id.clone(),
                pinned: self.key_id.clone(),
            });
        }
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(&desired_state_bytes(cp, doc), &doc.signature)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// Follows `statement` from this key: the key it introduces, if this key signed it.
    pub fn follow(&self, statement: &pb::SigningKeyStatement) -> Result<Self, SignatureError> {
        if statement.signed_by_key_id != self.key_id {
            return Err(SignatureError::UnknownKey {
                got: statement.signed_by_key_id.clone(),
                pinned: self.key_id.clone(),
            });
        }
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(
                &statement_bytes(&self.key_id, &statement.key_pem),
                &statement.signature,
            )
            .map_err(|_| SignatureError::Mismatch)?;
        Self::from_pem(&statement.key_pem)
    }

    /// Whether `statements` lead from this key to `target` (this key itself included):
    /// every statement signed by a key reached so far is followed, so a chain with dead
    /// ends (a rotation retried after a crash) still leads wherever any path does.
    pub fn leads_to(&self, statements: &[pb::SigningKeyStatement], target: &VerifyingKey) -> bool {
        let mut reached = vec![self.clone()];
        let mut i = 0;
        while i < reached.len() {
            if &reached[i] == target {
                return true;
            }
            for s in statements {
                if let Ok(next) = reached[i].follow(s)
                    && !reached.contains(&next)
                {
                    reached.push(next);
                }
            }
            i += 1;
        }
        false
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes a desired-state signature covers: the compute plane, the generation, every
/// cluster and catalog (sorted by name), the settings (sorted by key) and the Presto
/// access, each length-prefixed so no two documents encode alike.
pub fn desired_state_bytes(cp: &str, doc: &pb::DesiredState) -> Vec<u8> {
    let mut out = DESIRED_STATE_CONTEXT.to_vec();
    put(&mut out, cp.as_bytes());
    out.extend_from_slice(&doc.generation.to_be_bytes());
    for specs in [&doc.clusters, &doc.catalogs] {
        let mut sorted: Vec<&pb::NamedSpec> = specs.iter().collect();
        sorted.sort_by(|a, b| (&a.name, &a.spec_json).cmp(&(&b.name, &b.spec_json)));
        out.extend_from_slice(&(sorted.len() as u64).to_be_bytes());
        for s in sorted {
            put(&mut out, s.name.as_bytes());
            put(&mut out, s.spec_json.as_bytes());
        }
    }
    let mut settings: Vec<(&String, &String)> = doc.settings.iter().collect();
    settings.sort();
    out.extend_from_slice(&(settings.len() as u64).to_be_bytes());
    for (k, v) in settings {
        put(&mut out, k.as_bytes());
        put(&mut out, v.as_bytes());
    }
    put(&mut out, doc.presto_access_json.as_bytes());
    out
}

fn statement_bytes(signer: &str, key_pem: &str) -> Vec<u8> {
    let mut out = KEY_STATEMENT_CONTEXT.to_vec();
    put(&mut out, signer.as_bytes());
    put(&mut out, key_pem.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> pb::DesiredState {
        pb::DesiredState {
            generation: 4,
            clusters: vec![pb::NamedSpec {
                name: "etl".into(),
                spec_json: r#"{"presto_version":"0.293"}"#.into(),
            }],
            settings: [("query_text".to_owned(), "redacted".to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_signed_document_verifies_only_unchanged_and_for_its_compute_plane() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        let pinned = VerifyingKey::from_pem(&key.public().to_pem()).expect("pem round trip");
        assert_eq!(&pinned, key.public());
        let mut d = doc();
        assert_eq!(
            pinned.verify_desired_state("cp-1", &d),
            Err(SignatureError::Unsigned)
        );
        key.sign_desired_state("cp-1", &mut d);
        assert_eq!(pinned.verify_desired_state("cp-1", &d), Ok(()));
        assert_eq!(
            pinned.verify_desired_state("cp-2", &d),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = d.clone();
        tampered.clusters[0].spec_json = r#"{"presto_version":"0.294"}"#.into();
        assert_eq!(
            pinned.verify_desired_state("cp-1", &tampered),
            Err(SignatureError::Mismatch)
        );
        let mut replayed = d.clone();
        replayed.generation = 5;
        assert_eq!(
            pinned.verify_desired_state("cp-1", &replayed),
            Err(SignatureError::Mismatch)
        );
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        let mut foreign = doc();
        other.sign_desired_state("cp-1", &mut foreign);
        assert!(matches!(
            pinned.verify_desired_state("cp-1", &foreign),
            Err(SignatureError::UnknownKey { .. })
        ));
        // Naming the pinned key does not help a foreign signature.
        foreign.signature_key_id = pinned.key_id().to_owned();
        assert_eq!(
            pinned.verify_desired_state("cp-1", &foreign),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn agents_follow_a_rotation_only_from_the_key_they_trust() {
        let k1 = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        let k2 = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        let k3 = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        // A dead end first (a rotation whose new key was never stored), in any order.
        let lost = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        let chain = vec![
            k2.introduce(k3.public()),
            k1.introduce(lost.public()),
            k1.introduce(k2.public()),
        ];
        assert!(k1.public().leads_to(&chain, k3.public()));
        assert!(k2.public().leads_to(&chain, k3.public()));
        assert!(
            !k3.public().leads_to(&chain, k1.public()),
            "never backwards"
        );
        // A key nobody in the chain signed for leads nowhere.
        let stranger = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key");
        assert!(!stranger.public().leads_to(&chain, k3.public()));
        // A statement introducing the attacker's key, signed by the attacker, is ignored.
        let forged = pb::SigningKeyStatement {
            signed_by_key_id: k1.public().key_id().to_owned(),
            ..stranger.introduce(stranger.public())
        };
        assert_eq!(k1.public().follow(&forged), Err(SignatureError::Mismatch));
        assert!(
            VerifyingKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }
}
