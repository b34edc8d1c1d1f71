//! HTTPS on the coordinator, which Presto's password authentication needs, and LDAP.
//!
//! Presto authenticates only requests that arrive over HTTPS: airlift's
//! `AuthenticationFilter` passes every insecure request on, and Presto then believes the
//! `X-Presto-User` header. So once `authentication.kind` is `ldap`:
//! - the coordinator serves HTTPS on [`HTTPS_PORT`] (`http-server.https.*`) from a PEM file
//!   holding the private key and the certificate chain (airlift's `HttpServer` loads a PEM
//!   `http-server.https.keystore.path` with `PemReader`; prestodb's airlift has no keystore
//!   reload, so a renewed certificate is part of the coordinator's pod-template hash and
//!   restarts it);
//! - `http-server.authentication.type=PASSWORD` with `etc/password-authenticator.properties`
//!   (`password-authenticator.name=ldap`, `ldap.url`, `ldap.user-bind-pattern`, and the
//!   optional `ldap.user-base-dn` + `ldap.group-auth-pattern`: prestodb `LdapConfig`);
//! - the directory's CA goes into the JVM's default trust store, which `LdapAuthenticator`
//!   uses for `ldaps://`: an init container copies the image's `cacerts` (so S3, Glue and
//!   STS keep the public CAs) and `keytool -importcert`s the CA into it, and `jvm.config`
//!   points `javax.net.ssl.trustStore` at the copy;
//! - the client-facing Service `<cluster>` offers only the HTTPS port; discovery, the
//!   workers and the agent's reads use the plain port through Service `<cluster>-internal`;
//! - a NetworkPolicy admits the plain port only from the cluster's own pods (and CIDRs the
//!   operator names for the API server's service proxy), the HTTPS port from anywhere.
//!
//! The certificate itself is not rendered here (it needs a key and a clock): the
//! reconciler issues it into Secret [`tls_secret_name`] and passes its version in
//! [`RenderContext::tls_versions`].

use serde_json::{Value, json};
use tether_shared::spec::{Authentication, LdapAuthentication, PrestoAccess};

use super::config::{ETC_DIR, properties};
use super::labels::{Component, instance_selector, selector};
use super::objects::{config_map, metadata};
use super::{PRESTO_PORT, RenderContext};

/// The coordinator's HTTPS port (`http-server.https.port`, the port Presto's docs use).
pub const HTTPS_PORT: u16 = 8443;
/// The key of the PEM file (private key, then the certificate chain) in the TLS Secret.
pub const KEYSTORE_KEY: &str = "keystore.pem";
/// The key of `password-authenticator.properties` in the coordinator's ConfigMap.
pub const PASSWORD_AUTHENTICATOR_PROPERTIES: &str = "password-authenticator.properties";
/// Where the init container writes the trust store the JVM uses.
pub const TRUSTSTORE_DIR: &str = "/var/lib/presto/truststore";
/// The JDK's default trust-store password (the copy keeps it).
pub const TRUSTSTORE_PASSWORD: &str = "changeit";
/// Where the directory's CA is mounted in the init container.
pub const LDAP_CA_DIR: &str = "/etc/tether/ldap-ca";
/// The key holding a CA certificate in the CA ConfigMaps.
pub const CA_KEY: &str = "ca.crt";
/// The compute plane's CA for coordinator certificates: Secret (with the key, never
/// leaving the VPC) and ConfigMap (the certificate only, for clients).
pub const PRESTO_CA_NAME: &str = "tether-presto-ca";

/// Where the TLS Secret is mounted on the coordinator.
pub fn tls_dir() -> String {
    format!("{ETC_DIR}/tls")
}

/// Secret `tether-tls-<cluster>`: the coordinator's certificate and key (prefixed, so it
/// never takes the name of a certificate Secret of the customer's, such as cert-manager's
/// `<name>-tls`).
pub fn tls_secret_name(cluster: &str) -> String {
    format!("tether-tls-{cluster}")
}

/// Service `<cluster>-internal`: the coordinator's plain HTTP port, for discovery and the
/// agent, when the client Service is HTTPS only.
pub fn internal_service_name(cluster: &str) -> String {
    format!("{cluster}-internal")
}

/// ConfigMap `<cluster>-ldap-ca`: the directory's CA given by value.
pub fn ldap_ca_configmap_name(cluster: &str) -> String {
    format!("{cluster}-ldap-ca")
}

/// NetworkPolicy `<cluster>-coordinator`.
pub fn network_policy_name(cluster: &str) -> String {
    super::coordinator_name(cluster)
}

/// The LDAP settings, when the compute plane's access needs HTTPS.
pub fn ldap(ctx: &RenderContext) -> Option<&LdapAuthentication> {
    ldap_of(ctx.presto_access.as_ref()?)
}

