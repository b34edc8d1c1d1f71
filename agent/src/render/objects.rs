//! The cluster's objects other than Deployments: ServiceAccount, ConfigMaps, Services,
//! HorizontalPodAutoscaler, PodDisruptionBudget; and the metadata every object shares.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::labels::{Component, labels, selector};
use super::{
    METASTORE_PORT, PRESTO_PORT, RenderContext, metastore_name, service_name, worker_name,
};

/// `metadata` of an object: name, namespace, labels.
pub fn metadata(name: &str, component: Component, cluster: &str, ctx: &RenderContext) -> Value {
    json!({
        "name": name,
        "namespace": ctx.namespace,
        "labels": labels(cluster, component, ctx),
    })
}

/// ServiceAccount `<cluster>`, the identity of the cluster's pods (S3 access through an
/// IAM role is bound to it).
pub fn service_account(cluster: &str, ctx: &RenderContext) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(&service_name(cluster), Component::Cluster, cluster, ctx),
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
pub fn coordinator_service(cluster: &str, ctx: &RenderContext) -> Value {
    cluster_ip_service(
        &service_name(cluster),
        Component::Coordinator,
        cluster,
        ctx,
        "http",
        PRESTO_PORT,
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
