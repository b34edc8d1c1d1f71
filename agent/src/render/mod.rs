//! The pure function from one cluster spec to the Kubernetes objects that run it.
//!
//! [`render_cluster`] takes a [`ClusterSpec`], the compute plane's catalogs and a
//! [`RenderContext`] and returns every object of the cluster as a JSON value ready for
//! server-side apply: full objects with `apiVersion`, `kind` and `metadata`, no status, no
//! nulls, nothing Kubernetes fills in itself. No I/O, no clock, no randomness: the same
//! input gives byte-identical output, so applying twice changes nothing and the hashes in
//! pod templates move only when what the pods run moves.
//!
//! Read in this order: [`labels`] (what marks an object as Tether's), [`config`] (Presto's
//! `.properties` and `jvm.config` text), [`catalog`] (catalog files and the credentials
//! that stay out of them), [`objects`] (ServiceAccount, ConfigMaps, Services, HPA, PDB),
//! [`workloads`] (the Deployments and their pod templates).
//!
//! What changes roll what:
//! - worker count: only the worker Deployment's `replicas` (nothing in any pod template);
//! - catalogs: the catalog ConfigMap and the worker pod template (`tether.io/catalog-hash`),
//!   so workers are replaced one at a time, each draining itself first; the coordinator is
//!   left running (see [`workloads`] for what that means);
//! - Presto version, resources, placement, drain grace: the pod templates they touch.

pub mod access;
pub mod catalog;
pub mod config;
pub mod labels;
pub mod objects;
pub mod tls;
pub mod workloads;

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tether_shared::spec::{CatalogSpec, ClusterSpec, Workers};

pub use labels::{
    CLUSTER_LABEL, MANAGED_BY, cluster_selector, managed_selector, worker_pod_selector,
};

/// Where and for whom objects are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// The namespace every object goes into.
    pub namespace: String,
    /// The compute plane the agent serves (a label on every object).
    pub compute_plane_id: String,
    /// The drain budget of a leaving worker (see `workloads::worker_termination_grace_seconds`).
    pub drain_grace_seconds: u32,
    /// The IAM role the Presto and metastore pods assume through their ServiceAccount
    /// (IRSA: the `eks.amazonaws.com/role-arn` annotation), when the install made one.
    pub presto_role_arn: Option<String>,
    /// Per catalog whose credentials come from Secrets Manager, the version of the secret
    /// in its Kubernetes Secret: part of the workers' catalog hash, so a rotation rolls
    /// them (Presto reads the credentials at start).
    pub secret_versions: BTreeMap<String, String>,
    /// The PostgreSQL database of the built-in metastore (the install's RDS instance),
    /// when there is one; else the metastore keeps its tables in an embedded Derby.
    pub metastore_db: Option<MetastoreDb>,
    /// Catalogs left out of every cluster until their credentials resolve.
    pub withheld_catalogs: std::collections::BTreeSet<String>,
    /// Who may query the compute plane's clusters and what they may read.
    pub presto_access: Option<tether_shared::spec::PrestoAccess>,
    /// Per cluster, the version of the coordinator certificate in its `<cluster>-tls`
    /// Secret (when the access needs HTTPS): part of the coordinator's pod-template hash,
    /// since Presto reads the keystore only at start.
    pub tls_versions: BTreeMap<String, String>,
    /// CIDRs besides the cluster's own pods that may reach a password-protected
    /// coordinator's plain HTTP port (the API server's service proxy, for the agent).
    pub coordinator_http_cidrs: Vec<String>,
}

impl RenderContext {
    /// A context for `namespace` and compute plane `compute_plane_id` with nothing else
    /// set: no IRSA role, secrets, metastore database, withheld catalogs or access rules.
    pub fn new(namespace: &str, compute_plane_id: &str, drain_grace_seconds: u32) -> Self {
        Self {
            namespace: namespace.to_owned(),
            compute_plane_id: compute_plane_id.to_owned(),
            drain_grace_seconds,
            presto_role_arn: None,
            secret_versions: BTreeMap::new(),
            metastore_db: None,
            withheld_catalogs: Default::default(),
            presto_access: None,
            tls_versions: BTreeMap::new(),
            coordinator_http_cidrs: Vec::new(),
        }
    }
}