/// The LDAP settings of a document.
pub fn ldap_of(access: &PrestoAccess) -> Option<&LdapAuthentication> {
    match &access.authentication {
        Authentication::Ldap(l) => Some(l),
        Authentication::None => None,
    }
}

/// The names the coordinator's certificate is issued for: the Service's names in the
/// namespace, short to fully qualified.
pub fn certificate_names(cluster: &str, namespace: &str) -> Vec<String> {
    let svc = super::service_name(cluster);
    vec![
        svc.clone(),
        format!("{svc}.{namespace}"),
        format!("{svc}.{namespace}.svc"),
        format!("{svc}.{namespace}.svc.cluster.local"),
    ]
}

/// The `config.properties` entries of an HTTPS coordinator with password authentication.
pub fn coordinator_properties() -> Vec<(&'static str, String)> {
    vec![
        ("http-server.https.enabled", "true".into()),
        ("http-server.https.port", HTTPS_PORT.to_string()),
        (
            "http-server.https.keystore.path",
            format!("{}/{KEYSTORE_KEY}", tls_dir()),
        ),
        ("http-server.authentication.type", "PASSWORD".into()),
    ]
}

/// `password-authenticator.properties` for Presto's LDAP authenticator.
pub fn password_authenticator_properties(ldap: &LdapAuthentication) -> String {
    let mut p = vec![
        ("password-authenticator.name", "ldap".to_owned()),
        ("ldap.url", ldap.url.clone()),
        ("ldap.user-bind-pattern", ldap.user_bind_pattern.clone()),
    ];
    if let Some(dn) = &ldap.user_base_dn {
        p.push(("ldap.user-base-dn", dn.clone()));
    }
    if let Some(g) = &ldap.group_auth_pattern {
        p.push(("ldap.group-auth-pattern", g.clone()));
    }
    properties(p)
}

/// Whether the directory's CA is given (by value or reference): then the JVM uses the
/// trust store the init container makes.
pub fn has_ldap_ca(ldap: &LdapAuthentication) -> bool {
    ldap.ca_pem.is_some() || ldap.ca_ref.is_some()
}

/// The `jvm.config` flags that make the JVM trust the directory's CA.
pub fn jvm_flags() -> Vec<String> {
    vec![
        format!("-Djavax.net.ssl.trustStore={TRUSTSTORE_DIR}/cacerts"),
        format!("-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}"),
    ]
}

/// The ConfigMap the CA comes from: the customer's (`ca_ref`) or `<cluster>-ldap-ca`.
pub fn ldap_ca_source(cluster: &str, ldap: &LdapAuthentication) -> Option<String> {
    match (&ldap.ca_ref, &ldap.ca_pem) {
        (Some(r), _) => Some(r.strip_prefix("k8s:").unwrap_or(r).to_owned()),
        (None, Some(_)) => Some(ldap_ca_configmap_name(cluster)),
        (None, None) => None,
    }
}

/// ConfigMap `<cluster>-ldap-ca` from a CA given by value.
pub fn ldap_ca_configmap(cluster: &str, ctx: &RenderContext, pem: &str) -> Value {
    config_map(
        &ldap_ca_configmap_name(cluster),
        Component::Access,
        cluster,
        ctx,
        &[(CA_KEY.to_owned(), pem.to_owned())].into(),
    )
}

/// The init container that builds the trust store: the image's `cacerts` plus the
/// directory's CA. The JDK's location is found from `java` on the path, so it does not
/// depend on how an image sets `JAVA_HOME`.
pub fn truststore_init_container(image: &str) -> Value {
    // keytool imports only the first certificate of a file: each one of the bundle is
    // split out and imported under its own alias.
    let script = format!(
        "set -e; jdk=$(dirname \"$(dirname \"$(readlink -f \"$(command -v java)\")\")\"); \
         cp \"$jdk/lib/security/cacerts\" {TRUSTSTORE_DIR}/cacerts; \
         chmod u+w {TRUSTSTORE_DIR}/cacerts; \
         awk '/BEGIN CERTIFICATE/{{n++}} n{{print > (\"{TRUSTSTORE_DIR}/ca-\" n \".pem\")}}' {LDAP_CA_DIR}/{CA_KEY}; \
         for f in {TRUSTSTORE_DIR}/ca-*.pem; do \
         keytool -importcert -noprompt -alias \"tether-ldap-$(basename \"$f\" .pem)\" -file \"$f\" \
         -keystore {TRUSTSTORE_DIR}/cacerts -storepass {TRUSTSTORE_PASSWORD}; rm -f \"$f\"; done"
    );
    json!({
        "name": "truststore",
        "image": image,
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": [
            {"name": "ldap-ca", "mountPath": LDAP_CA_DIR, "readOnly": true},
            {"name": "truststore", "mountPath": TRUSTSTORE_DIR},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
    })
}

