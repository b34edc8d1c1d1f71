//! The cluster's objects other than Deployments: ServiceAccount, ConfigMaps, Services,
//! HorizontalPodAutoscaler, PodDisruptionBudget; and the metadata every object shares.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::labels::{Component, labels, selector};
use super::{
    METASTORE_PORT, PRESTO_PORT, RenderContext, metastore_name, presto_service_account,
    service_name, worker_name,
};

/// `metadata` of an object: name, namespace, labels.
pub fn metadata(name: &str, component: Component, cluster: &str, ctx: &RenderContext) -> Value {
    json!({
        "name": name,
        "namespace": ctx.namespace,
        "labels": labels(cluster, component, ctx),
    })
}

/// ServiceAccount `tether-presto-<cluster>`, the identity of the cluster's pods. With an
/// install's Presto role it carries `eks.amazonaws.com/role-arn`: EKS then gives the pods a
/// web-identity token for that role (IRSA), which the AWS SDK in Presto and the metastore
/// picks up through its default credential chain — the data lake and Glue, never the
/// agent's role.
pub fn service_account(cluster: &str, ctx: &RenderContext) -> Value {
    let mut meta = metadata(
        &presto_service_account(cluster),
        Component::Cluster,
        cluster,
        ctx,
    );
    if let Some(arn) = &ctx.presto_role_arn {
        meta["annotations"] = json!({ IRSA_ROLE_ANNOTATION: arn });
    }
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta,
    })
}

/// The ServiceAccount annotation naming the IAM role its pods assume (EKS IRSA).
pub const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The annotation of a synced Secret recording the Secrets Manager version it holds.
pub const SECRET_VERSION_ANNOTATION: &str = "tether.io/secret-version";

/// Secret `tether-metastore-db`: the metastore database's credentials, and the
/// `hive-site.xml` that connects the metastore to it (JDO over JDBC, TLS required), which
/// the metastore pods mount beside their `core-site.xml`.
pub fn metastore_db_secret(
    ctx: &RenderContext,
    endpoint: &str,
    username: &str,
    password: &str,
    version: &str,
) -> Value {
    use base64::Engine as _;
    let xml = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;")
    };
    let property = |k: &str, v: &str| {
        format!(
            "  <property>\n    <name>{k}</name>\n    <value>{}</value>\n  </property>\n",
            xml(v)
        )
    };
    let site = format!(
        "<?xml version=\"1.0\"?>\n<configuration>\n{}{}{}{}</configuration>\n",
        property(
            "javax.jdo.option.ConnectionDriverName",
            "org.postgresql.Driver"
        ),
        property(
            "javax.jdo.option.ConnectionURL",
            &format!(
                "jdbc:postgresql://{endpoint}/{}?sslmode=require",
                super::METASTORE_DB_NAME
            )
        ),
        property("javax.jdo.option.ConnectionUserName", username),
        property("javax.jdo.option.ConnectionPassword", password),
    );
    let mut s = catalog_secret(super::METASTORE_DB_SECRET, ctx, username, password, version);
    s["data"]["hive-site.xml"] =
        json!(base64::engine::general_purpose::STANDARD.encode(site.as_bytes()));
    s
}

/// Secret `tether-catalog-<catalog>`: a catalog's `username` and `password` as the agent
/// read them from Secrets Manager, labelled as Tether's; the agent deletes it by name once
/// no attached catalog needs it.
pub fn catalog_secret(
    name: &str,
    ctx: &RenderContext,
    username: &str,
    password: &str,
    version: &str,
) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ctx.namespace,
            "labels": {
                super::labels::MANAGED_BY.0: super::labels::MANAGED_BY.1,
                super::labels::COMPONENT_LABEL: Component::Catalog.as_str(),
                super::labels::COMPUTE_PLANE_LABEL: ctx.compute_plane_id,
            },
            "annotations": {SECRET_VERSION_ANNOTATION: version},
        },
        "type": "Opaque",
        "data": {"username": b64(username), "password": b64(password)},
    })
}

/// A ConfigMap with `data`.
pub fn config_map(
    name: &str,
    component: Component,
    cluster: &str,
    ctx: &RenderContext,
    data: &BTreeMap<String, String>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, component, cluster, ctx),
        "data": data,
    })
}

/// Service `<cluster>`: the coordinator's HTTP port, for clients and for discovery.
/// With password authentication, only the HTTPS port ([`super::tls`]).
pub fn coordinator_service(cluster: &str, ctx: &RenderContext) -> Value {
    let (port_name, port) = match super::tls::ldap(ctx) {
        Some(_) => ("https", super::tls::HTTPS_PORT),
        None => ("http", PRESTO_PORT),
    };
    cluster_ip_service(
        &service_name(cluster),
        Component::Coordinator,
        cluster,
        ctx,
        port_name,
        port,
    )
}

/// Service `<cluster>-hive-metastore`: the built-in metastore's Thrift port.
pub fn metastore_service(cluster: &str, ctx: &RenderContext) -> Value {
    cluster_ip_service(
        &metastore_name(cluster),
        Component::Metastore,
        cluster,
        ctx,
        "thrift",
        METASTORE_PORT,
    )
}

fn cluster_ip_service(
    name: &str,
    component: Component,
    cluster: &str,
    ctx: &RenderContext,
    port_name: &str,
    port: u16,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, component, cluster, ctx),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(cluster, component),
            "ports": [{
                "name": port_name,
                "port": port,
                "targetPort": port_name,
                "protocol": "TCP",
            }],
        },
    })
}

/// HorizontalPodAutoscaler `<cluster>-worker` between `min` and `max` on average CPU.
pub fn worker_hpa(
    cluster: &str,
    ctx: &RenderContext,
    min: u32,
    max: u32,
    target_cpu_percent: u32,
) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(&worker_name(cluster), Component::Worker, cluster, ctx),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": worker_name(cluster),
            },
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": target_cpu_percent},
                },
            }],
        },
    })
}

/// PodDisruptionBudget `<cluster>-worker`: voluntary evictions (node drains) take one
/// worker at a time, like rollouts.
pub fn worker_pdb(cluster: &str, ctx: &RenderContext) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(&worker_name(cluster), Component::Worker, cluster, ctx),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(cluster, Component::Worker)},
        },
    })
}
