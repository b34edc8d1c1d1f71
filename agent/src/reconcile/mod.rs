//! The reconciler: turns the desired state into Kubernetes objects and keeps them there.
//!
//! Shape (kube-rs controller style): one idempotent [`Reconciler::reconcile_once`] that
//! renders every cluster with the pure [`crate::render`] functions and server-side applies
//! the result; an error policy that logs, reports the reason upstream and retries with
//! backoff; triggers from desired-state changes, drift watches on the objects Tether owns,
//! and a periodic resync. Nothing is deleted except what the *persisted desired state*
//! no longer contains — losing the control plane never deletes anything.

pub mod kube_ops;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tether_proto::v1 as pb;
use tether_shared::spec::{ClusterSpec, Workers};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::desired::Desired;
use crate::render::{
    self, RenderContext, Rendered, coordinator_name, render_cluster, service_name, worker_name,
};
use crate::report::Report;
use crate::retry::{Retry, RetryPolicy};
use kube_ops::{Kube, KubeError, ObjectId, deployment_replicas, object_id};

/// Tunables of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace all clusters live in.
    pub namespace: String,
    /// The compute plane (a label on everything, so two agents never prune each other).
    pub compute_plane_id: String,
    /// Full resync period.
    pub resync: Duration,
    /// Drain budget of a leaving worker (rendered into its pod template; never waited for).
    pub drain_grace: Duration,
    /// How clients reach a cluster's coordinator, reported as `status.endpoint`.
    pub endpoint: EndpointTemplate,
    /// IAM role of the Presto pods (IRSA), annotated on their ServiceAccounts.
    pub presto_role_arn: Option<String>,
    /// How catalog credentials in Secrets Manager are read.
    pub secrets: crate::secrets::SecretsSettings,
    /// The install's PostgreSQL for the built-in metastore: `host:port` and the ARN of its
    /// Secrets Manager secret (RDS-managed, rotated).
    pub metastore_db: Option<(String, String)>,
    /// Coordinator certificates of password-protected clusters.
    pub presto_tls: PrestoTlsSettings,
}

/// How the agent serves password-protected coordinators over HTTPS ([`crate::presto_tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrestoTlsSettings {
    /// Lifetime of an issued coordinator certificate.
    pub validity: Duration,
    /// CIDRs besides the cluster's pods admitted to the coordinator's plain HTTP port.
    pub coordinator_http_cidrs: Vec<String>,
}

impl Default for PrestoTlsSettings {
    fn default() -> Self {
        Self {
            validity: crate::presto_tls::DEFAULT_VALIDITY,
            coordinator_http_cidrs: Vec::new(),
        }
    }
}

/// A Secret's data, decoded (keys whose value is not base64 are left out).
fn secret_data(s: &kube::api::DynamicObject) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine as _;
    s.data["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str()?)
                        .ok()?;
                    Some((k.clone(), b))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The coordinator URL reported for a cluster, e.g. the default
/// `http://{service}.{namespace}.svc.cluster.local:{port}`, or an ingress such as
/// `https://presto-{cluster}.data.example.com`. Placeholders: `{cluster}`, `{service}`,
/// `{namespace}`, `{port}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointTemplate(String);

impl EndpointTemplate {
    /// The in-cluster Service DNS name.
    pub const DEFAULT: &'static str = "http://{service}.{namespace}.svc.cluster.local:{port}";

    /// Checks the template: an http(s) URL whose only placeholders are the known ones.
    pub fn parse(template: &str) -> Result<Self, String> {
        if !(template.starts_with("http://") || template.starts_with("https://")) {
            return Err(format!(
                "endpoint template {template:?} must start with http:// or https://"
            ));
        }
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("endpoint template {template:?} has an unclosed '{{'"))?;
            let name = &after[..close];
            if !["cluster", "service", "namespace", "port"].contains(&name) {
                return Err(format!(
                    "endpoint template {template:?}: unknown placeholder {{{name}}} (known: {{cluster}}, {{service}}, {{namespace}}, {{port}})"
                ));
            }
            rest = &after[close + 1..];
        }
        Ok(Self(template.to_owned()))
    }

    /// The URL of `cluster`'s coordinator. With `https` (password authentication, when
    /// the client Service offers only HTTPS) the default becomes `https://` on the HTTPS
    /// port, and `{port}` is that port.
    pub fn render(&self, cluster: &str, namespace: &str, https: bool) -> String {
        let (template, port) = match https {
            true if self.0 == Self::DEFAULT => (
                Self::DEFAULT.replacen("http://", "https://", 1),
                render::tls::HTTPS_PORT,
            ),
            // A custom template names its own host; with HTTPS only, its scheme is https.
            true => (
                match self.0.strip_prefix("http://") {
                    Some(rest) => format!("https://{rest}"),
                    None => self.0.clone(),
                },
                render::tls::HTTPS_PORT,
            ),
            false => (self.0.clone(), render::PRESTO_PORT),
        };
        template
            .replace("{cluster}", cluster)
            .replace("{service}", &service_name(cluster))
            .replace("{namespace}", namespace)
            .replace("{port}", &port.to_string())
    }
}

