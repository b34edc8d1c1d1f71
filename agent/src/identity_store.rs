//! The agent's credentials on disk: `STATE_DIR/identity.pem` (mode 0600) holds the client
//! certificate followed by its private key. One file, replaced by an atomic rename, so a
//! crash during renewal can never leave a key that does not match its certificate. The
//! key is generated here and never leaves this file and this process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tether_shared::files;
use tether_shared::pki::{self, CertificateInfo};

/// File name of the identity inside the state dir.
pub const IDENTITY_FILE: &str = "identity.pem";

/// A certificate and the key it certifies.
#[derive(Clone)]
pub struct Credentials {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// Facts of the leaf.
    pub info: CertificateInfo,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Problems with the state dir.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing failed.
    #[error("state dir {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a certificate and key.
    #[error("{path} is damaged ({detail}); remove it and enroll again")]
    Damaged {
        /// Path.
        path: String,
        /// Cause.
        detail: String,
    },
}

/// The agent's state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state dir.
    pub fn open(dir: &Path) -> Result<Self, IdentityError> {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| IdentityError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the identity file.
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// Loads the credentials, `None` when the agent has not enrolled yet.
    pub fn load(&self) -> Result<Option<Credentials>, IdentityError> {
        let path = self.identity_path();
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IdentityError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let damaged = |detail: String| IdentityError::Damaged {
            path: path.display().to_string(),
            detail,
        };
        let chain = pki::certs_from_pem(&pem).map_err(|e| damaged(e.to_string()))?;
        let key = pki::key_from_pem(&pem).map_err(|e| damaged(e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| damaged("no certificate".into()))?;
        let info = CertificateInfo::from_der(leaf).map_err(|e| damaged(e.to_string()))?;
        Ok(Some(Credentials {
            chain,
            key: Arc::new(key),
            info,
        }))
    }

    /// Replaces the credentials atomically (0600) and returns them as loaded back.
    pub fn save(&self, cert_pem: &str, key_pem: &str) -> Result<Credentials, IdentityError> {
        let path = self.identity_path();
        let mut text = cert_pem.trim_end().to_owned();
        text.push('\n');
        text.push_str(key_pem.trim_end());
        text.push('\n');
        files::write_private(&path, text.as_bytes()).map_err(|source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load()?.ok_or_else(|| IdentityError::Damaged {
            path: path.display().to_string(),
            detail: "vanished after writing".into(),
        })
    }
}
