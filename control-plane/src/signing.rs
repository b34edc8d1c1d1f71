//! The key that signs every desired-state document (see `tether_shared::signing`): made on
//! the first start, sealed among the shared secrets (so every PostgreSQL replica signs
//! with the same key and no database dump holds it in plain text), and rotated by
//! `tether-control-plane rotate-signing-key`, which signs a statement introducing the new
//! key with the old one. Agents follow that statement from the key they pinned at
//! enrollment; replicas pick the new key up when they restart.

use prost::Message;
use tether_proto::v1 as pb;
use tether_shared::signing::{SigningKey, VerifyingKey};

use crate::secrets::{SecretError, Secrets};

/// The sealed PKCS#8 of the current key.
const KEY_SECRET: &str = "desired-state-signing-key";
/// The rotation statements so far (a `SigningKeyChain`).
const CHAIN_SECRET: &str = "desired-state-signing-chain";

/// The current signing key and the statements that lead to it.
#[derive(Debug)]
pub struct DesiredStateSigner {
    key: SigningKey,
    chain: Vec<pb::SigningKeyStatement>,
}

impl DesiredStateSigner {
    /// The stored key (made and stored now on a new database) and its chain.
    pub async fn shared(secrets: &Secrets, now: i64) -> Result<Self, SecretError> {
        let der = secrets
            .get_or_create(KEY_SECRET, now, SigningKey::generate_pkcs8)
            .await?;
        let key = SigningKey::from_pkcs8(&der)
            .map_err(|_| SecretError::Damaged(KEY_SECRET.to_owned()))?;
        let chain = match secrets.get(CHAIN_SECRET).await? {
            None => Vec::new(),
            Some(bytes) => {
                pb::SigningKeyChain::decode(bytes.as_slice())
                    .map_err(|_| SecretError::Damaged(CHAIN_SECRET.to_owned()))?
                    .statements
            }
        };
        Ok(Self { key, chain })
    }

    /// Replaces the stored key with a new one, introduced by a statement the old key
    /// signs; returns the old and the new key ids.
    pub async fn rotate(secrets: &Secrets, now: i64) -> Result<(String, String), SecretError> {
        let old = Self::shared(secrets, now).await?;
        let der = SigningKey::generate_pkcs8();
        let new = SigningKey::from_pkcs8(&der)
            .map_err(|_| SecretError::Damaged(KEY_SECRET.to_owned()))?;
        let old_id = old.public().key_id().to_owned();
        // A statement the current key signed before is a dead end (a rotation whose new
        // key was never stored): the new statement replaces it.
        let mut chain: Vec<_> = old
            .chain
            .into_iter()
            .filter(|s| s.signed_by_key_id != old_id)
            .collect();
        chain.push(old.key.introduce(new.public()));
        // The chain first: a crash between the two writes leaves the old key signing and
        // a statement nobody needs (replaced by the next rotation), never a key agents
        // cannot reach. Run one rotation at a time.
        let encoded = pb::SigningKeyChain { statements: chain }.encode_to_vec();
        secrets.put(CHAIN_SECRET, &encoded, now).await?;
        secrets.put(KEY_SECRET, &der, now).await?;
        Ok((
            old.key.public().key_id().to_owned(),
            new.public().key_id().to_owned(),
        ))
    }

    /// The public half, which agents pin.
    pub fn public(&self) -> &VerifyingKey {
        self.key.public()
    }

    /// Every rotation statement, oldest first.
    pub fn chain(&self) -> &[pb::SigningKeyStatement] {
        &self.chain
    }

    /// Signs `doc` for compute plane `cp`.
    pub fn sign(&self, cp: &str, doc: &mut pb::DesiredState) {
        self.key.sign_desired_state(cp, doc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_key_is_shared_and_a_rotation_is_reachable_from_the_first_key() {
        let (_dir, secrets) = crate::secrets::test_secrets().await;
        let first = DesiredStateSigner::shared(&secrets, 0).await.expect("key");
        let again = DesiredStateSigner::shared(&secrets, 1).await.expect("key");
        assert_eq!(first.public(), again.public(), "one key per database");
        let (old, new) = DesiredStateSigner::rotate(&secrets, 2)
            .await
            .expect("rotate");
        assert_eq!(old, first.public().key_id());
        let rotated = DesiredStateSigner::shared(&secrets, 3).await.expect("key");
        assert_eq!(rotated.public().key_id(), new);
        assert!(first.public().leads_to(rotated.chain(), rotated.public()));
        let (_, newest) = DesiredStateSigner::rotate(&secrets, 4)
            .await
            .expect("rotate");
        let latest = DesiredStateSigner::shared(&secrets, 5).await.expect("key");
        assert_eq!(latest.public().key_id(), newest);
        assert!(first.public().leads_to(latest.chain(), latest.public()));
        assert!(rotated.public().leads_to(latest.chain(), latest.public()));
        assert_eq!(latest.chain().len(), 2, "one statement per key");
    }
}
