//! The internal certificate authority, shared by every replica: created by the first
//! one, its private key sealed in the store's secrets (see [`crate::secrets`]), its
//! certificate written to `DATA_DIR/ca.pem`; signs the gRPC server certificate and every
//! agent certificate. Agents trust `ca.pem`; the control plane trusts only client certificates
//! it issued itself.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tether_shared::AgentIdentity;
use time::OffsetDateTime;

use tether_shared::files;

use crate::secrets::Secrets;

/// A CA problem.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing the CA files failed.
    #[error("CA files in {dir}: {source}")]
    Io {
        /// The data dir.
        dir: String,
        /// The cause.
        source: std::io::Error,
    },
    /// rcgen refused something (bad CSR, bad key, signing failed).
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    /// The sealed CA could not be read or stored.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The stored CA does not parse.
    #[error("stored CA is unreadable: {0}")]
    Stored(String),
}

/// The name of the CA's secret.
const SECRET_NAME: &str = "ca";

/// The CA as sealed in the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_pem: String,
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM of the certificate.
    pub pem: String,
    /// Serial, lower-case hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// The internal CA.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Backdating of `not_before`, for agents whose clocks run a little behind.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

impl Ca {
    /// The CA every replica shares: the one sealed in the store's secrets; on a database
    /// without one, the files a file-based CA left in `dir` (`ca.pem`, `ca-key.pem`),
    /// moved into the store; else a new CA (valid ten years). When replicas race on a new
    /// database, all use the CA of the one that stored first. Writes `dir/ca.pem` (what
    /// agents trust) and leaves no private key on disk.
    pub async fn shared(dir: &Path, secrets: &Secrets, now: i64) -> Result<Self, CaError> {
        let io = |source| CaError::Io {
            dir: dir.display().to_string(),
            source,
        };
        let cert_path = dir.join("ca.pem");
        let legacy_key = dir.join("ca-key.pem");
        let stored = match secrets.get(SECRET_NAME).await? {
            Some(s) => s,
            None => {
                let pems = if legacy_key.exists() && cert_path.exists() {
                    tracing::info!(dir = %dir.display(), "moving the CA key from ca-key.pem into the store, sealed");
                    StoredCa {
                        cert_pem: std::fs::read_to_string(&cert_path).map_err(io)?,
                        key_pem: std::fs::read_to_string(&legacy_key).map_err(io)?,
                    }
                } else {
                    Self::generate()?
                };
                let json = serde_json::to_vec(&pems).map_err(|e| CaError::Stored(e.to_string()))?;
                secrets.get_or_create(SECRET_NAME, now, || json).await?
            }
        };
        let pems: StoredCa =
            serde_json::from_slice(&stored).map_err(|e| CaError::Stored(e.to_string()))?;
        let key = KeyPair::from_pem(&pems.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&pems.cert_pem, key)?;
        files::write_private(&cert_path, pems.cert_pem.as_bytes()).map_err(io)?;
        if legacy_key.exists() {
            std::fs::remove_file(&legacy_key).map_err(io)?;
        }
        Ok(Self {
            issuer,
            ca_pem: pems.cert_pem,
        })
    }

    /// A new self-signed CA, valid ten years.
    fn generate() -> Result<StoredCa, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Tether internal CA");
        dn.push(DnType::OrganizationName, "Tether");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + Duration::from_secs(10 * 365 * 24 * 3600);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(StoredCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate, PEM (what agents trust).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues the gRPC server certificate for `dns_names` and `ips`, with a fresh key.
    pub fn issue_server(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        ttl: Duration,
    ) -> Result<(Issued, KeyPair), CaError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params("tether-control-plane", ttl);
        params.subject_alt_names = dns_names
            .iter()
            .map(|d| Ok(SanType::DnsName(d.clone().try_into()?)))
            .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((issued(&params, cert.pem()), key))
    }

