//! The Deployments: coordinator, workers, and the built-in Hive metastore.
//!
//! Pod templates carry hashes of what the pods read at start, so a change rolls exactly
//! the pods that must restart to see it:
//! - coordinator and workers: `tether.io/config-hash` of their own ConfigMap and
//!   `tether.io/catalog-hash` of the catalog ConfigMap (with the versions of synced
//!   credentials).
//!
//! Presto reads catalog files only at start, and the coordinator plans with its own
//! catalogs (a catalog it did not load does not exist for queries), so a catalog change
//! restarts the coordinator too. prestodb refuses `SHUTTING_DOWN` on a coordinator
//! (`GracefulShutdownHandler`: "Cannot shutdown coordinator"), so its `preStop` hook waits
//! itself until no query is running or queued (`/v1/cluster`), bounded by its
//! `terminationGracePeriodSeconds` (the drain budget and a margin); the workers roll one
//! at a time, each draining itself.

use serde_json::{Map, Value, json};
use tether_shared::spec::{ClusterSpec, Resources, Toleration, Workers};

use super::config::{DATA_DIR, ETC_DIR, HEAP_DUMP_DIR, NODE_CONFIG_KEYS, heap_dump_size_limit};
use super::labels::{Component, INSTANCE_LABEL, MANAGED_BY, labels, selector};
use super::objects::metadata;
use super::{
    METASTORE_PORT, PRESTO_PORT, RenderContext, catalog_configmap_name, coordinator_name,
    metastore_name, presto_service_account, short_hash, worker_name,
};

/// Pod template annotation: hash of the node's ConfigMap data.
pub const CONFIG_HASH: &str = "tether.io/config-hash";
/// Pod template annotation (workers): hash of the catalog ConfigMap data.
pub const CATALOG_HASH: &str = "tether.io/catalog-hash";
/// Worker Deployment annotation: [`super::Rendered::worker_template_hash`].
pub const WORKER_TEMPLATE_HASH: &str = "tether.io/worker-template-hash";

/// Image of the built-in metastore.
pub const METASTORE_IMAGE: &str = "apache/hive:4.0.0";
/// Where the metastore's own Hadoop configuration is mounted; the image's entrypoint links
/// the files of `HIVE_CUSTOM_CONF_DIR` into its configuration directory and makes it
/// `HADOOP_CONF_DIR`.
const METASTORE_CONF_DIR: &str = "/opt/hive/custom-conf";

/// The data of ConfigMap `<cluster>-hive-metastore`: `core-site.xml` telling Hadoop's S3A
/// client (the warehouse on S3) to use the pod's web identity — the Presto role through
/// the service account (IRSA) — before the node's instance profile. S3A's default chain has
/// no web-identity provider, so without this the metastore would use the node's role.
pub fn metastore_config() -> std::collections::BTreeMap<String, String> {
    let core_site = "<?xml version=\"1.0\"?>\n<configuration>\n  <property>\n    \
        <name>fs.s3a.aws.credentials.provider</name>\n    \
        <value>com.amazonaws.auth.WebIdentityTokenCredentialsProvider,\
        org.apache.hadoop.fs.s3a.auth.IAMInstanceCredentialsProvider</value>\n  \
        </property>\n</configuration>\n";
    std::collections::BTreeMap::from([("core-site.xml".to_owned(), core_site.to_owned())])
}

/// Seconds beyond Presto's own shutdown before the kubelet kills a worker: up to 30 s for
/// the lifecycle stop `GracefulShutdownHandler` runs before `System.exit`, and 10 s more.
const KILL_MARGIN_SECONDS: u32 = 40;

/// Seconds beyond the drain budget before the kubelet kills a coordinator still waiting.
const COORDINATOR_MARGIN_SECONDS: u32 = 10;

/// The coordinator's `preStop`: wait while `/v1/query` lists a query that has not ended —
/// queued, planning, starting, running (blocked on a slow client included) or finishing;
/// its JSON is compact (`"state":"RUNNING"`). A coordinator that does not answer ends the
/// wait. SIGTERM follows when it returns.
fn query_drain_hook() -> Value {
    let script = format!(
        "while curl -s http://localhost:{PRESTO_PORT}/v1/query \
         | grep -Eq '\"state\":\"(QUEUED|WAITING_FOR_PREREQUISITES|WAITING_FOR_RESOURCES|DISPATCHING|PLANNING|STARTING|RUNNING|FINISHING)\"'; \
         do sleep 2; done"
    );
    json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", script]}}})
}

