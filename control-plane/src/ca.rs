//! The internal certificate authority. Created on first start under the data dir
//! (`ca.pem`, `ca-key.pem` 0600); signs the gRPC server certificate and every agent
//! certificate. Agents trust `ca.pem`; the control plane trusts only client certificates
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
    /// Loads the CA from `dir`, creating it (valid ten years) when absent.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let io = |source| CaError::Io {
            dir: dir.display().to_string(),
            source,
        };
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        if cert_path.exists() && key_path.exists() {
            let ca_pem = std::fs::read_to_string(&cert_path).map_err(io)?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io)?;
            let key = KeyPair::from_pem(&key_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
            return Ok(Self { issuer, ca_pem });
        }
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
        let ca_pem = cert.pem();
        files::write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io)?;
        files::write_public(&cert_path, ca_pem.as_bytes()).map_err(io)?;
        let issuer = Issuer::new(params, key);
        Ok(Self { issuer, ca_pem })
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

    #[test]
    fn signs_csr_with_identity_of_its_choosing_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
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
        // Reloading gives the same CA.
        let again = Ca::load_or_create(dir.path()).expect("reload");
        assert_eq!(again.ca_pem(), ca.ca_pem());
    }

    #[test]
    fn refuses_garbage_csr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
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
