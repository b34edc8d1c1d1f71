//! The catalog ConfigMap (`catalog/<name>.properties`) and the credentials that must stay
//! out of it.
//!
//! A catalog file is `connector.name` followed by the spec's properties, sorted. Secrets
//! are never written: a connector that needs a user and password gets
//! `connection-user=${ENV:CATALOG_<NAME>_USER}` and `connection-password=${ENV:…_PASSWORD}`,
//! and the Presto containers get those variables from a Kubernetes Secret (keys `username`
//! and `password`) through `secretKeyRef`, so the values exist only in the Secret and in
//! the JVM.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tether_shared::spec::{CatalogSpec, ClusterSpec, Connector, SecretRef};

use super::{METASTORE_PORT, config, metastore_enabled, metastore_name};

/// What the catalogs of one cluster need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogFiles {
    /// The catalog ConfigMap's data: `<catalog>.properties` → file text.
    pub data: BTreeMap<String, String>,
    /// Environment variables of the Presto containers (`EnvVar` objects, all
    /// `secretKeyRef`) for the attached catalogs, sorted by catalog.
    pub env: Vec<Value>,
}

/// The name of the default catalog the built-in metastore serves.
pub const DEFAULT_HIVE_CATALOG: &str = tether_shared::spec::DEFAULT_HIVE_CATALOG;

/// `thrift://<cluster>-hive-metastore:9083`: the built-in metastore's Service.
pub fn metastore_uri(cluster: &str) -> String {
    format!("thrift://{}:{METASTORE_PORT}", metastore_name(cluster))
}

/// `CATALOG_<NAME>` with the name upper-cased and `-` as `_`.
pub fn env_prefix(catalog: &str) -> String {
    let name: String = catalog
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' => c.to_ascii_uppercase(),
            _ => '_',
        })
        .collect();
    format!("CATALOG_{name}")
}

/// The Kubernetes Secret holding a catalog's `username` and `password`: the one named by
/// `k8s:NAME`, or for a Secrets Manager ARN `tether-catalog-<catalog>`, which the agent
/// keeps in sync. A reference that does not parse (validation refuses those) also points
/// at the synced name, so the pods wait for a Secret instead of running without one.
pub fn credentials_secret(catalog: &str, spec: &CatalogSpec) -> String {
    match spec.credentials.as_ref().map(|c| c.parse()) {
        Some(Ok(SecretRef::Kubernetes(name))) => name,
        _ => format!("tether-catalog-{catalog}"),
    }
}

/// The catalog files and credential variables of cluster `cluster`: every attached catalog
/// found in `catalogs`, plus the default `hive` catalog when the built-in metastore runs
/// and no attached catalog is named `hive`.
pub fn render(
    cluster: &str,
    spec: &ClusterSpec,
    catalogs: &BTreeMap<String, CatalogSpec>,
    ctx: &super::RenderContext,
) -> CatalogFiles {
    let metastore = metastore_enabled(spec).then(|| metastore_uri(cluster));
    let mut out = CatalogFiles::default();
    // A catalog whose credentials cannot be resolved is left out: a Presto pod referring to
    // a Secret that does not exist never starts, and the coordinator is the only one.
    let attached: BTreeSet<&String> = spec
        .catalogs
        .iter()
        .filter(|c| !ctx.withheld_catalogs.contains(*c))
        .collect();
    for name in attached {
        let Some(catalog) = catalogs.get(name) else {
            continue;
        };
        let mut props: BTreeMap<String, String> = catalog
            .properties
            .iter()
            .filter(|(k, _)| k.as_str() != "connector.name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // prestodb's S3 file system uses the node's instance profile unless told otherwise
        // (`HiveS3Config`: `hive.s3.use-instance-credentials` defaults to true); with the
        // install's Presto role it must take the pod's web identity (the default chain).
        if catalog.connector == Connector::Hive
            && ctx.presto_role_arn.is_some()
            && !props.contains_key("hive.s3.use-instance-credentials")
        {
            props.insert("hive.s3.use-instance-credentials".into(), "false".into());
        }
        if catalog.connector == Connector::Hive
            && let Some(uri) = &metastore
            && !props.contains_key("hive.metastore.uri")
            && props.get("hive.metastore").map(String::as_str) != Some("glue")
        {
            props.insert("hive.metastore.uri".into(), uri.clone());
        }
        if catalog.connector.needs_credentials() {
            let prefix = env_prefix(name);
            let secret = credentials_secret(name, catalog);
            props.insert("connection-user".into(), format!("${{ENV:{prefix}_USER}}"));
            props.insert(
                "connection-password".into(),
                format!("${{ENV:{prefix}_PASSWORD}}"),
            );
            out.env
                .push(secret_env(&format!("{prefix}_USER"), &secret, "username"));
            out.env.push(secret_env(
                &format!("{prefix}_PASSWORD"),
                &secret,
                "password",
            ));
        }
        out.data.insert(
            format!("{name}.properties"),
            file(catalog.connector, &props),
        );
    }
    let default_file = format!("{DEFAULT_HIVE_CATALOG}.properties");
    if let Some(uri) = metastore
        && !out.data.contains_key(&default_file)
    {
        let mut props = BTreeMap::from([("hive.metastore.uri".to_owned(), uri)]);
        if ctx.presto_role_arn.is_some() {
            props.insert("hive.s3.use-instance-credentials".into(), "false".into());
        }
        out.data.insert(default_file, file(Connector::Hive, &props));
    }
    out
}

/// `connector.name` first, then the properties in key order.
fn file(connector: Connector, props: &BTreeMap<String, String>) -> String {
    config::properties(
        std::iter::once(("connector.name", connector.presto_name()))
            .chain(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    )
}

fn secret_env(name: &str, secret: &str, key: &str) -> Value {
    json!({
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
    })
}