impl Default for EndpointTemplate {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

/// Annotation carrying the rendered worker pod template hash.
pub const WORKER_HASH_ANNOTATION: &str = "tether.io/worker-template-hash";
/// The key of the metastore database's problem among the credential problems (not a
/// catalog name: those cannot contain spaces).
const METASTORE_PROBLEM: &str = "metastore database";

/// The field manager that holds the worker count between Tether and the HPA.
pub const HANDOVER_MANAGER: &str = "tether-handover-to-hpa";
/// While clusters are not yet Running, status is re-read this often.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Drift events are gathered this long before one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The reconciler of one compute plane.
#[derive(Debug)]
pub struct Reconciler {
    kube: Kube,
    settings: Settings,
    desired: watch::Receiver<Desired>,
    report: watch::Sender<Report>,
    /// Whether each cluster's coordinator answered the collector.
    reach: watch::Receiver<crate::collect::Reachability>,
    /// Whether each attached catalog's endpoints answered ([`crate::reach`]).
    catalog_reach: watch::Receiver<crate::reach::CatalogReach>,
    /// Per cluster, the generation last applied without error.
    observed: BTreeMap<String, i64>,
    /// Per cluster, the error of its last apply.
    errors: BTreeMap<String, String>,
    /// Conditions of the last apply pass.
    conditions: Vec<pb::ClusterCondition>,
    /// Generation whose apply pass (with pruning) completed.
    applied_generation: i64,
    /// Catalog credentials read from Secrets Manager.
    secrets: crate::secrets::CatalogSecrets,
    /// Per catalog, the version of its secret now in the Kubernetes Secret.
    secret_versions: BTreeMap<String, String>,
    /// The synced Secrets this process wrote, deleted by name once no catalog needs them.
    synced_secrets: BTreeSet<String>,
    /// The version of the metastore database's credentials in its Secret.
    metastore_db_version: Option<String>,
    /// Catalogs left out of the clusters until their credentials resolve.
    withheld_catalogs: BTreeSet<String>,
    /// What the customer's guardrails refused, reported with every apply.
    guardrails: Option<watch::Receiver<Vec<pb::ClusterCondition>>>,
    /// Per password-protected cluster, the version of its coordinator certificate.
    tls_versions: BTreeMap<String, String>,
    /// The `<cluster>-tls` Secrets this process wrote, deleted by name when not needed.
    tls_secrets: BTreeSet<String>,
}

fn condition(
    cluster: &str,
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> pb::ClusterCondition {
    pb::ClusterCondition {
        cluster: cluster.to_owned(),
        r#type: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.chars().take(512).collect(),
        last_transition_unix_ms: tether_shared::timestamps::now_unix_ms(),
    }
}

impl Reconciler {
    /// A reconciler following `desired` and publishing to `report`.
    pub fn new(
        kube: Kube,
        settings: Settings,
        desired: watch::Receiver<Desired>,
        report: watch::Sender<Report>,
        (reach, catalog_reach): (
            watch::Receiver<crate::collect::Reachability>,
            watch::Receiver<crate::reach::CatalogReach>,
        ),
    ) -> Self {
        let secrets = crate::secrets::CatalogSecrets::new(settings.secrets.clone());
        Self {
            kube,
            settings,
            desired,
            report,
            reach,
            catalog_reach,
            observed: BTreeMap::new(),
            errors: BTreeMap::new(),
            conditions: Vec::new(),
            applied_generation: 0,
            secrets,
            secret_versions: BTreeMap::new(),
            synced_secrets: BTreeSet::new(),
            metastore_db_version: None,
            withheld_catalogs: BTreeSet::new(),
            guardrails: None,
            tls_versions: BTreeMap::new(),
            tls_secrets: BTreeSet::new(),
        }
    }

    /// Reports the guardrails' refusals (`GuardrailRefused`) with every apply; `desired`
    /// is then the guarded, effective state.
    pub fn with_guardrails(mut self, refusals: watch::Receiver<Vec<pb::ClusterCondition>>) -> Self {
        self.guardrails = Some(refusals);
        self
    }

    fn selector(&self) -> String {
        format!(
            "{},{}={}",
            render::managed_selector(),
            render::labels::COMPUTE_PLANE_LABEL,
            self.settings.compute_plane_id
        )
    }

    fn context(&self) -> RenderContext {
        RenderContext {
            namespace: self.settings.namespace.clone(),
            compute_plane_id: self.settings.compute_plane_id.clone(),
            drain_grace_seconds: self.settings.drain_grace.as_secs() as u32,
            presto_role_arn: self.settings.presto_role_arn.clone(),
            secret_versions: self.secret_versions.clone(),
            metastore_db: self.settings.metastore_db.as_ref().map(|(endpoint, _)| {
                render::MetastoreDb {
                    endpoint: endpoint.clone(),
                    version: self.metastore_db_version.clone().unwrap_or_default(),
                }
            }),
            withheld_catalogs: self.withheld_catalogs.clone(),
            presto_access: self
                .desired
                .borrow()
                .as_ref()
                .and_then(|d| d.presto_access.clone()),
            tls_versions: self.tls_versions.clone(),
            coordinator_http_cidrs: self.settings.presto_tls.coordinator_http_cidrs.clone(),
        }
    }

    /// Runs until `stop` fires.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (kick_tx, mut kick_rx) = mpsc::channel::<()>(1);
        let watchers = self.spawn_drift_watchers(kick_tx);
        let mut resync = tokio::time::interval(self.settings.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = Retry::new(RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        });
        // `due`: next full apply; `poll`: next status-only look while not converged.
        let mut due: Option<Instant> = Some(Instant::now());
        let mut poll: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut reach_open = true;
        let mut catalog_reach_open = true;
        loop {
            let apply_at = due.unwrap_or_else(far);
            let poll_at = poll.unwrap_or_else(far);
            tokio::select! {
                _ = stop.changed() => break,
                r = self.desired.changed() => {
                    if r.is_err() { break; }
                    due = Some(Instant::now());
                }
                Some(()) = kick_rx.recv() => {
                    let soon = Instant::now() + DEBOUNCE;
                    due = Some(due.map_or(soon, |d| d.min(soon)));
                }
                _ = resync.tick() => due = Some(Instant::now()),
                r = self.catalog_reach.changed(), if catalog_reach_open => {
                    if r.is_err() {
                        catalog_reach_open = false;
                        continue;
                    }
                    let converged = self.observe_all().await;
                    poll = (!converged).then(|| Instant::now() + STATUS_POLL);
                }
                r = self.reach.changed(), if reach_open => {
                    if r.is_err() {
                        reach_open = false;
                        continue;
                    }
                    let converged = self.observe_all().await;
                    poll = (!converged).then(|| Instant::now() + STATUS_POLL);
                }
                () = tokio::time::sleep_until(apply_at), if due.is_some() => {
                    let began = std::time::Instant::now();
                    let applied = self.apply_all().await;
                    let m = &*crate::metrics::METRICS;
                    m.reconcile_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    m.reconcile_micros_total.fetch_add(began.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = &applied {
                        m.reconcile_error(e.reason());
                    }
                    due = match applied {
                        Ok(()) => {
                            retry.reset();
                            None
                        }
                        Err(e) => {
                            let delay = retry.next_delay();
                            tracing::warn!(reason = e.reason(), retry_in_ms = delay.as_millis() as u64, "reconcile failed: {e}");
                            Some(Instant::now() + delay)
                        }
                    };
                    let converged = self.observe_all().await;
                    poll = (!converged).then(|| Instant::now() + STATUS_POLL);
                }
                () = tokio::time::sleep_until(poll_at), if poll.is_some() => {
                    let converged = self.observe_all().await;
                    poll = (!converged).then(|| Instant::now() + STATUS_POLL);
                }
            }
        }
        for w in watchers {
            w.abort();
        }
    }

    /// Watches what Tether owns; any change outside our own no-op applies is drift.
    fn spawn_drift_watchers(&self, kick: mpsc::Sender<()>) -> Vec<tokio::task::JoinHandle<()>> {
        let kinds = [
            ("apps/v1", "Deployment", "deployments"),
            ("v1", "Service", "services"),
            ("v1", "ConfigMap", "configmaps"),
        ];
        kinds
            .iter()
            .map(|(av, kind, plural)| {
                let (group, version) = av.split_once('/').unwrap_or(("", av));
                let ar = ApiResource {
                    group: group.into(),
                    version: version.into(),
                    api_version: (*av).into(),
                    kind: (*kind).into(),
                    plural: (*plural).into(),
                };
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.kube.client().clone(), self.kube.namespace(), &ar);
                let config = watcher::Config::default().labels(&self.selector());
                let kick = kick.clone();
                tokio::spawn(async move {
                    let mut events = watcher(api, config).default_backoff().boxed();
                    while let Some(ev) = events.next().await {
                        match ev {
                            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                                let _ = kick.try_send(());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(error = %e, "drift watch interrupted; retrying")
                            }
                        }
                    }
                })
            })
            .collect()
    }

