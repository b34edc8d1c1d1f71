//! The coordinator certificates of password-protected clusters ([`crate::render::tls`]).
//!
//! The compute plane's CA is made here, in the VPC, the first time a cluster needs HTTPS:
//! its key is kept in Secret `tether-presto-ca` and never leaves the namespace; its
//! certificate is published in the ConfigMap of the same name for clients. Each cluster's
//! coordinator gets Secret `<cluster>-tls` (`keystore.pem`: the key, then the certificate
//! and the CA, which is the PEM keystore airlift loads; plus `tls.crt`, `tls.key`,
//! `ca.crt`), issued for the Service's names and renewed when two thirds of its lifetime
//! have passed, when its names change or when it is not from the current CA. Or, with
//! `tls.certificate_ref`, the customer's `kubernetes.io/tls` Secret is copied into that
//! shape. The version (the certificate's serial, or a hash of the customer's pair) goes
//! into the coordinator's pod-template hash: Presto reads the keystore only at start.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tether_shared::pki::CertificateInfo;
use time::OffsetDateTime;

use crate::render::RenderContext;
use crate::render::labels::{COMPONENT_LABEL, COMPUTE_PLANE_LABEL, Component, MANAGED_BY};
use crate::render::tls::{CA_KEY, KEYSTORE_KEY, PRESTO_CA_NAME, certificate_names};

/// The default lifetime of a coordinator certificate.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The Secret key of the CA's private key.
const CA_PRIVATE_KEY: &str = "ca.key";
/// The annotation with the names a certificate was issued for (comma-separated).
pub const NAMES_ANNOTATION: &str = "tether.io/certificate-names";
/// The annotation with the certificate's version (what the coordinator hash holds).
pub const VERSION_ANNOTATION: &str = "tether.io/certificate-version";

/// Something wrong with a certificate; the message names the Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsProblem(pub String);

/// The compute plane's CA for coordinator certificates.
pub struct PrestoCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for PrestoCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrestoCa").finish_non_exhaustive()
    }
}

impl PrestoCa {
    /// A new CA, valid ten years, and its Secret.
    pub fn generate(ctx: &RenderContext) -> Result<(Self, Value), TlsProblem> {
        let bad = |e: rcgen::Error| TlsProblem(format!("making the Presto CA: {e}"));
        let key = KeyPair::generate().map_err(bad)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("Tether Presto CA {}", ctx.compute_plane_id),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(60);
        params.not_after = now + Duration::from_secs(10 * 365 * 24 * 3600);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(bad)?;
        let secret = secret(
            PRESTO_CA_NAME,
            ctx,
            "presto-ca",
            &[(CA_KEY, cert.pem()), (CA_PRIVATE_KEY, key.serialize_pem())],
            None,
        );
        let ca = Self::from_pems(&cert.pem(), &key.serialize_pem())?;
        Ok((ca, secret))
    }

    /// The CA in Secret `tether-presto-ca`'s (base64-decoded) data.
    pub fn from_secret_data(
        data: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, TlsProblem> {
        let get = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.clone()).ok())
                .ok_or_else(|| {
                    TlsProblem(format!(
                        "Secret {PRESTO_CA_NAME} has no key {k}; delete it to have a new CA made"
                    ))
                })
        };
        Self::from_pems(&get(CA_KEY)?, &get(CA_PRIVATE_KEY)?)
    }

    fn from_pems(cert_pem: &str, key_pem: &str) -> Result<Self, TlsProblem> {
        let bad = |e: rcgen::Error| TlsProblem(format!("Secret {PRESTO_CA_NAME}: {e}"));
        let key = KeyPair::from_pem(key_pem).map_err(bad)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(bad)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A coordinator certificate for `cluster` valid `validity`, as Secret
    /// `tether-tls-<cluster>`, its version, and the certificate chain (public).
    pub fn issue(
        &self,
        cluster: &str,
        ctx: &RenderContext,
        validity: Duration,
    ) -> Result<(Value, String, String), TlsProblem> {
        let bad = |e: rcgen::Error| TlsProblem(format!("issuing {cluster}'s certificate: {e}"));
        let names = certificate_names(cluster, &ctx.namespace);
        let key = KeyPair::generate().map_err(bad)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].clone());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = names
            .iter()
            .map(|n| Ok(SanType::DnsName(n.clone().try_into()?)))
            .collect::<Result<_, rcgen::Error>>()
            .map_err(bad)?;
        let now = OffsetDateTime::now_utc();
        // Backdated a little for skewed clocks, never by more than a quarter of the
        // lifetime (a test's seconds-long lifetime still starts now).
        params.not_before = now - Duration::from_secs(60).min(validity / 4);
        params.not_after = now + validity;
        let serial = random_serial();
        let version = hex::encode(serial.as_ref());
        params.serial_number = Some(serial);
        let cert = params.signed_by(&key, &self.issuer).map_err(bad)?;
        let chain = format!("{}{}", cert.pem(), self.cert_pem);
        Ok((
            tls_secret(
                cluster,
                ctx,
                &key.serialize_pem(),
                &chain,
                &self.cert_pem,
                &names,
                &version,
            ),
            version,
            chain,
        ))
    }
}