/// `terminationGracePeriodSeconds` of a worker: Presto's shutdown takes the grace period,
/// then as long as the running tasks need (the drain budget), then the grace period again,
/// then its lifecycle stop (`GracefulShutdownHandler`); the kubelet must not kill it
/// before that.
pub fn worker_termination_grace_seconds(drain_grace_seconds: u32) -> u32 {
    let grace = super::config::shutdown_grace_seconds(drain_grace_seconds);
    drain_grace_seconds
        .saturating_add(grace.saturating_mul(2))
        .saturating_add(KILL_MARGIN_SECONDS)
}

/// What the coordinator and worker pods are rendered from.
pub struct PrestoPods<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    /// Its spec.
    pub spec: &'a ClusterSpec,
    /// Namespace and compute plane.
    pub ctx: &'a RenderContext,
    /// Catalog credential variables (`secretKeyRef`s) of the attached catalogs.
    pub catalog_env: &'a [Value],
    /// The cluster's access control, if the compute plane has any.
    pub access: Option<&'a super::access::AccessFiles>,
}

impl PrestoPods<'_> {
    /// Deployment `<cluster>-coordinator`: one replica, `Recreate` (two coordinators
    /// would split the cluster), draining its queries before it stops.
    pub fn coordinator_deployment(&self, config_hash: &str, catalog_hash: &str) -> Value {
        let name = coordinator_name(self.cluster);
        let annotations = json!({ CONFIG_HASH: config_hash, CATALOG_HASH: catalog_hash });
        let extra: Vec<&str> = self
            .access
            .map(|a| a.coordinator_files.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut pod = self.pod_spec(&self.spec.coordinator, &name, self.catalog_env, &extra);
        pod.insert(
            "terminationGracePeriodSeconds".into(),
            json!(
                self.ctx
                    .drain_grace_seconds
                    .saturating_add(COORDINATOR_MARGIN_SECONDS)
            ),
        );
        if let Some(Value::Object(container)) = pod.get_mut("containers").and_then(|c| c.get_mut(0))
        {
            container.insert("lifecycle".into(), query_drain_hook());
        }
        if let Some(ldap) = super::tls::ldap(self.ctx) {
            self.https(&mut pod, ldap);
        }
        let template = self.template(Component::Coordinator, annotations, pod);
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(&name, Component::Coordinator, self.cluster, self.ctx),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector(self.cluster, Component::Coordinator)},
                "strategy": {"type": "Recreate"},
                "template": template,
            },
        })
    }

    /// Deployment `<cluster>-worker` and the hash of its pod template. With autoscaling
    /// `replicas` is left out: the HPA owns it, and applying a number would fight it.
    pub fn worker_deployment(&self, config_hash: &str, catalog_hash: &str) -> (Value, String) {
        let name = worker_name(self.cluster);
        let annotations = json!({ CONFIG_HASH: config_hash, CATALOG_HASH: catalog_hash });
        let mut pod = self.pod_spec(&self.spec.worker, &name, self.catalog_env, &[]);
        pod.insert(
            "terminationGracePeriodSeconds".into(),
            json!(worker_termination_grace_seconds(
                self.ctx.drain_grace_seconds
            )),
        );
        if let Some(Value::Object(container)) = pod.get_mut("containers").and_then(|c| c.get_mut(0))
        {
            container.insert("lifecycle".into(), self.drain_hook());
        }
        let template = self.template(Component::Worker, annotations, pod);
        let hash = short_hash(&template);
        let mut meta = metadata(&name, Component::Worker, self.cluster, self.ctx);
        meta["annotations"] = json!({ WORKER_TEMPLATE_HASH: hash });
        let mut spec = json!({
            "selector": {"matchLabels": selector(self.cluster, Component::Worker)},
            // One worker at a time, the new one Ready before an old one drains: the
            // cluster never has fewer workers than asked for during a roll.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": template,
        });
        if let Workers::Fixed { count } = self.spec.workers {
            spec["replicas"] = json!(count);
        }
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": spec,
        });
        (deployment, hash)
    }

    /// HTTPS on the coordinator ([`super::tls`]): the TLS Secret mounted, the HTTPS port,
    /// and with a directory CA the init container that builds the JVM's trust store.
    fn https(&self, pod: &mut Map<String, Value>, ldap: &tether_shared::spec::LdapAuthentication) {
        use super::tls;
        let mut volumes = vec![json!({"name": "tls", "secret": {
            "secretName": tls::tls_secret_name(self.cluster),
            "items": [{"key": tls::KEYSTORE_KEY, "path": tls::KEYSTORE_KEY}]}})];
        let mut mounts =
            vec![json!({"name": "tls", "mountPath": tls::tls_dir(), "readOnly": true})];
        if let Some(ca) = tls::ldap_ca_source(self.cluster, ldap) {
            volumes.push(json!({"name": "ldap-ca", "configMap": {
                "name": ca, "items": [{"key": tls::CA_KEY, "path": tls::CA_KEY}]}}));
            volumes.push(json!({"name": "truststore", "emptyDir": {"sizeLimit": "16Mi"}}));
            mounts.push(
                json!({"name": "truststore", "mountPath": tls::TRUSTSTORE_DIR, "readOnly": true}),
            );
            pod.insert(
                "initContainers".into(),
                json!([tls::truststore_init_container(&super::presto_image(
                    &self.spec.presto_version
                ))]),
            );
        }
        if let Some(Value::Array(v)) = pod.get_mut("volumes") {
            v.extend(volumes);
        }
        if let Some(Value::Object(container)) = pod.get_mut("containers").and_then(|c| c.get_mut(0))
        {
            if let Some(Value::Array(m)) = container.get_mut("volumeMounts") {
                m.extend(mounts);
            }
            if let Some(Value::Array(ports)) = container.get_mut("ports") {
                ports.push(
                    json!({"name": "https", "containerPort": tls::HTTPS_PORT, "protocol": "TCP"}),
                );
            }
        }
    }

    /// The worker drains itself before it stops: it tells Presto it is shutting down (the
    /// coordinator stops giving it work; running tasks go on), then waits until Presto has
    /// finished them and exited (`GracefulShutdownHandler` ends the process). The kubelet
    /// sends SIGTERM only when the hook returns, and kills the container at
    /// `terminationGracePeriodSeconds`, which bounds the wait.
    fn drain_hook(&self) -> Value {
        let script = format!(
            "curl -sf -X PUT -H 'Content-Type: application/json' -d '\"SHUTTING_DOWN\"' \
             http://localhost:{PRESTO_PORT}/v1/info/state || exit 0; \
             while curl -s -o /dev/null http://localhost:{PRESTO_PORT}/v1/info/state; do sleep 2; done"
        );
        json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", script]}}})
    }

    fn template(
        &self,
        component: Component,
        mut annotations: Value,
        pod: Map<String, Value>,
    ) -> Value {
        annotations[DO_NOT_DISRUPT] = json!("true");
        json!({
            "metadata": {
                "labels": labels(self.cluster, component, self.ctx),
                "annotations": annotations,
            },
            "spec": pod,
        })
    }

    /// The pod spec shared by coordinator and workers; `config_map` holds the node's
    /// `etc` files, [`NODE_CONFIG_KEYS`] and `extra_keys`.
    fn pod_spec(
        &self,
        resources: &Resources,
        config_map: &str,
        env: &[Value],
        extra_keys: &[&str],
    ) -> Map<String, Value> {
        let items: Vec<Value> = NODE_CONFIG_KEYS
            .iter()
            .chain(extra_keys)
            .map(|k| json!({"key": k, "path": k}))
            .collect();
        let mut container = json!({
            "name": "presto",
            "image": super::presto_image(&self.spec.presto_version),
            "ports": [{"name": "http", "containerPort": PRESTO_PORT, "protocol": "TCP"}],
            "resources": requests_and_limits(resources),
            "volumeMounts": [
                {"name": "config", "mountPath": ETC_DIR},
                {"name": "catalog", "mountPath": format!("{ETC_DIR}/catalog")},
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "heapdump", "mountPath": HEAP_DUMP_DIR},
            ],
            // `/v1/info` answers once the HTTP server is up; `/v1/status` is what the
            // Helm chart probes for liveness.
            "readinessProbe": {
                "httpGet": {"path": "/v1/info", "port": "http"},
                "initialDelaySeconds": 10,
                "periodSeconds": 5,
                "timeoutSeconds": 2,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "httpGet": {"path": "/v1/status", "port": "http"},
                "initialDelaySeconds": 60,
                "periodSeconds": 10,
                "timeoutSeconds": 5,
                "failureThreshold": 6,
            },
        });
        if !env.is_empty() {
            container["env"] = Value::Array(env.to_vec());
        }
        let mut pod = Map::new();
        pod.insert(
            "serviceAccountName".into(),
            json!(presto_service_account(self.cluster)),
        );
        placement(self.cluster, self.spec, &mut pod);
        let mut volumes = vec![
            json!({"name": "config", "configMap": {"name": config_map, "items": items}}),
            json!({"name": "catalog", "configMap": {"name": catalog_configmap_name(self.cluster)}}),
            json!({"name": "data", "emptyDir": {}}),
            json!({"name": "heapdump", "emptyDir": {"sizeLimit": heap_dump_size_limit(resources)}}),
        ];
        if self.access.is_some() {
            // A directory mount, so the kubelet updates the rules in place.
            volumes.push(json!({"name": "access", "configMap": {
                "name": super::access::access_configmap_name(self.cluster)}}));
            if let Some(Value::Array(mounts)) = container.get_mut("volumeMounts") {
                mounts.push(json!({"name": "access", "mountPath": super::access::access_dir(), "readOnly": true}));
            }
        }
        pod.insert("containers".into(), json!([container]));
        pod.insert("volumes".into(), Value::Array(volumes));
        pod
    }
}

