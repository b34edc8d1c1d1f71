//! Collectors: every scrape interval, for each desired cluster, read the coordinator's
//! `/v1/cluster` (metrics) and `/v1/query` (finished queries), and spool metrics and query
//! *metadata* — text and error messages treated per the compute plane's redaction mode,
//! applied here, inside the VPC.
//!
//! Each cluster is collected by a task of its own, on its own schedule, and each pass is
//! bounded by [`COLLECT_TIMEOUT`]: a coordinator that does not answer (just created,
//! crashed, no Presto behind its Service) delays only its own cluster's telemetry, and is
//! published as that cluster's reachability, which the reconciler reports as a condition.
//!
//! The coordinator is reached through its Service's in-cluster DNS name by default, or
//! through the Kubernetes API server's service proxy (`--coordinator-access api-proxy`),
//! which needs no network path to the pods — the tests use it.

pub mod presto_json;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tether_proto::v1::{MetricSample, telemetry_record};
use tether_shared::redact::RedactionMode;
use tokio::sync::watch;

use crate::desired::Desired;
use crate::reconcile::kube_ops::Kube;
use crate::render::{PRESTO_PORT, service_name};
use crate::report::Report;
use crate::telemetry::Telemetry;

/// The desired-state setting that picks the redaction mode.
pub const REDACTION_SETTING: &str = "query_text_redaction";
/// Query ids remembered per cluster to send each query once (Presto keeps ~100 by default).
const SEEN_CAPACITY: usize = 100_000;
/// Longest one collection pass of one cluster may take.
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Per cluster, whether its coordinator answered the last collection: `None` when it did,
/// else why not. Clusters not yet collected are absent.
pub type Reachability = BTreeMap<String, Option<String>>;

/// How the coordinator is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CoordinatorAccess {
    /// `http://<service>.<namespace>.svc.cluster.local:8080` (the agent runs in the cluster).
    Dns,
    /// The API server's service proxy (the agent needs only the Kubernetes API).
    ApiProxy,
}

/// Collector tunables.
#[derive(Debug, Clone)]
pub struct CollectSettings {
    /// How often each coordinator is read.
    pub interval: Duration,
    /// How it is reached.
    pub access: CoordinatorAccess,
    /// Namespace of the clusters.
    pub namespace: String,
}

/// What every cluster's collection task shares.
#[derive(Debug)]
struct Shared {
    settings: CollectSettings,
    kube: Option<Kube>,
    http: reqwest::Client,
    telemetry: Telemetry,
    desired: watch::Receiver<Desired>,
    report: watch::Receiver<Report>,
    reach: watch::Sender<Reachability>,
}

/// The collector of one compute plane.
#[derive(Debug)]
pub struct Collector {
    shared: Arc<Shared>,
    desired: watch::Receiver<Desired>,
}

impl Collector {
    /// A collector writing into `telemetry` and publishing reachability on `reach`.
    pub fn new(
        settings: CollectSettings,
        kube: Option<Kube>,
        telemetry: Telemetry,
        desired: watch::Receiver<Desired>,
        report: watch::Receiver<Report>,
        reach: watch::Sender<Reachability>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(COLLECT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            shared: Arc::new(Shared {
                settings,
                kube,
                http,
                telemetry,
                desired: desired.clone(),
                report,
                reach,
            }),
            desired,
        }
    }

    /// Runs until `stop` fires: one task per desired cluster, started and stopped as the
    /// desired state gains and loses clusters.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tasks: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut sync = tokio::time::interval(Duration::from_secs(1));
        self.follow(&mut tasks);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = sync.tick() => self.shared.telemetry.sync(),
                changed = self.desired.changed() => {
                    if changed.is_err() { break; }
                    self.follow(&mut tasks);
                }
            }
        }
        for (_, t) in tasks {
            t.abort();
        }
        self.shared.telemetry.sync();
    }

    /// Starts a task for each desired cluster without one; stops those no longer desired.
    fn follow(&mut self, tasks: &mut HashMap<String, tokio::task::JoinHandle<()>>) {
        let clusters: HashSet<String> = self
            .desired
            .borrow_and_update()
            .as_ref()
            .map(|d| d.clusters.keys().cloned().collect())
            .unwrap_or_default();
        tasks.retain(|name, task| {
            let keep = clusters.contains(name);
            if !keep {
                task.abort();
            }
            keep
        });
        self.shared.reach.send_if_modified(|r| {
            let before = r.len();
            r.retain(|name, _| clusters.contains(name));
            r.len() != before
        });
        for name in clusters {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(name) {
                let shared = self.shared.clone();
                let name = slot.key().clone();
                slot.insert(tokio::spawn(collect_cluster_forever(shared, name)));
            }
        }
    }
}