/// The `tether-presto-ca` ConfigMap key of a coordinator's certificate chain.
pub fn leaf_key(cluster: &str) -> String {
    format!("coordinator-{cluster}.crt")
}

/// The ConfigMap key of the names it was issued for (comma-separated).
pub fn names_key(cluster: &str) -> String {
    format!("coordinator-{cluster}.names")
}

/// A certificate issued earlier, as the published ConfigMap lists it, that is still good:
/// from the CA `ca_pem`, for `names`, and not yet two thirds through its lifetime at
/// `now`. Its version and chain; `None` when it must be issued again.
pub fn issued_still_good(
    published: &std::collections::BTreeMap<String, String>,
    cluster: &str,
    ca_pem: &str,
    names: &[String],
    now: i64,
) -> Option<(String, String)> {
    let chain = published.get(&leaf_key(cluster))?;
    if !chain.ends_with(ca_pem) || published.get(&names_key(cluster))? != &names.join(",") {
        return None;
    }
    let info = CertificateInfo::from_pem(chain.as_bytes()).ok()?;
    (now < info.renew_at()).then(|| (info.serial, chain.clone()))
}

/// Secret `<cluster>-tls` from the customer's `kubernetes.io/tls` Secret `name` (its
/// decoded data), and its version; an error names what is missing.
pub fn from_customer_secret(
    cluster: &str,
    ctx: &RenderContext,
    name: &str,
    data: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<(Value, String), TlsProblem> {
    let text = |k: &str| {
        let v = data.get(k).ok_or_else(|| {
            TlsProblem(format!(
                "Secret {name} (tls.certificate_ref) has no key {k}; a kubernetes.io/tls Secret holds tls.crt and tls.key"
            ))
        })?;
        String::from_utf8(v.clone())
            .map_err(|_| TlsProblem(format!("Secret {name}: {k} is not PEM text")))
    };
    let crt = text("tls.crt")?;
    let key = text("tls.key")?;
    if tether_shared::pki::certs_from_pem(crt.as_bytes()).is_err()
        || tether_shared::pki::key_from_pem(key.as_bytes()).is_err()
    {
        return Err(TlsProblem(format!(
            "Secret {name}: tls.crt must hold PEM certificates and tls.key a PEM private key"
        )));
    }
    let version = {
        let mut h = Sha256::new();
        h.update(crt.as_bytes());
        h.update(key.as_bytes());
        let mut v = hex::encode(h.finalize());
        v.truncate(16);
        v
    };
    let ca = data
        .get(CA_KEY)
        .and_then(|v| String::from_utf8(v.clone()).ok())
        .unwrap_or_default();
    Ok((
        tls_secret(
            cluster,
            ctx,
            &key,
            &crt,
            &ca,
            &certificate_names(cluster, &ctx.namespace),
            &version,
        ),
        version,
    ))
}

fn tls_secret(
    cluster: &str,
    ctx: &RenderContext,
    key_pem: &str,
    chain_pem: &str,
    ca_pem: &str,
    names: &[String],
    version: &str,
) -> Value {
    let mut s = secret(
        &crate::render::tls::tls_secret_name(cluster),
        ctx,
        Component::Coordinator.as_str(),
        &[
            (KEYSTORE_KEY, format!("{key_pem}{chain_pem}")),
            ("tls.crt", chain_pem.to_owned()),
            ("tls.key", key_pem.to_owned()),
            (CA_KEY, ca_pem.to_owned()),
        ],
        Some(cluster),
    );
    s["type"] = json!("kubernetes.io/tls");
    s["metadata"]["annotations"] = json!({
        NAMES_ANNOTATION: names.join(","),
        VERSION_ANNOTATION: version,
    });
    s
}

fn secret(
    name: &str,
    ctx: &RenderContext,
    component: &str,
    data: &[(&str, String)],
    cluster: Option<&str>,
) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut labels = json!({
        MANAGED_BY.0: MANAGED_BY.1,
        COMPONENT_LABEL: component,
        COMPUTE_PLANE_LABEL: ctx.compute_plane_id,
    });
    if let Some(c) = cluster {
        labels[crate::render::labels::CLUSTER_LABEL] = json!(c);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": labels},
        "type": "Opaque",
        "data": data.iter().map(|(k, v)| ((*k).to_owned(), Value::from(b64(v)))).collect::<serde_json::Map<_, _>>(),
    })
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so the DER encoding is exactly these bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use rustls::client::danger::ServerCertVerifier as _;

    use super::*;

    fn ctx() -> RenderContext {
        RenderContext::new("tether", "cp-1", 10)
    }

    fn decoded(secret: &Value) -> BTreeMap<String, Vec<u8>> {
        secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap();
                (k.clone(), b)
            })
            .collect()
    }

    #[test]
    fn an_issued_certificate_chains_to_the_ca_names_the_service_and_is_renewed_in_time() {
        let (ca, ca_secret) = PrestoCa::generate(&ctx()).unwrap();
        let again = PrestoCa::from_secret_data(&decoded(&ca_secret)).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let (secret, version, chain_pem) = ca.issue("analytics", &ctx(), DEFAULT_VALIDITY).unwrap();
        assert_eq!(secret["metadata"]["name"], "tether-tls-analytics");
        let data = decoded(&secret);
        assert_eq!(
            String::from_utf8(data["tls.crt"].clone()).unwrap(),
            chain_pem
        );
        let keystore = String::from_utf8(data[KEYSTORE_KEY].clone()).unwrap();
        assert!(
            keystore.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{keystore}"
        );
        assert_eq!(
            keystore.matches("BEGIN CERTIFICATE").count(),
            2,
            "leaf and CA"
        );
        // The chain verifies against the CA for the Service's name (webpki, as rustls does).
        let chain = tether_shared::pki::certs_from_pem(&data["tls.crt"]).unwrap();
        let roots = tether_shared::pki::certs_from_pem(ca.cert_pem().as_bytes()).unwrap();
        let mut store = rustls::RootCertStore::empty();
        store.add(roots[0].clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(store),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        for name in ["analytics.tether.svc", "analytics.tether.svc.cluster.local"] {
            verifier
                .verify_server_cert(
                    &chain[0],
                    &chain[1..],
                    &rustls::pki_types::ServerName::try_from(name).unwrap(),
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(
            verifier
                .verify_server_cert(
                    &chain[0],
                    &chain[1..],
                    &rustls::pki_types::ServerName::try_from("other.tether.svc").unwrap(),
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .is_err()
        );

        let names = certificate_names("analytics", "tether");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let published = BTreeMap::from([
            (leaf_key("analytics"), chain_pem.clone()),
            (names_key("analytics"), names.join(",")),
        ]);
        assert_eq!(
            issued_still_good(&published, "analytics", ca.cert_pem(), &names, now),
            Some((version, chain_pem))
        );
        // Two thirds through 90 days: renewed.
        assert_eq!(
            issued_still_good(
                &published,
                "analytics",
                ca.cert_pem(),
                &names,
                now + 61 * 24 * 3600
            ),
            None
        );
        // Another CA, other names, another cluster: issued again.
        let (other, _) = PrestoCa::generate(&ctx()).unwrap();
        assert_eq!(
            issued_still_good(&published, "analytics", other.cert_pem(), &names, now),
            None
        );
        let moved = certificate_names("analytics", "elsewhere");
        assert_eq!(
            issued_still_good(&published, "analytics", ca.cert_pem(), &moved, now),
            None
        );
        assert_eq!(
            issued_still_good(&published, "adhoc", ca.cert_pem(), &names, now),
            None
        );
    }

    #[test]
    fn a_customer_secret_is_copied_and_a_broken_one_is_named() {
        let (ca, _) = PrestoCa::generate(&ctx()).unwrap();
        let (issued, _, _) = ca.issue("x", &ctx(), DEFAULT_VALIDITY).unwrap();
        let mut data = decoded(&issued);
        data.remove(CA_KEY);
        let (secret, v1) = from_customer_secret("analytics", &ctx(), "corp-cert", &data).unwrap();
        assert_eq!(secret["metadata"]["name"], "tether-tls-analytics");
        let (_, v2) = from_customer_secret("analytics", &ctx(), "corp-cert", &data).unwrap();
        assert_eq!(v1, v2, "the version is a function of the pair");
        data.remove("tls.key");
        let e = from_customer_secret("analytics", &ctx(), "corp-cert", &data).unwrap_err();
        assert!(e.0.contains("corp-cert") && e.0.contains("tls.key"), "{e}");
        data.insert("tls.key".into(), b"not a key".to_vec());
        assert!(from_customer_secret("analytics", &ctx(), "corp-cert", &data).is_err());
    }
}