/// Service `<cluster>-internal`: the coordinator's plain port.
pub fn internal_service(cluster: &str, ctx: &RenderContext) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&internal_service_name(cluster), Component::Coordinator, cluster, ctx),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(cluster, Component::Coordinator),
            "ports": [{"name": "http", "port": PRESTO_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

/// The label of the agent's own pods (deploy/kubernetes/tether-agent.yaml).
pub const AGENT_LABEL: (&str, &str) = ("app.kubernetes.io/name", "tether-agent");

/// NetworkPolicy `<cluster>-coordinator`: HTTPS from anywhere; the plain port, which trusts
/// `X-Presto-User`, only from the cluster's own pods, the agent's, and
/// `ctx.coordinator_http_cidrs`.
/// Kubernetes "Network Policies": a pod selected by an ingress policy admits only what
/// one of its rules allows.
pub fn network_policy(cluster: &str, ctx: &RenderContext) -> Value {
    // The agent itself when it runs in the namespace (`--coordinator-access dns`).
    let mut http_from = vec![
        json!({"podSelector": {"matchLabels": instance_selector(cluster)}}),
        json!({"podSelector": {"matchLabels": {AGENT_LABEL.0: AGENT_LABEL.1}}}),
    ];
    http_from.extend(
        ctx.coordinator_http_cidrs
            .iter()
            .map(|c| json!({"ipBlock": {"cidr": c}})),
    );
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(&network_policy_name(cluster), Component::Coordinator, cluster, ctx),
        "spec": {
            "podSelector": {"matchLabels": selector(cluster, Component::Coordinator)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": HTTPS_PORT}]},
                {"from": http_from, "ports": [{"protocol": "TCP", "port": PRESTO_PORT}]},
            ],
        },
    })
}

/// ConfigMap `tether-presto-ca`: the compute plane's CA certificate (`ca.crt`, for
/// clients) and each coordinator certificate issued from it (public; what renewal reads).
pub fn presto_ca_configmap(
    ctx: &RenderContext,
    data: &std::collections::BTreeMap<String, String>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": PRESTO_CA_NAME,
            "namespace": ctx.namespace,
            "labels": {
                super::labels::MANAGED_BY.0: super::labels::MANAGED_BY.1,
                super::labels::COMPONENT_LABEL: "presto-ca",
                super::labels::COMPUTE_PLANE_LABEL: ctx.compute_plane_id,
            },
        },
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ldap() -> LdapAuthentication {
        LdapAuthentication {
            url: "ldaps://dir.corp:636".into(),
            user_bind_pattern: "uid=${USER},ou=people,dc=corp".into(),
            ca_pem: None,
            ca_ref: None,
            user_base_dn: Some("ou=people,dc=corp".into()),
            group_auth_pattern: Some("(&(uid=${USER})(memberOf=cn=presto,dc=corp))".into()),
            bind_secret_ref: None,
        }
    }

    #[test]
    fn password_authenticator_names_presto_ldap_keys_and_keeps_the_user_placeholder() {
        let text = password_authenticator_properties(&ldap());
        assert!(
            text.contains("password-authenticator.name=ldap\n"),
            "{text}"
        );
        assert!(text.contains("ldap.url=ldaps://dir.corp:636\n"), "{text}");
        assert!(
            text.contains("ldap.user-bind-pattern=uid=${USER},ou=people,dc=corp\n"),
            "{text}"
        );
        assert!(text.contains("ldap.user-base-dn="), "{text}");
        assert!(text.contains("ldap.group-auth-pattern="), "{text}");
        let mut plain = ldap();
        plain.user_base_dn = None;
        plain.group_auth_pattern = None;
        let text = password_authenticator_properties(&plain);
        assert!(!text.contains("ldap.user-base-dn"), "{text}");
    }

    #[test]
    fn the_ca_source_prefers_the_reference() {
        let mut l = ldap();
        assert_eq!(ldap_ca_source("a", &l), None);
        l.ca_pem = Some("PEM".into());
        assert_eq!(ldap_ca_source("a", &l).as_deref(), Some("a-ldap-ca"));
        l.ca_pem = None;
        l.ca_ref = Some("k8s:corp-ca".into());
        assert_eq!(ldap_ca_source("a", &l).as_deref(), Some("corp-ca"));
    }

    #[test]
    fn certificate_names_cover_the_service_names() {
        assert_eq!(
            certificate_names("analytics", "tether"),
            [
                "analytics",
                "analytics.tether",
                "analytics.tether.svc",
                "analytics.tether.svc.cluster.local"
            ]
        );
    }
}