/// The query ids of one cluster already sent.
#[derive(Debug, Default)]
struct Seen {
    /// 64-bit hashes of the ids (a collision would skip one record in about 2^32 queries'
    /// worth of ids held at once; the set holds at most 100,000).
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    fn remember(&mut self, id: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        let key = h.finish();
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Collects `cluster` every interval until aborted.
async fn collect_cluster_forever(shared: Arc<Shared>, cluster: String) {
    let mut tick = tokio::time::interval(shared.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = Seen::default();
    loop {
        tick.tick().await;
        let mode: RedactionMode = shared
            .desired
            .borrow()
            .as_ref()
            .and_then(|d| d.settings.get(REDACTION_SETTING).cloned())
            .and_then(|m| m.parse().ok())
            .unwrap_or_default();
        let now = tether_shared::timestamps::now_unix_ms();
        let status = shared
            .report
            .borrow()
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|st| (st.ready_workers, st.coordinator_ready));
        if let Some((ready_workers, coordinator_ready)) = status {
            shared.metric(&cluster, "ready_workers", f64::from(ready_workers), now);
            shared.metric(
                &cluster,
                "coordinator_ready",
                f64::from(u8::from(coordinator_ready)),
                now,
            );
        }
        let pass = shared.collect_cluster(&cluster, &mut seen, mode, now);
        let result = match tokio::time::timeout(COLLECT_TIMEOUT, pass).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the coordinator did not answer within {} s",
                COLLECT_TIMEOUT.as_secs()
            )),
        };
        let error = result.err();
        shared.reach.send_if_modified(|r| {
            let before = r.get(&cluster);
            if before == Some(&error) {
                return false;
            }
            match (&error, before) {
                (None, Some(Some(_))) => tracing::info!(cluster, "coordinator reachable again"),
                (Some(e), _) => tracing::warn!(cluster, "cannot read the coordinator: {e}"),
                _ => {}
            }
            r.insert(cluster.clone(), error.clone());
            true
        });
    }
}

impl Shared {
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        cluster: &str,
        path: &str,
    ) -> Result<T, String> {
        // A password-protected coordinator's client Service is HTTPS only; its plain port
        // (which the NetworkPolicy keeps to the cluster and the agent) is the internal one.
        let https = self
            .desired
            .borrow()
            .as_ref()
            .and_then(|d| d.presto_access.as_ref())
            .is_some_and(|a| a.needs_https());
        let svc = match https {
            true => crate::render::tls::internal_service_name(cluster),
            false => service_name(cluster),
        };
        let ns = &self.settings.namespace;
        let body = match (self.settings.access, &self.kube) {
            (CoordinatorAccess::ApiProxy, Some(kube)) => {
                let uri =
                    format!("/api/v1/namespaces/{ns}/services/{svc}:{PRESTO_PORT}/proxy{path}");
                let req = http::Request::get(uri)
                    .header("X-Presto-User", "tether-agent")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                kube.client()
                    .request_text(req)
                    .await
                    .map_err(|e| format!("{path} through the API server's service proxy: {e}"))?
            }
            (CoordinatorAccess::ApiProxy, None) => {
                return Err("api-proxy access needs Kubernetes".into());
            }
            (CoordinatorAccess::Dns, _) => {
                let url = format!("http://{svc}.{ns}.svc.cluster.local:{PRESTO_PORT}{path}");
                let resp = self
                    .http
                    .get(url)
                    .header("X-Presto-User", "tether-agent")
                    .send()
                    .await
                    .map_err(|e| format!("{path}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("{path}: HTTP {}", resp.status()));
                }
                resp.text().await.map_err(|e| e.to_string())?
            }
        };
        serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON: {e}"))
    }

    fn metric(&self, cluster: &str, name: &str, value: f64, ts: i64) {
        self.telemetry
            .record(telemetry_record::Kind::Metric(MetricSample {
                cluster: cluster.to_owned(),
                name: name.to_owned(),
                value,
                timestamp_unix_ms: ts,
            }));
    }

    async fn collect_cluster(
        &self,
        cluster: &str,
        seen: &mut Seen,
        mode: RedactionMode,
        now: i64,
    ) -> Result<(), String> {
        let stats: Value = self.get(cluster, "/v1/cluster").await?;
        for (field, name) in [
            ("runningQueries", "running_queries"),
            ("queuedQueries", "queued_queries"),
            ("blockedQueries", "blocked_queries"),
            ("activeWorkers", "active_workers"),
            ("reservedMemory", "reserved_memory_bytes"),
            ("totalInputRows", "input_rows_total"),
            ("totalInputBytes", "input_bytes_total"),
            ("totalCpuTimeSecs", "cpu_seconds_total"),
        ] {
            if let Some(v) = stats[field].as_f64() {
                self.metric(cluster, name, v, now);
            }
        }
        let queries: Vec<presto_json::BasicQueryInfo> = self.get(cluster, "/v1/query").await?;
        for q in &queries {
            if !q.query_id.is_empty()
                && presto_json::is_terminal(&q.state)
                && seen.remember(&q.query_id)
            {
                let record = presto_json::query_record(cluster, q, mode);
                self.telemetry.record(telemetry_record::Kind::Query(record));
            }
        }
        Ok(())
    }
}