/// Where the built-in metastore keeps its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetastoreDb {
    /// `host:port` of the PostgreSQL server.
    pub endpoint: String,
    /// The version of its credentials in [`METASTORE_DB_SECRET`] (a rotation restarts the
    /// metastore).
    pub version: String,
}

/// The Secret (keys `username`, `password`) the agent writes from the database's
/// Secrets Manager secret.
pub const METASTORE_DB_SECRET: &str = "tether-metastore-db";
/// The database the metastores of every cluster share (one catalog of tables).
pub const METASTORE_DB_NAME: &str = "metastore";

/// The objects of one cluster, in apply order (ServiceAccount, ConfigMaps, Services,
/// metastore, coordinator Deployment, worker Deployment, HPA, PDB).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Full objects for server-side apply.
    pub objects: Vec<Value>,
    /// Hash of the worker pod template; also the worker Deployment's
    /// `tether.io/worker-template-hash` annotation. When it differs from the live
    /// Deployment's, applying will replace the workers.
    pub worker_template_hash: String,
}

/// Port of Presto's HTTP server, on coordinator and workers (`http-server.http.port`).
pub const PRESTO_PORT: u16 = 8080;

/// Thrift port of the built-in Hive metastore.
pub const METASTORE_PORT: u16 = 9083;

/// The kinds Tether creates, as (apiVersion, kind, plural, namespaced), in apply order;
/// pruning lists these by [`managed_selector`] and deletes what is no longer rendered.
pub const MANAGED_KINDS: &[(&str, &str, &str, bool)] = &[
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Service", "services", true),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("apps/v1", "Deployment", "deployments", true),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
];

/// The coordinator's Deployment and ConfigMap: `<cluster>-coordinator`.
pub fn coordinator_name(cluster: &str) -> String {
    format!("{cluster}-coordinator")
}

/// The workers' Deployment, ConfigMap, HPA and PDB: `<cluster>-worker`.
pub fn worker_name(cluster: &str) -> String {
    format!("{cluster}-worker")
}

/// The coordinator's Service (port 8080, named `http`): `<cluster>`.
pub fn service_name(cluster: &str) -> String {
    cluster.to_owned()
}

/// The ServiceAccount of the cluster's pods: `tether-presto-<cluster>`. The install's
/// Presto role trusts exactly the service accounts named so (`tether-presto-*` in the
/// namespace), and no other pod of the namespace.
pub fn presto_service_account(cluster: &str) -> String {
    format!("tether-presto-{cluster}")
}

/// The ConfigMap holding `catalog/*.properties`: `<cluster>-catalog`.
pub fn catalog_configmap_name(cluster: &str) -> String {
    format!("{cluster}-catalog")
}

/// The built-in Hive metastore's Deployment and Service: `<cluster>-hive-metastore`.
pub fn metastore_name(cluster: &str) -> String {
    format!("{cluster}-hive-metastore")
}

