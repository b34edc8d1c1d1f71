//! Sealed secrets (see [`crate::secrets`]): the store keeps only what the
//! key-encryption key sealed, never a secret in plain text.

use async_trait::async_trait;

use super::StoreError;

/// Where sealed secrets are kept (the `secrets` table of each backend).
#[async_trait]
pub trait SecretStore: Send + Sync + std::fmt::Debug + 'static {
    /// The sealed secret `name`.
    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `sealed` as `name` unless a secret of that name exists, and returns the one
    /// stored: ours, or the one another replica stored first.
    async fn put_secret_if_absent(
        &self,
        name: &str,
        sealed: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, StoreError>;
    /// Replaces the secret `name` (rotation).
    async fn put_secret(&self, name: &str, sealed: &[u8], now: i64) -> Result<(), StoreError>;
    /// Removes the secret `name` (nothing if there is none).
    async fn delete_secret(&self, name: &str) -> Result<(), StoreError>;
}
