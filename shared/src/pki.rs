//! PEM parsing, key and CSR generation, and the facts of a certificate that both planes
//! read (serial, validity, agent identity).

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::AgentIdentity;

/// A PEM or X.509 problem.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// No certificate in the PEM text.
    #[error("no certificate found in PEM")]
    NoCertificate,
    /// PEM could not be parsed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// DER could not be parsed as X.509.
    #[error("invalid X.509 certificate: {0}")]
    X509(String),
    /// Key generation or CSR serialisation failed.
    #[error("key or CSR generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// All certificates in a PEM text, in order.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in a PEM text.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| PkiError::Pem(e.to_string()))
}

/// What both planes need to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial number, lower-case hex without separators.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The agent identity from the URI SAN, if the certificate carries one.
    pub identity: Option<AgentIdentity>,
}

impl CertificateInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| PkiError::X509(e.to_string()))?;
        let mut identity = None;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name
                    && let Ok(id) = AgentIdentity::from_uri(uri)
                {
                    identity = Some(id);
                }
            }
        }
        Ok(Self {
            serial: cert.raw_serial_as_string().replace(':', "").to_lowercase(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            identity,
        })
    }

    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        let certs = certs_from_pem(pem)?;
        let first = certs.first().ok_or(PkiError::NoCertificate)?;
        Self::from_der(first)
    }

    /// When a holder should renew: two thirds of the way through the validity.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// A fresh ECDSA P-256 key and a CSR for it, both PEM. The key never leaves the caller.
pub fn key_and_csr(common_name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_parses_and_verifies() {
        let (key, csr) = key_and_csr("agent").expect("csr");
        assert!(key.contains("PRIVATE KEY"));
        assert!(rcgen::CertificateSigningRequestParams::from_pem(&csr).is_ok());
    }

    #[test]
    fn reads_identity_and_renew_point() {
        let key = KeyPair::generate().expect("key");
        let id = AgentIdentity {
            tenant_id: "t".into(),
            compute_plane_id: "c".into(),
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(id.to_uri().try_into().expect("ia5"))];
        let cert = params.self_signed(&key).expect("cert");
        let info = CertificateInfo::from_der(cert.der()).expect("info");
        assert_eq!(info.identity, Some(id));
        assert!(info.renew_at() > info.not_before && info.renew_at() < info.not_after);
        assert!(certs_from_pem(b"nothing").is_err());
    }
}