/// Renders every object of cluster `name`. `catalogs` is the compute plane's whole set;
/// only those the spec attaches are used (names it attaches but `catalogs` lacks are
/// skipped — the desired state was validated before, so that does not happen).
pub fn render_cluster(
    name: &str,
    spec: &ClusterSpec,
    catalogs: &BTreeMap<String, CatalogSpec>,
    ctx: &RenderContext,
) -> Rendered {
    let mut catalog_files = catalog::render(name, spec, catalogs, ctx);
    let attached: Vec<String> = catalog_files
        .data
        .keys()
        .filter_map(|k| k.strip_suffix(".properties").map(str::to_owned))
        .collect();
    let access = access::render(ctx.presto_access.as_ref(), &attached);
    let mut coordinator_config = config::node_config(config::Role::Coordinator, name, spec, ctx);
    let worker_config = config::node_config(config::Role::Worker, name, spec, ctx);
    let mut coordinator_inputs = coordinator_config.clone();
    if let Some(a) = &access {
        coordinator_config.extend(a.coordinator_files.clone());
        for (catalog, extra) in &a.catalog_properties {
            if let Some(text) = catalog_files.data.get_mut(&format!("{catalog}.properties")) {
                text.push_str(&config::properties(extra.iter().map(|(k, v)| (k, v))));
            }
        }
        coordinator_inputs = coordinator_config.clone();
        coordinator_inputs.insert("access/start-hash".into(), a.start_hash.clone());
    }
    let ldap = tls::ldap(ctx);
    if ldap.is_some() {
        coordinator_inputs.insert(
            "tls/version".into(),
            ctx.tls_versions.get(name).cloned().unwrap_or_default(),
        );
    }

    let mut objects = vec![
        objects::service_account(name, ctx),
        objects::config_map(
            &coordinator_name(name),
            labels::Component::Coordinator,
            name,
            ctx,
            &coordinator_config,
        ),
        objects::config_map(
            &worker_name(name),
            labels::Component::Worker,
            name,
            ctx,
            &worker_config,
        ),
        objects::config_map(
            &catalog_configmap_name(name),
            labels::Component::Catalog,
            name,
            ctx,
            &catalog_files.data,
        ),
        objects::coordinator_service(name, ctx),
    ];
    if let Some(l) = ldap {
        objects.push(tls::internal_service(name, ctx));
        objects.push(tls::network_policy(name, ctx));
        if let (None, Some(pem)) = (&l.ca_ref, &l.ca_pem) {
            objects.insert(4, tls::ldap_ca_configmap(name, ctx, pem));
        }
    }
    if let Some(a) = &access {
        objects.insert(
            4,
            objects::config_map(
                &access::access_configmap_name(name),
                labels::Component::Access,
                name,
                ctx,
                &a.rules,
            ),
        );
    }
    if metastore_enabled(spec) {
        let config = workloads::metastore_config();
        objects.push(objects::config_map(
            &metastore_name(name),
            labels::Component::Metastore,
            name,
            ctx,
            &config,
        ));
        objects.push(objects::metastore_service(name, ctx));
        objects.push(workloads::metastore_deployment(
            name,
            spec,
            ctx,
            &data_hash(&config),
        ));
    }
    let pods = workloads::PrestoPods {
        cluster: name,
        spec,
        ctx,
        catalog_env: &catalog_files.env,
        access: access.as_ref(),
    };
    let mut catalog_inputs = catalog_files.data.clone();
    for c in &spec.catalogs {
        if let Some(v) = ctx.secret_versions.get(c) {
            catalog_inputs.insert(format!("secret-version/{c}"), v.clone());
        }
    }
    objects.push(
        pods.coordinator_deployment(&data_hash(&coordinator_inputs), &data_hash(&catalog_inputs)),
    );
    let (worker, worker_template_hash) =
        pods.worker_deployment(&data_hash(&worker_config), &data_hash(&catalog_inputs));
    objects.push(worker);
    if let Workers::Autoscaling {
        min,
        max,
        target_cpu_percent,
    } = spec.workers
    {
        objects.push(objects::worker_hpa(name, ctx, min, max, target_cpu_percent));
    }
    objects.push(objects::worker_pdb(name, ctx));
    Rendered {
        objects,
        worker_template_hash,
    }
}

/// The image of Presto `version` (every Presto container and init container runs it).
pub fn presto_image(version: &str) -> String {
    format!("prestodb/presto:{version}")
}

/// Every image the pods of a cluster run (what `allowed_image_registries` checks).
pub fn cluster_images(spec: &ClusterSpec) -> Vec<String> {
    let mut images = vec![presto_image(&spec.presto_version)];
    if metastore_enabled(spec) {
        images.push(workloads::METASTORE_IMAGE.to_owned());
    }
    images
}

/// Whether the cluster runs its built-in Hive metastore.
pub(crate) fn metastore_enabled(spec: &ClusterSpec) -> bool {
    spec.hive_metastore.as_ref().is_some_and(|h| h.enabled)
}

/// A short, stable hash: the first 16 hex digits of SHA-256. JSON objects serialize with
/// sorted keys (serde_json's map is a `BTreeMap`; with `preserve_order` it would be
/// insertion order, which is fixed by this code), so equal inputs hash equally.
pub(crate) fn short_hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(16);
    hex
}

/// [`short_hash`] of a ConfigMap's data.
fn data_hash(data: &BTreeMap<String, String>) -> String {
    short_hash(&Value::from(
        data.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<serde_json::Map<_, _>>(),
    ))
}

#[cfg(test)]
mod tests;