    /// Applies the whole desired state once and prunes what it no longer contains. A
    /// cluster that fails to apply does not stop the others; the first error is returned
    /// (for backoff) after every cluster was tried.
    pub async fn apply_all(&mut self) -> Result<(), KubeError> {
        let Some(desired) = self.desired.borrow().clone() else {
            // Nothing was ever received: touch nothing.
            return Ok(());
        };
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.settings.namespace, "labels": {"app.kubernetes.io/managed-by": "tether"}},
        });
        // Created only when missing: a namespaced Role (or a namespace-scoped EKS access
        // entry) grants nothing on namespaces, so the agent may not even read it — then it
        // must exist already, and applying the cluster says so if it does not.
        let name = self.settings.namespace.clone();
        match self.kube.get("v1", "Namespace", &name).await {
            Ok(Some(_)) => {}
            Ok(None) => self.kube.apply(&ns).await?,
            Err(KubeError::Call {
                source: kube::Error::Api(ref status),
                ..
            }) if status.code == 403 => {}
            Err(e) => return Err(e),
        }
        let mut keep: BTreeSet<ObjectId> = BTreeSet::new();
        let credentials = self.sync_catalog_secrets(&desired).await?;
        let (tls_problems, ca_configmap) = self.sync_presto_tls(&desired).await?;
        keep.extend(ca_configmap);
        let ctx = self.context();
        let mut conditions = Vec::new();
        let mut first_err: Option<KubeError> = None;
        for (name, spec) in &desired.clusters {
            let rendered = render_cluster(name, spec, &desired.catalogs, &ctx);
            keep.extend(rendered.objects.iter().map(object_id));
            let problems: Vec<String> = spec
                .catalogs
                .iter()
                .filter_map(|c| credentials.get(c).map(|u| (c, u)))
                .map(|(c, u)| format!("catalog {c}: {}", u.message))
                .collect();
            if spec.hive_metastore.as_ref().is_some_and(|h| h.enabled)
                && let Some(u) = credentials.get(METASTORE_PROBLEM)
            {
                conditions.push(condition(
                    name,
                    "MetastoreDatabase",
                    false,
                    u.reason,
                    &format!("the metastore database's credentials: {}", u.message),
                ));
            }
            if let Some(problem) = tls_problems.get(name) {
                conditions.push(condition(
                    name,
                    "CoordinatorCertificate",
                    false,
                    "CertificateUnavailable",
                    &problem.0,
                ));
            }
            if let Some(reason) = spec
                .catalogs
                .iter()
                .find_map(|c| credentials.get(c).map(|u| u.reason))
            {
                conditions.push(condition(
                    name,
                    "CatalogCredentials",
                    false,
                    reason,
                    &problems.join("; "),
                ));
            }
            match self.apply_cluster(name, &rendered).await {
                Ok(()) => {
                    conditions.push(condition(name, "Applied", true, "Applied", ""));
                    self.observed.insert(name.clone(), desired.generation);
                    self.errors.remove(name);
                }
                Err(e) => {
                    conditions.push(condition(
                        name,
                        "Applied",
                        false,
                        e.reason(),
                        &e.to_string(),
                    ));
                    self.errors.insert(name.clone(), e.to_string());
                    first_err.get_or_insert(e);
                }
            }
        }
        self.observed
            .retain(|name, _| desired.clusters.contains_key(name));
        self.errors
            .retain(|name, _| desired.clusters.contains_key(name));
        let pruned = self.kube.prune(&self.selector(), &keep).await?;
        // A removed cluster's certificate goes with its coordinator.
        for (_, kind, name) in &pruned {
            if kind == "Deployment"
                && let Some(cluster) = name.strip_suffix("-coordinator")
            {
                self.kube
                    .delete("v1", "Secret", &render::tls::tls_secret_name(cluster))
                    .await?;
            }
        }
        if !pruned.is_empty() {
            tracing::info!(objects = pruned.len(), "pruned objects no longer desired");
        }
        if let Some(g) = &self.guardrails {
            conditions.extend(g.borrow().iter().cloned());
        }
        // The generation was processed: every cluster tried (failures are in the
        // conditions) and everything no longer desired deleted.
        keep_transition_times(&mut conditions, &self.conditions);
        self.conditions = conditions;
        self.applied_generation = desired.generation;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads every desired cluster's state and publishes the report. Returns whether every
    /// cluster is Running.
    pub async fn observe_all(&mut self) -> bool {
        let Some(desired) = self.desired.borrow().clone() else {
            return true;
        };
        let mut statuses = Vec::new();
        for (name, spec) in &desired.clusters {
            let observed = self.observed.get(name).copied().unwrap_or(0);
            let error = self.errors.get(name).cloned();
            statuses.push(self.observe(name, spec, observed, error).await);
        }
        if let Some(g) = &self.guardrails {
            let refusals = g.borrow();
            for st in &mut statuses {
                st.conditions
                    .extend(refusals.iter().filter(|c| c.cluster == st.name).cloned());
            }
        }
        let previous = self.report.borrow().clusters.clone();
        for st in &mut statuses {
            if let Some(old) = previous.iter().find(|o| o.name == st.name) {
                keep_transition_times(&mut st.conditions, &old.conditions);
            }
        }
        let converged = statuses.iter().all(|s| {
            s.phase == "Running"
                && s.conditions
                    .iter()
                    .all(|c| c.r#type != "WorkersRolledOut" || c.status == "True")
        });
        let report = Report {
            applied_generation: self.applied_generation,
            conditions: self.conditions.clone(),
            clusters: statuses,
        };
        self.report.send_if_modified(|r| {
            let changed = *r != report;
            if changed {
                *r = report;
            }
            changed
        });
        converged
    }

    /// Applies one cluster's objects in order. A change that replaces the worker pods (a
    /// new pod template) is rolled by the Deployment one worker at a time, each draining
    /// itself in its `preStop` hook: nothing here waits for it.
    async fn apply_cluster(&self, cluster: &str, rendered: &Rendered) -> Result<(), KubeError> {
        let worker = worker_name(cluster);
        for obj in &rendered.objects {
            let (api_version, kind, name) = object_id(obj);
            if kind == "Deployment" && name == worker {
                let live = self.kube.get(&api_version, &kind, &name).await?;
                let live_hash = live
                    .as_ref()
                    .and_then(|d| d.metadata.annotations.as_ref())
                    .and_then(|a| a.get(WORKER_HASH_ANNOTATION).cloned());
                if live_hash.is_some_and(|h| h != rendered.worker_template_hash) {
                    // Kubernetes rolls them one at a time; each drains itself first.
                    tracing::info!(cluster, "worker pod template changed: rolling the workers");
                }
                if obj["spec"].get("replicas").is_none()
                    && let Some(live) = &live
                {
                    self.hand_replicas_to_hpa(live).await?;
                }
            }
            self.kube.apply(obj).await?;
        }
        Ok(())
    }

    /// Resolves the credentials of every catalog a cluster attaches ([`crate::secrets`]):
    /// writes `tether-catalog-<name>` from Secrets Manager, checks a `k8s:` Secret exists.
    /// Returns what could not be resolved, by catalog. A secret that cannot be read now
    /// keeps its last Kubernetes Secret (and version), so running pods are not disturbed.
    /// Synced Secrets are deleted by name when no attached catalog needs them any more
    /// (those of an earlier agent process that no catalog needs stay: the agent never
    /// lists Secrets).
    async fn sync_catalog_secrets(
        &mut self,
        desired: &tether_shared::spec::DesiredState,
    ) -> Result<BTreeMap<String, crate::secrets::Unresolved>, KubeError> {
        use crate::secrets::Unresolved;
        use tether_shared::spec::SecretRef;
        let attached: BTreeSet<&String> = desired
            .clusters
            .values()
            .flat_map(|c| &c.catalogs)
            .collect();
        let mut problems = BTreeMap::new();
        let mut arns = BTreeSet::new();
        let mut versions = BTreeMap::new();
        let mut wanted = BTreeSet::new();
        let mut withheld = BTreeSet::new();
        for name in attached {
            let Some(catalog) = desired.catalogs.get(name) else {
                continue;
            };
            if !catalog.connector.needs_credentials() {
                continue;
            }
            let Some(Ok(reference)) = catalog.credentials.as_ref().map(|c| c.parse()) else {
                continue;
            };
            match reference {
                SecretRef::Kubernetes(secret) => {
                    // Only where the agent may read Secrets (the EKS access policy); the
                    // manifest install grants no `get` on Secrets, and then the pods'
                    // status is where a missing one shows.
                    let found = match self.kube.get("v1", "Secret", &secret).await {
                        Ok(found) => found.is_some(),
                        Err(KubeError::Call {
                            source: kube::Error::Api(ref s),
                            ..
                        }) if s.code == 403 => true,
                        Err(e) => return Err(e),
                    };
                    if !found {
                        withheld.insert(name.clone());
                        problems.insert(
                            name.clone(),
                            Unresolved {
                                reason: "SecretMissing",
                                message: format!(
                                    "Kubernetes Secret {secret} (keys username and password) does not exist in namespace {}; the catalog is left out until it does",
                                    self.settings.namespace
                                ),
                            },
                        );
                    }
                }
                SecretRef::SecretsManager(arn) => {
                    arns.insert(arn.clone());
                    let secret = render::catalog::credentials_secret(name, catalog);
                    wanted.insert(secret.clone());
                    let user = catalog
                        .properties
                        .get("connection-user")
                        .map(String::as_str);
                    let written = self
                        .sync_secret(&arn, user, |ctx, r| {
                            render::objects::catalog_secret(
                                &secret,
                                ctx,
                                &r.username,
                                &r.password,
                                &r.version,
                            )
                        })
                        .await;
                    match written {
                        Ok(version) => {
                            versions.insert(name.clone(), version);
                        }
                        Err(u) => {
                            // Keep what the pods run with until the secret reads again —
                            // also after an agent restart, from the Secret's own record.
                            match self.last_version(name, &secret).await {
                                Some(v) => {
                                    versions.insert(name.clone(), v);
                                }
                                None => {
                                    withheld.insert(name.clone());
                                }
                            }
                            problems.insert(name.clone(), u);
                        }
                    }
                }
            }
        }
        // The metastore database's credentials, for the clusters that run the metastore:
        // a `hive-site.xml` with the connection, written into the Secret (never into the
        // pod's command line or environment, which the image's entrypoint traces).
        let metastore = desired
            .clusters
            .values()
            .any(|c| c.hive_metastore.as_ref().is_some_and(|h| h.enabled));
        if let (true, Some((endpoint, arn))) = (metastore, self.settings.metastore_db.clone()) {
            wanted.insert(render::METASTORE_DB_SECRET.to_owned());
            let written = self
                .sync_secret(&arn, None, |ctx, r| {
                    render::objects::metastore_db_secret(
                        ctx,
                        &endpoint,
                        &r.username,
                        &r.password,
                        &r.version,
                    )
                })
                .await;
            match written {
                Ok(v) => self.metastore_db_version = Some(v),
                Err(u) => {
                    if self.metastore_db_version.is_none() {
                        self.metastore_db_version = self
                            .last_version(METASTORE_PROBLEM, render::METASTORE_DB_SECRET)
                            .await;
                    }
                    problems.insert(METASTORE_PROBLEM.to_owned(), u);
                }
            }
            arns.insert(arn);
        }
        for gone in self.synced_secrets.difference(&wanted) {
            self.kube.delete("v1", "Secret", gone).await?;
            tracing::info!(
                secret = gone,
                "deleted a synced catalog Secret no catalog uses"
            );
        }
        self.synced_secrets = wanted;
        self.secrets.retain(&arns);
        self.secret_versions = versions;
        self.withheld_catalogs = withheld;
        Ok(problems)
    }

    /// The coordinator certificates of the clusters whose access needs HTTPS
    /// ([`crate::presto_tls`]): makes the compute plane's CA when missing, issues or renews
    /// each `tether-tls-<cluster>` Secret, or copies the customer's Secret into it. What is
    /// public — the CA and each issued certificate — is kept in the `tether-presto-ca`
    /// ConfigMap, which is also what renewal reads: the agent reads no Secret but its CA's.
    /// Returns the problems by cluster and the ConfigMap to keep. A cluster without a
    /// certificate keeps its coordinator as it is until one is written, except when HTTPS
    /// is new to it: then its coordinator cannot start until then (Presto stays
    /// unavailable rather than open). Certificates no cluster needs are deleted by name.
    async fn sync_presto_tls(
        &mut self,
        desired: &tether_shared::spec::DesiredState,
    ) -> Result<
        (
            BTreeMap<String, crate::presto_tls::TlsProblem>,
            Option<ObjectId>,
        ),
        KubeError,
    > {
        use crate::presto_tls::{
            PrestoCa, TlsProblem, from_customer_secret, issued_still_good, leaf_key, names_key,
        };
        use render::tls::{PRESTO_CA_NAME, certificate_names, tls_secret_name};
        let access = desired.presto_access.as_ref();
        let needs = access.is_some_and(|a| a.needs_https()) && !desired.clusters.is_empty();
        // What the published ConfigMap lists: the certificates issued so far.
        let published: BTreeMap<String, String> =
            match self.kube.get("v1", "ConfigMap", PRESTO_CA_NAME).await? {
                Some(cm) => serde_json::from_value(cm.data["data"].clone()).unwrap_or_default(),
                None => BTreeMap::new(),
            };
        let mut problems = BTreeMap::new();
        let mut versions = BTreeMap::new();
        let mut wanted = BTreeSet::new();
        let mut ca_configmap = None;
        if needs {
            let ctx = self.context();
            let customer = access
                .and_then(|a| a.tls.as_ref())
                .map(|t| t.certificate_ref.trim_start_matches("k8s:").to_owned());
            let denied = |what: &str, e: &KubeError| match e {
                KubeError::Call {
                    source: kube::Error::Api(s),
                    ..
                } if s.code == 403 => Some(TlsProblem(format!(
                    "the agent may not read Secret {what}: grant it get on that Secret (deploy/kubernetes/tether-agent.yaml grants it on {PRESTO_CA_NAME})"
                ))),
                _ => None,
            };
            let ca: Result<Option<PrestoCa>, TlsProblem> = match &customer {
                Some(_) => Ok(None),
                None => match self.kube.get("v1", "Secret", PRESTO_CA_NAME).await {
                    Ok(Some(sec)) => PrestoCa::from_secret_data(&secret_data(&sec)).map(Some),
                    Ok(None) => match PrestoCa::generate(&ctx) {
                        Ok((ca, sec)) => {
                            self.kube.apply(&sec).await?;
                            tracing::info!(
                                secret = PRESTO_CA_NAME,
                                "made the compute plane's Presto CA"
                            );
                            Ok(Some(ca))
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => match denied(PRESTO_CA_NAME, &e) {
                        Some(p) => Err(p),
                        None => return Err(e),
                    },
                },
            };
            let customer_data = match &customer {
                Some(name) => Some(match self.kube.get("v1", "Secret", name).await {
                    Ok(found) => Ok(found.map(|s| secret_data(&s))),
                    Err(e) => match denied(name, &e) {
                        Some(p) => Err(p),
                        None => return Err(e),
                    },
                }),
                None => None,
            };
            let now = tether_shared::timestamps::now_unix_ms() / 1000;
            let mut public = BTreeMap::new();
            if let Ok(Some(ca)) = &ca {
                public.insert(render::tls::CA_KEY.to_owned(), ca.cert_pem().to_owned());
            }
            for cluster in desired.clusters.keys() {
                let name = tls_secret_name(cluster);
                wanted.insert(name.clone());
                let names = certificate_names(cluster, &ctx.namespace);
                let issued = match (&ca, &customer_data) {
                    (_, Some(Err(p))) => Err(p.clone()),
                    (_, Some(Ok(None))) => Err(TlsProblem(format!(
                        "Secret {} (tls.certificate_ref) does not exist in namespace {}",
                        customer.as_deref().unwrap_or(""),
                        self.settings.namespace
                    ))),
                    (_, Some(Ok(Some(data)))) => {
                        from_customer_secret(cluster, &ctx, customer.as_deref().unwrap_or(""), data)
                            .map(|(sec, v)| Some((sec, v, None)))
                    }
                    (Err(p), None) => Err(p.clone()),
                    (Ok(Some(ca)), None) => {
                        match issued_still_good(&published, cluster, ca.cert_pem(), &names, now) {
                            Some((version, leaf)) => {
                                versions.insert(cluster.clone(), version);
                                public.insert(leaf_key(cluster), leaf);
                                public.insert(names_key(cluster), names.join(","));
                                Ok(None)
                            }
                            None => ca
                                .issue(cluster, &ctx, self.settings.presto_tls.validity)
                                .map(|(sec, v, leaf)| Some((sec, v, Some(leaf)))),
                        }
                    }
                    (Ok(None), None) => Ok(None),
                };
                match issued {
                    Ok(Some((secret, version, leaf))) => {
                        self.kube.apply(&secret).await?;
                        if let Some(leaf) = leaf {
                            public.insert(leaf_key(cluster), leaf);
                            public.insert(names_key(cluster), names.join(","));
                        }
                        if self.tls_versions.get(cluster) != Some(&version) {
                            tracing::info!(
                                cluster,
                                secret = name,
                                "coordinator certificate written"
                            );
                        }
                        versions.insert(cluster.clone(), version);
                    }
                    Ok(None) => {}
                    Err(p) => {
                        tracing::warn!(cluster, problem = %p, "no coordinator certificate");
                        // Keep what the coordinator runs with.
                        if let Some(v) = self.tls_versions.get(cluster) {
                            versions.insert(cluster.clone(), v.clone());
                        }
                        problems.insert(cluster.clone(), p);
                    }
                }
            }
            if !public.is_empty() {
                let cm = render::tls::presto_ca_configmap(&ctx, &public);
                self.kube.apply(&cm).await?;
                ca_configmap = Some(object_id(&cm));
            }
        }
        // Certificates no cluster needs: what this process wrote, and what the published
        // ConfigMap says an earlier one issued.
        let mut stale: BTreeSet<String> = self.tls_secrets.difference(&wanted).cloned().collect();
        stale.extend(
            published
                .keys()
                .filter_map(|k| k.strip_prefix("coordinator-")?.strip_suffix(".crt"))
                .map(tls_secret_name)
                .filter(|n| !wanted.contains(n)),
        );
        for gone in &stale {
            self.kube.delete("v1", "Secret", gone).await?;
            tracing::info!(
                secret = gone,
                "deleted a coordinator certificate no cluster needs"
            );
        }
        self.tls_secrets = wanted;
        self.tls_versions = versions;
        Ok((problems, ca_configmap))
    }

    /// Reads `arn` and applies the Secret `secret` makes of it; the version written, else
    /// why not (that Secret's problem, not the whole pass's).
    async fn sync_secret(
        &mut self,
        arn: &str,
        user: Option<&str>,
        secret: impl FnOnce(&RenderContext, &crate::secrets::Resolved) -> serde_json::Value,
    ) -> Result<String, crate::secrets::Unresolved> {
        let r = self.secrets.resolve(arn, user).await?;
        let obj = secret(&self.context(), &r);
        self.kube
            .apply(&obj)
            .await
            .map(|()| r.version)
            .map_err(|e| crate::secrets::Unresolved {
                reason: "SecretNotWritten",
                message: format!("writing Secret {}: {e}", obj["metadata"]["name"]),
            })
    }

    /// The version of the credentials in a synced Secret: this process's memory, else the
    /// Secret's own annotation (where the agent may read Secrets).
    async fn last_version(&self, catalog: &str, secret: &str) -> Option<String> {
        if let Some(v) = self.secret_versions.get(catalog) {
            return Some(v.clone());
        }
        let obj = self.kube.get("v1", "Secret", secret).await.ok()??;
        obj.metadata
            .annotations
            .as_ref()?
            .get(render::objects::SECRET_VERSION_ANNOTATION)
            .cloned()
    }

    /// Before the first apply that leaves `replicas` to the HPA: while Tether's manager
    /// still owns the field, leaving it out would remove it and the Deployment would fall
    /// back to one replica until the HPA scales it again. As the Kubernetes documentation
    /// on Server-Side Apply advises ("Transferring ownership"), a manager of its own first
    /// applies only the current count, so the field has another owner and keeps its value;
    /// the HPA's writes take it over from there.
    async fn hand_replicas_to_hpa(&self, live: &DynamicObject) -> Result<(), KubeError> {
        let ours = live
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| {
                e.manager.as_deref() == Some(kube_ops::FIELD_MANAGER)
                    && e.operation.as_deref() == Some("Apply")
            })
            .any(|e| {
                e.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0["f:spec"].get("f:replicas").is_some())
            });
        let Some(replicas) = live.data["spec"]["replicas"].as_i64().filter(|_| ours) else {
            return Ok(());
        };
        let name = live.metadata.name.clone().unwrap_or_default();
        tracing::info!(
            deployment = name,
            replicas,
            "handing the worker count to the autoscaler"
        );
        let handover = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.settings.namespace},
            "spec": {"replicas": replicas},
        });
        self.kube.apply_as(&handover, HANDOVER_MANAGER).await
    }

    /// Reads the cluster's Deployments and says what phase it is in.
    async fn observe(
        &self,
        name: &str,
        spec: &ClusterSpec,
        observed_generation: i64,
        last_error: Option<String>,
    ) -> pb::ClusterStatus {
        // Whether the client Service is HTTPS only (without building a whole render
        // context: this runs for every cluster once a second while one is starting).
        let https = self
            .desired
            .borrow()
            .as_ref()
            .and_then(|d| d.presto_access.as_ref())
            .is_some_and(|a| a.needs_https());
        let read = |n: String| async move { self.kube.get("apps/v1", "Deployment", &n).await };
        let coordinator = read(coordinator_name(name)).await;
        let workers = read(worker_name(name)).await;
        let (coord_ready, _) = coordinator
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map_or((0, None), deployment_replicas);
        let (ready_workers, replicas) = workers
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map_or((0, None), deployment_replicas);
        let desired_workers = match spec.workers {
            Workers::Fixed { count } => count,
            Workers::Autoscaling { min, .. } => replicas.unwrap_or(min),
        };
        // A roll in progress: old workers still there, or not all of them replaced yet.
        let rollout = workers
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .and_then(kube_ops::deployment_rollout);
        let read_error = coordinator.err().or(workers.err()).map(|e| e.to_string());
        let last_error = last_error.or(read_error);
        let phase = if last_error.is_some() && coord_ready == 0 {
            "Failed"
        } else if coord_ready == 0 {
            "Starting"
        } else if ready_workers < desired_workers {
            if ready_workers == 0 {
                "Starting"
            } else {
                "Degraded"
            }
        } else {
            "Running"
        };
        let mut conditions = vec![condition(name, "Ready", phase == "Running", phase, "")];
        if let Some((updated, total)) = rollout {
            let done = updated >= desired_workers && total <= updated;
            let message = if done {
                String::new()
            } else {
                format!(
                    "{updated} of {desired_workers} workers run the current configuration; {} still to replace",
                    total
                        .saturating_sub(updated)
                        .max(desired_workers.saturating_sub(updated))
                )
            };
            conditions.push(condition(
                name,
                "WorkersRolledOut",
                done,
                if done { "RolledOut" } else { "Rolling" },
                &message,
            ));
        }
        // What the last apply pass found about this cluster's inputs (its catalogs'
        // credentials), beside the status.
        conditions.extend(
            self.conditions
                .iter()
                .filter(|c| c.cluster == name && c.r#type != "Applied")
                .cloned(),
        );
        // What the last check of the attached catalogs' endpoints found.
        let unreachable: Vec<String> = {
            let reach = self.catalog_reach.borrow();
            spec.catalogs
                .iter()
                .filter_map(|c| {
                    reach
                        .get(c)
                        .map(|r| r.as_ref().map(|why| format!("catalog {c}: {why}")))
                })
                .collect::<Vec<Option<String>>>()
                .into_iter()
                .flatten()
                .collect()
        };
        let checked = {
            let reach = self.catalog_reach.borrow();
            spec.catalogs.iter().any(|c| reach.contains_key(c))
        };
        if checked {
            conditions.push(condition(
                name,
                "CatalogReachable",
                unreachable.is_empty(),
                if unreachable.is_empty() {
                    "Reachable"
                } else {
                    "Unreachable"
                },
                &unreachable.join("; "),
            ));
        }
        // What the collector found when it last read the coordinator (absent until then).
        match self.reach.borrow().get(name) {
            Some(None) => conditions.push(condition(
                name,
                "CoordinatorReachable",
                true,
                "Reachable",
                "",
            )),
            Some(Some(why)) => conditions.push(condition(
                name,
                "CoordinatorReachable",
                false,
                "Unreachable",
                why,
            )),
            None => {}
        }
        pb::ClusterStatus {
            name: name.to_owned(),
            phase: phase.to_owned(),
            coordinator_ready: coord_ready > 0,
            ready_workers,
            desired_workers,
            endpoint: self
                .settings
                .endpoint
                .render(name, &self.settings.namespace, https),
            observed_generation,
            conditions,
            last_error: last_error.unwrap_or_default(),
        }
    }
}