/// Deployment `<cluster>-hive-metastore`: the `apache/hive` image as a standalone
/// metastore, the warehouse at the spec's S3 location (as `s3a://`, the scheme Hadoop
/// knows). With the install's PostgreSQL (`ctx.metastore_db`) the tables live there — every
/// cluster's metastore in the one `metastore` database, so they share one catalog of
/// tables — and survive any pod; without it, in the image's embedded Derby, which a restart
/// of the pod empties (the sandbox, a first look).
pub fn metastore_deployment(
    cluster: &str,
    spec: &ClusterSpec,
    ctx: &RenderContext,
    config_hash: &str,
) -> Value {
    let name = metastore_name(cluster);
    let warehouse = spec
        .hive_metastore
        .as_ref()
        .map(|h| match h.warehouse.strip_prefix("s3://") {
            Some(rest) => format!("s3a://{rest}"),
            None => h.warehouse.clone(),
        })
        .unwrap_or_default();
    let mut env = vec![
        json!({"name": "SERVICE_NAME", "value": "metastore"}),
        json!({"name": "HADOOP_OPTIONAL_TOOLS", "value": "hadoop-aws"}),
        json!({"name": "HIVE_CUSTOM_CONF_DIR", "value": METASTORE_CONF_DIR}),
    ];
    let mut opts = Vec::new();
    if !warehouse.is_empty() {
        opts.push(format!("-Dhive.metastore.warehouse.dir={warehouse}"));
    }
    let mut annotations = json!({ CONFIG_HASH: config_hash, DO_NOT_DISRUPT: "true" });
    let mut init = Vec::new();
    let mut mounts = vec![json!({"name": "config", "mountPath": METASTORE_CONF_DIR})];
    let mut volumes =
        vec![json!({"name": "config", "configMap": {"name": metastore_name(cluster)}})];
    if let Some(db) = &ctx.metastore_db {
        // PostgreSQL: DB_DRIVER for the image's schematool, and the JDO connection (with
        // the password) in a `hive-site.xml` the agent writes into the Secret — mounted
        // beside core-site.xml, never on the command line or in the environment, which the
        // image's entrypoint traces (`set -x`) into the pod's log.
        env.push(json!({"name": "DB_DRIVER", "value": "postgres"}));
        env.push(json!({"name": "SCHEMA_COMMAND", "value": "initOrUpgradeSchema"}));
        volumes[0] = json!({"name": "config", "projected": {"sources": [
            {"configMap": {"name": metastore_name(cluster)}},
            {"secret": {"name": super::METASTORE_DB_SECRET,
                        "items": [{"key": "hive-site.xml", "path": "hive-site.xml"}]}},
        ]}});
        annotations["tether.io/metastore-db-version"] = json!(db.version);
        // The image has no PostgreSQL JDBC driver; Presto's image (already on the nodes for
        // the cluster) carries one in its PostgreSQL connector: copied in at start.
        init.push(json!({
            "name": "jdbc-driver",
            "image": super::presto_image(&spec.presto_version),
            "command": ["/bin/sh", "-c",
                "cp \"$(ls /opt/presto-server/plugin/postgresql/postgresql-*.jar | head -n 1)\" /jdbc/postgresql.jar"],
            "volumeMounts": [{"name": "jdbc", "mountPath": "/jdbc"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
        }));
        volumes.push(json!({"name": "jdbc", "emptyDir": {"sizeLimit": "16Mi"}}));
        mounts.push(json!({"name": "jdbc", "mountPath": "/opt/hive/lib/postgresql.jar", "subPath": "postgresql.jar"}));
    }
    if !opts.is_empty() {
        env.push(json!({"name": "SERVICE_OPTS", "value": opts.join(" ")}));
    }
    let mut pod = Map::new();
    pod.insert(
        "serviceAccountName".into(),
        json!(presto_service_account(cluster)),
    );
    placement(cluster, spec, &mut pod);
    pod.insert("volumes".into(), Value::Array(volumes));
    if !init.is_empty() {
        pod.insert("initContainers".into(), Value::Array(init));
    }
    pod.insert(
        "containers".into(),
        json!([{
            "name": "metastore",
            "image": METASTORE_IMAGE,
            "env": env,
            "ports": [{"name": "thrift", "containerPort": METASTORE_PORT, "protocol": "TCP"}],
            "volumeMounts": mounts,
            "resources": {
                "requests": {"cpu": "500m", "memory": "2Gi"},
                "limits": {"memory": "2Gi"},
            },
            "readinessProbe": {
                "tcpSocket": {"port": "thrift"},
                "initialDelaySeconds": 10,
                "periodSeconds": 5,
            },
        }]),
    );
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(&name, Component::Metastore, cluster, ctx),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(cluster, Component::Metastore)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": labels(cluster, Component::Metastore, ctx),
                    "annotations": annotations,
                },
                "spec": pod,
            },
        },
    })
}

