//! A compute plane with a Kubernetes stand-in: the control plane and agent binaries as
//! processes, the stand-in in the test process, and helpers to drive clusters and
//! catalogs through the API.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    AgentOptions, AgentProc, Api, ControlPlaneOptions, ControlPlaneProc, TenantFixture, eventually,
};
use crate::standins::kube::{KubeOptions, KubeStandIn, ObjectKey};

/// Namespace the test agents use.
pub const NAMESPACE: &str = "tether";

/// Flags that make the agent's reconciler quick for tests.
pub const FAST_AGENT: [&str; 10] = [
    "--resync-interval",
    "2s",
    "--drain-grace",
    "1s",
    "--namespace",
    NAMESPACE,
    "--coordinator-access",
    "api-proxy",
    "--scrape-interval",
    "1s",
];

/// The agent's production intervals (its defaults), with the tests' namespace and
/// coordinator access: what an idle agent costs in the field.
pub const PRODUCTION_AGENT: [&str; 8] = [
    "--resync-interval",
    "30s",
    "--namespace",
    NAMESPACE,
    "--coordinator-access",
    "api-proxy",
    "--scrape-interval",
    "15s",
];

/// One tenant's compute plane with an agent reconciling into a Kubernetes stand-in.
#[derive(Debug)]
pub struct PrestoEnv {
    /// The stand-in.
    pub kube: KubeStandIn,
    /// The control plane.
    pub cp: ControlPlaneProc,
    /// Tenant and compute plane.
    pub fx: TenantFixture,
    /// The agent.
    pub agent: Option<AgentProc>,
    /// The agent's state dir.
    pub agent_dir: PathBuf,
    /// The kubeconfig the agent uses.
    pub kubeconfig: PathBuf,
    _tmp: tempfile::TempDir,
}