/// A condition whose status and reason did not change keeps its transition time, so an
/// unchanged report compares equal and is not sent again.
fn keep_transition_times(
    conditions: &mut [pb::ClusterCondition],
    previous: &[pb::ClusterCondition],
) {
    for c in conditions {
        if let Some(p) = previous.iter().find(|p| {
            p.cluster == c.cluster
                && p.r#type == c.r#type
                && p.status == c.status
                && p.reason == c.reason
        }) {
            c.last_transition_unix_ms = p.last_transition_unix_ms;
        }
    }
}

/// Builds a Kubernetes client: from `kubeconfig` if given, else the in-cluster service
/// account when running in a pod, else `None` (desired state is then kept but not applied).
///
/// kube's own retry of 429/503/504 (up to 15 times, backing off to minutes) is off: every
/// caller here retries on its own schedule, and a retry hidden inside one call would stall
/// everything behind it (a service proxy to a coordinator without endpoints answers 503).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Option<kube::Client>, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().map_err(|e| format!("in-cluster Kubernetes config: {e}"))?
        }
        None => return Ok(None),
    };
    config.default_retry = false;
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| format!("Kubernetes client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::EndpointTemplate;

    #[test]
    fn endpoint_templates_render_and_refuse_what_they_cannot_fill() {
        let d = EndpointTemplate::default();
        assert_eq!(
            d.render("etl", "tether", false),
            format!(
                "http://{}.tether.svc.cluster.local:{}",
                super::service_name("etl"),
                super::render::PRESTO_PORT
            )
        );
        assert_eq!(
            d.render("etl", "tether", true),
            "https://etl.tether.svc.cluster.local:8443"
        );
        let ingress =
            EndpointTemplate::parse("https://presto-{cluster}.data.example.com").expect("valid");
        assert_eq!(
            ingress.render("etl", "tether", true),
            "https://presto-etl.data.example.com"
        );
        let e = EndpointTemplate::parse("https://{host}:8080").expect_err("unknown placeholder");
        assert!(e.contains("unknown placeholder {host}"), "{e}");
        assert!(EndpointTemplate::parse("presto:8080").is_err());
        assert!(EndpointTemplate::parse("http://{cluster").is_err());
    }
}
