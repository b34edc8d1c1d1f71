//! The one place for every secret the control plane keeps (the CA private key, the TLS
//! session-ticket key, later OIDC client secrets and signing keys): sealed with
//! AES-256-GCM under a key-encryption key that never enters the database, and stored in
//! the store's `secrets` table, so every replica on one PostgreSQL database shares them and
//! no dump of the database holds a private key in plain text.
//!
//! The key-encryption key is 32 random bytes, base64 encoded, in a file: given with
//! `--secret-key-file` (required with PostgreSQL: the same file on every replica), or, with
//! SQLite, `DATA_DIR/secret-key`, created on first start. A key check sealed on first start
//! tells a replica with a wrong or different key apart from a damaged secret.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::store::{SecretStore, StoreError};

/// Format version of a sealed secret (the first byte).
const VERSION: u8 = 1;
/// Name of the key check.
const KEY_CHECK: &str = "key-check";
/// What the key check seals.
const KEY_CHECK_PLAINTEXT: &[u8] = b"tether secret key check v1";

/// A secrets problem. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file is missing or unreadable.
    #[error("secret key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error(
        "secret key file {path}: must hold 32 random bytes, base64 encoded \
         (make one with: head -c 32 /dev/urandom | base64 > {path})"
    )]
    Malformed {
        /// The file.
        path: String,
    },
    /// PostgreSQL without a key.
    #[error(
        "--secret-key-file (TETHER_SECRET_KEY_FILE) is required with a PostgreSQL --database: \
         every replica needs the same key to read the secrets they share"
    )]
    Required,
    /// The key is not the one the database's secrets were sealed with.
    #[error(
        "the secret key does not match the one this database's secrets were sealed with: \
         give every replica the same --secret-key-file"
    )]
    WrongKey,
    /// A sealed secret does not open although the key check does.
    #[error("stored secret {0:?} is damaged")]
    Damaged(String),
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption key.
pub struct SecretKey {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from its file.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).ok_or_else(|| SecretError::Malformed {
            path: path.display().to_string(),
        })
    }

    /// The key in `path`, created (0600) with a new random key when the file is absent.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        if !path.exists() {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretError::Random)?;
            let text = format!("{}\n", STANDARD.encode(bytes));
            tether_shared::files::write_private(path, text.as_bytes()).map_err(|source| {
                SecretError::Io {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            tracing::info!(path = %path.display(), "secret key created");
        }
        Self::load(path)
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        Some(Self {
            key: RandomizedNonceKey::new(&AES_256_GCM, &bytes).ok()?,
        })
    }

    /// Seals `plaintext` as the secret `name` (the name is authenticated, so a sealed
    /// value cannot be passed off as another secret).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut in_out = plaintext.to_vec();
        // AES-GCM with a random 96-bit nonce: sealing fails only if the system's random
        // source does.
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut in_out)
            .map_err(|_| SecretError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Opens the sealed secret `name`; `None` if it is not one this key sealed as `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The sealed secrets of one store, under one key.
#[derive(Debug, Clone)]
pub struct Secrets {
    key: std::sync::Arc<SecretKey>,
    store: std::sync::Arc<dyn SecretStore>,
}

impl Secrets {
    /// Checks `key` against the store's key check (sealing it first on a new database)
    /// and returns the secrets: [`SecretError::WrongKey`] when another key sealed them.
    pub async fn open(
        key: SecretKey,
        store: std::sync::Arc<dyn SecretStore>,
        now: i64,
    ) -> Result<Self, SecretError> {
        let sealed = key.seal(KEY_CHECK, KEY_CHECK_PLAINTEXT)?;
        let stored = store.put_secret_if_absent(KEY_CHECK, &sealed, now).await?;
        match key.open(KEY_CHECK, &stored) {
            Some(p) if p == KEY_CHECK_PLAINTEXT => Ok(Self {
                key: std::sync::Arc::new(key),
                store,
            }),
            _ => Err(SecretError::WrongKey),
        }
    }

    /// The secret `name`, if stored.
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, SecretError> {
        match self.store.get_secret(name).await? {
            None => Ok(None),
            Some(sealed) => self
                .key
                .open(name, &sealed)
                .map(Some)
                .ok_or_else(|| SecretError::Damaged(name.to_owned())),
        }
    }

    /// The secret `name`: the stored one, or `make()` stored now if there is none. When
    /// several replicas race, all get the value of the one that stored first.
    pub async fn get_or_create(
        &self,
        name: &str,
        now: i64,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, SecretError> {
        if let Some(v) = self.get(name).await? {
            return Ok(v);
        }
        let sealed = self.key.seal(name, &make())?;
        let stored = self.store.put_secret_if_absent(name, &sealed, now).await?;
        self.key
            .open(name, &stored)
            .ok_or_else(|| SecretError::Damaged(name.to_owned()))
    }

    /// Replaces the secret `name`.
    pub async fn put(&self, name: &str, value: &[u8], now: i64) -> Result<(), SecretError> {
        let sealed = self.key.seal(name, value)?;
        Ok(self.store.put_secret(name, &sealed, now).await?)
    }
}

/// For tests: secrets of a store in a temp dir.
#[cfg(test)]
pub(crate) async fn test_secrets() -> (tempfile::TempDir, Secrets) {
    let (dir, store, _cp) = crate::store::sqlite::test_store().await;
    let key = SecretKey::load_or_create(&dir.path().join("secret-key")).expect("key");
    let secrets = Secrets::open(key, std::sync::Arc::new(store), 0)
        .await
        .expect("secrets");
    (dir, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("random");
        SecretKey::parse(&STANDARD.encode(bytes)).expect("key")
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let (k1, k2) = (key(), key());
        let sealed = k1.seal("ca", b"private key").expect("seal");
        assert!(
            !sealed.windows(11).any(|w| w == b"private key"),
            "not in plain text"
        );
        assert_eq!(k1.open("ca", &sealed).as_deref(), Some(&b"private key"[..]));
        assert_eq!(k2.open("ca", &sealed), None, "another key");
        assert_eq!(k1.open("ticket-key", &sealed), None, "another name");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(k1.open("ca", &tampered), None, "tampered");
        assert_eq!(k1.open("ca", &sealed[..5]), None, "truncated");
        assert_ne!(
            k1.seal("ca", b"x").expect("seal"),
            k1.seal("ca", b"x").expect("seal"),
            "fresh nonce each time"
        );
    }

    #[tokio::test]
    async fn a_different_key_is_refused_and_secrets_are_shared() {
        let (dir, secrets) = test_secrets().await;
        let made = secrets
            .get_or_create("ticket-key", 0, || b"first".to_vec())
            .await
            .expect("create");
        let again = secrets
            .get_or_create("ticket-key", 0, || b"second".to_vec())
            .await
            .expect("get");
        assert_eq!(
            (made.as_slice(), again.as_slice()),
            (&b"first"[..], &b"first"[..])
        );
        let store = crate::store::sqlite::SqliteStore::open(&format!(
            "sqlite://{}",
            dir.path().join("t.db").display()
        ))
        .await
        .expect("open");
        let err = Secrets::open(key(), std::sync::Arc::new(store), 0)
            .await
            .expect_err("another key");
        assert!(matches!(err, SecretError::WrongKey), "{err}");
    }

    #[test]
    fn key_files_must_hold_32_base64_bytes() {
        assert!(SecretKey::parse("not base64!").is_none());
        assert!(SecretKey::parse(&STANDARD.encode([0u8; 16])).is_none());
        assert!(SecretKey::parse(&format!("{}\n", STANDARD.encode([7u8; 32]))).is_some());
    }
}