impl PrestoEnv {
    /// Starts everything and waits for the agent to connect.
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let kube = KubeStandIn::start(KubeOptions::default())
            .await
            .expect("kube stand-in");
        let kubeconfig = tmp.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        // The Secret [`mysql_catalog`] refers to, as an operator creates it first.
        kube.create_secret(
            NAMESPACE,
            "orders-db-credentials",
            &[("username", "app"), ("password", "hunter2")],
        );
        let cp = ControlPlaneProc::start(ControlPlaneOptions {
            data_dir: Some(tmp.path().join("cp")),
            ..ControlPlaneOptions::default()
        })
        .await;
        let api = cp.api();
        let fx = TenantFixture::create(&api, "acme").await;
        let mut env = Self {
            kube,
            cp,
            fx,
            agent: None,
            agent_dir: tmp.path().join("agent"),
            kubeconfig,
            _tmp: tmp,
        };
        let token = env.fx.enrollment_token(&api, 600).await;
        env.start_agent(Some(token));
        env.fx.connected(&api, 10).await;
        env
    }

    /// (Re)starts the agent.
    pub fn start_agent(&mut self, token: Option<String>) {
        self.start_agent_with(token, &FAST_AGENT);
    }

    /// (Re)starts the agent with `args` instead of [`FAST_AGENT`].
    pub fn start_agent_with(&mut self, token: Option<String>, args: &[&str]) {
        self.agent = None;
        let opts = AgentOptions::for_control_plane(&self.cp, self.agent_dir.clone(), token)
            .with_args(args)
            .with_args(&["--kubeconfig", &self.kubeconfig.display().to_string()]);
        self.agent = Some(AgentProc::start(opts));
    }

    /// (Re)starts the agent with `args` and environment `env` beside the defaults.
    pub fn start_agent_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        self.agent = None;
        let mut opts = AgentOptions::for_control_plane(&self.cp, self.agent_dir.clone(), None)
            .with_args(args)
            .with_args(&["--kubeconfig", &self.kubeconfig.display().to_string()]);
        opts.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.agent = Some(AgentProc::start(opts));
    }

    /// A directory that lives as long as the environment.
    pub fn dir(&self) -> &std::path::Path {
        self._tmp.path()
    }

    /// The API as the tenant's admin.
    pub fn api(&self) -> Api {
        self.cp.api().as_token(&self.fx.admin_token)
    }

    /// `PUT .../catalogs/{name}`, must succeed.
    pub async fn put_catalog(&self, name: &str, spec: Value) -> Value {
        self.put(
            &format!("/compute-planes/{}/catalogs/{name}", self.fx.cp_id),
            spec,
        )
        .await
    }

    /// `PUT .../clusters/{name}`, must succeed.
    pub async fn put_cluster(&self, name: &str, spec: Value) -> Value {
        self.put(
            &format!("/compute-planes/{}/clusters/{name}", self.fx.cp_id),
            spec,
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.api().put(path, &body).await;
        assert!(s.is_success(), "PUT {path}: {s} {v}");
        v
    }

    /// `GET .../clusters/{name}`.
    pub async fn cluster(&self, name: &str) -> Value {
        self.api()
            .ok_get(&format!(
                "/compute-planes/{}/clusters/{name}",
                self.fx.cp_id
            ))
            .await
    }

    /// Waits until the cluster is Running at the current generation with `workers` ready.
    pub async fn running(&self, name: &str, workers: u64, secs: u64) -> Value {
        eventually(
            Duration::from_secs(secs),
            &format!("cluster {name} Running with {workers} workers"),
            || async {
                let c = self.cluster(name).await;
                let ok = c["status"]["phase"] == "Running"
                    && c["observed_generation"] == c["generation"]
                    && c["status"]["ready_workers"].as_u64() == Some(workers);
                ok.then_some(c)
            },
        )
        .await
    }

    /// Key of a namespaced object in the stand-in.
    pub fn key(api_version: &str, plural: &str, name: &str) -> ObjectKey {
        ObjectKey::new(api_version, plural, Some(NAMESPACE), name)
    }

    /// The stand-in's copy of an object.
    pub fn object(&self, api_version: &str, plural: &str, name: &str) -> Option<Value> {
        self.kube.object(&Self::key(api_version, plural, name))
    }

    /// The agent's persisted desired state (see [`super::read_persisted_desired_state`]).
    pub fn persisted_desired_state(&self) -> Value {
        super::read_persisted_desired_state(&self.agent_dir).unwrap_or(Value::Null)
    }
}

/// A hive catalog on AWS Glue.
pub fn glue_catalog() -> Value {
    json!({"connector": "hive", "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "us-east-1"}})
}

/// A MySQL catalog whose credentials are in a Kubernetes Secret.
pub fn mysql_catalog() -> Value {
    json!({"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://orders-db:3306"},
           "credentials": {"secret_ref": "k8s:orders-db-credentials"}})
}

/// A cluster spec with `workers` fixed workers and `catalogs`.
pub fn cluster_spec(workers: u32, catalogs: &[&str]) -> Value {
    json!({"presto_version": "0.293", "workers": {"count": workers}, "catalogs": catalogs,
           "coordinator": {"cpu": "2", "memory": "8Gi"}, "worker": {"cpu": "4", "memory": "16Gi"}})
}

/// A running cluster `analytics` (2 workers, catalog `lake`) whose coordinator is a Presto
/// stand-in, reached through the Kubernetes stand-in's service proxy.
pub async fn env_with_presto(
    opts: crate::standins::presto::PrestoOptions,
) -> (PrestoEnv, crate::standins::presto::PrestoStandIn) {
    let env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(2, &["lake"]))
        .await;
    env.running("analytics", 2, 15).await;
    let presto = crate::standins::presto::PrestoStandIn::start(opts)
        .await
        .expect("presto stand-in");
    env.kube
        .register_service_backend(NAMESPACE, "analytics", presto.addr());
    (env, presto)
}

/// One sample of a Prometheus text endpoint.
pub async fn prom(url: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|v| v as u64)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
