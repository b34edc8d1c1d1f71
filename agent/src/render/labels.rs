//! The labels on every object Tether manages, and the selectors built from them.
//!
//! Every object and pod carries the recommended `app.kubernetes.io/*` labels plus
//! `tether.io/cluster` and `tether.io/compute-plane`. Workload selectors use managed-by,
//! instance and component only: selectors are immutable, so they hold nothing that could
//! ever change, and managed-by keeps them from matching pods of another tool that happens
//! to use the same instance name in a shared namespace.

use serde_json::{Map, Value};

use super::RenderContext;

/// Marks an object as Tether's; pruning only ever considers objects with this label.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tether");
/// The Tether cluster an object belongs to.
pub const CLUSTER_LABEL: &str = "tether.io/cluster";
/// The compute plane whose agent applied the object.
pub const COMPUTE_PLANE_LABEL: &str = "tether.io/compute-plane";
/// `app.kubernetes.io/name`: always `presto`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the cluster name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: see [`Component`].
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// The part of a cluster an object belongs to (`app.kubernetes.io/component`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Shared by all of the cluster's pods (the ServiceAccount).
    Cluster,
    /// The coordinator: its ConfigMap, Service and Deployment.
    Coordinator,
    /// The workers: ConfigMap, Deployment, HPA, PDB.
    Worker,
    /// The catalog ConfigMap.
    Catalog,
    /// The built-in Hive metastore.
    Metastore,
    /// The access rules ConfigMap.
    Access,
}

impl Component {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Cluster => "cluster",
            Component::Coordinator => "coordinator",
            Component::Worker => "worker",
            Component::Catalog => "catalog",
            Component::Metastore => "metastore",
            Component::Access => "access",
        }
    }
}

/// All labels of an object (and of its pods) of `component` in `cluster`.
pub fn labels(cluster: &str, component: Component, ctx: &RenderContext) -> Value {
    let mut m = selector_map(cluster, component);
    m.insert(NAME_LABEL.into(), "presto".into());
    m.insert(CLUSTER_LABEL.into(), cluster.into());
    m.insert(
        COMPUTE_PLANE_LABEL.into(),
        ctx.compute_plane_id.as_str().into(),
    );
    Value::Object(m)
}

/// The `matchLabels` selecting the pods of `component` in `cluster`.
pub fn selector(cluster: &str, component: Component) -> Value {
    Value::Object(selector_map(cluster, component))
}

/// The `matchLabels` selecting every pod of `cluster`, whatever its component.
pub fn instance_selector(cluster: &str) -> Value {
    let mut m = Map::new();
    m.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    m.insert(INSTANCE_LABEL.into(), cluster.into());
    Value::Object(m)
}

fn selector_map(cluster: &str, component: Component) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    m.insert(INSTANCE_LABEL.into(), cluster.into());
    m.insert(COMPONENT_LABEL.into(), component.as_str().into());
    m
}

/// Label selector for everything Tether manages: `app.kubernetes.io/managed-by=tether`.
pub fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Label selector for everything Tether manages of one cluster.
pub fn cluster_selector(cluster: &str) -> String {
    format!("{},{CLUSTER_LABEL}={cluster}", managed_selector())
}

/// Label selector for the worker pods of one cluster (the worker Deployment's selector).
pub fn worker_pod_selector(cluster: &str) -> String {
    format!(
        "{},{INSTANCE_LABEL}={cluster},{COMPONENT_LABEL}={}",
        managed_selector(),
        Component::Worker.as_str()
    )
}