    /// Signs an agent's CSR for `identity`. Only the CSR's public key is used (its
    /// signature is verified by rcgen); subject, SANs and extensions are written here, so
    /// nothing the agent sends decides who it is.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        identity: &AgentIdentity,
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = leaf_params(&format!("tether-agent {}", identity.compute_plane_id), ttl);
        params.subject_alt_names = vec![SanType::URI(identity.to_uri().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params = params;
        let cert = csr.signed_by(&self.issuer)?;
        Ok(issued(&csr.params, cert.pem()))
    }
}

fn leaf_params(common_name: &str, ttl: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    // Backdate a little for skewed clocks, but never more than the lifetime itself so a
    // seconds-long test lifetime still starts now.
    params.not_before = now - CLOCK_SKEW_ALLOWANCE.min(ttl / 4);
    params.not_after = now + ttl;
    params.serial_number = Some(random_serial());
    params
}

fn issued(params: &CertificateParams, pem: String) -> Issued {
    let serial = params
        .serial_number
        .as_ref()
        .map(|s| hex_of(s.as_ref()))
        .unwrap_or_default();
    Issued {
        pem,
        serial,
        not_before: params.not_before.unix_timestamp(),
        not_after: params.not_after.unix_timestamp(),
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so the DER encoding is exactly these bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_shared::pki::{CertificateInfo, key_and_csr};

    #[tokio::test]
    async fn signs_csr_with_identity_of_its_choosing_only() {
        let (dir, secrets) = crate::secrets::test_secrets().await;
        let ca = Ca::shared(dir.path(), &secrets, 0).await.expect("ca");
        let (_, csr) = key_and_csr("spiffe://tether/tenant/evil/compute-plane/evil").expect("csr");
        let id = AgentIdentity {
            tenant_id: "t1".into(),
            compute_plane_id: "cp1".into(),
        };
        let issued = ca
            .sign_agent(&csr, &id, Duration::from_secs(20))
            .expect("sign");
        let info = CertificateInfo::from_pem(issued.pem.as_bytes()).expect("info");
        assert_eq!(info.identity, Some(id));
        assert_eq!(info.serial, issued.serial);
        assert!(info.not_after - info.not_before <= 25);
        // Another replica (another data dir, the same store) gets the same CA.
        let other = tempfile::tempdir().expect("tempdir");
        let again = Ca::shared(other.path(), &secrets, 0).await.expect("reload");
        assert_eq!(again.ca_pem(), ca.ca_pem());
        let written = std::fs::read_to_string(other.path().join("ca.pem")).expect("ca.pem");
        assert_eq!(written, ca.ca_pem());
    }

    #[tokio::test]
    async fn a_file_based_ca_moves_into_the_store_and_leaves_no_key_on_disk() {
        let (dir, secrets) = crate::secrets::test_secrets().await;
        let old = Ca::generate().expect("generate");
        std::fs::write(dir.path().join("ca.pem"), &old.cert_pem).expect("write");
        std::fs::write(dir.path().join("ca-key.pem"), &old.key_pem).expect("write");
        let ca = Ca::shared(dir.path(), &secrets, 0).await.expect("ca");
        assert_eq!(
            ca.ca_pem(),
            old.cert_pem,
            "the agents' trust anchor is kept"
        );
        assert!(!dir.path().join("ca-key.pem").exists());
        let sealed = secrets
            .get(SECRET_NAME)
            .await
            .expect("get")
            .expect("stored");
        let stored: StoredCa = serde_json::from_slice(&sealed).expect("json");
        assert_eq!(stored.key_pem, old.key_pem);
    }

    #[tokio::test]
    async fn refuses_garbage_csr() {
        let (dir, secrets) = crate::secrets::test_secrets().await;
        let ca = Ca::shared(dir.path(), &secrets, 0).await.expect("ca");
        let id = AgentIdentity {
            tenant_id: "t".into(),
            compute_plane_id: "c".into(),
        };
        assert!(
            ca.sign_agent("not a csr", &id, Duration::from_secs(60))
                .is_err()
        );
    }
}