/// Requests equal to limits: Presto sizes its heap from the limit, and a guaranteed pod
/// is the last to be evicted.
fn requests_and_limits(r: &Resources) -> Value {
    let both = json!({"cpu": r.cpu, "memory": r.memory});
    json!({"requests": both, "limits": both})
}

/// Pod annotation that keeps EKS Auto Mode's Karpenter from consolidating (or replacing
/// for drift) a node while a Presto pod runs on it: a consolidation would evict running
/// queries. Expiry (14 days) and interruption still replace the node, through the pod's
/// own preStop drain (Karpenter docs, concepts/disruption.md).
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";

/// Where a pod may run: every cluster on nodes of its own — no pod of another Tether
/// cluster on the same node (a required pod anti-affinity, which Auto Mode's Karpenter
/// honours when it launches nodes, and which the scheduler also applies in reverse to
/// the pods already running) — and `nodeSelector` and `tolerations` from the spec, each
/// only when set (e.g. `eks.amazonaws.com/instance-family: r6i`).
fn placement(cluster: &str, spec: &ClusterSpec, pod: &mut Map<String, Value>) {
    pod.insert(
        "affinity".into(),
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchExpressions": [
                {"key": MANAGED_BY.0, "operator": "In", "values": [MANAGED_BY.1]},
                {"key": INSTANCE_LABEL, "operator": "Exists"},
                {"key": INSTANCE_LABEL, "operator": "NotIn", "values": [cluster]},
            ]},
            "topologyKey": "kubernetes.io/hostname",
        }]}}),
    );
    if !spec.node_selector.is_empty() {
        pod.insert("nodeSelector".into(), json!(spec.node_selector));
    }
    if !spec.tolerations.is_empty() {
        let t: Vec<Value> = spec.tolerations.iter().map(toleration).collect();
        pod.insert("tolerations".into(), Value::Array(t));
    }
}

/// A toleration without the fields left empty (an empty key with `Exists` tolerates
/// every taint; an empty effect matches every effect). `Exists` takes no value; the API
/// server would refuse one.
fn toleration(t: &Toleration) -> Value {
    let value = if t.operator == "Exists" {
        ""
    } else {
        t.value.as_str()
    };
    let mut m = Map::new();
    for (k, v) in [
        ("key", t.key.as_str()),
        ("operator", t.operator.as_str()),
        ("value", value),
        ("effect", t.effect.as_str()),
    ] {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}
