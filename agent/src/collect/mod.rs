//! Collectors: every scrape interval, for each desired cluster, read the coordinator's
//! `/v1/cluster` (metrics) and `/v1/query` (finished queries), and spool metrics and query
//! *metadata* — text and error messages treated per the compute plane's redaction mode,
//! applied here, inside the VPC.
//!
//! The coordinator is reached through its Service's in-cluster DNS name by default, or
//! through the Kubernetes API server's service proxy (`--coordinator-access api-proxy`),
//! which needs no network path to the pods — the tests use it.

pub mod presto_json;

use std::collections::{HashSet, VecDeque};
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
/// Query ids remembered to send each query once (Presto keeps ~100 by default).
const SEEN_CAPACITY: usize = 100_000;

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

/// The collector of one compute plane.
#[derive(Debug)]
pub struct Collector {
    settings: CollectSettings,
    kube: Option<Kube>,
    http: reqwest::Client,
    telemetry: Telemetry,
    desired: watch::Receiver<Desired>,
    report: watch::Receiver<Report>,
    /// 64-bit hashes of the query ids already sent (a collision would skip one record in
    /// about 2^32 queries' worth of ids held at once; the set holds at most 100,000).
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    last_error: Option<String>,
}

impl Collector {
    /// A collector writing into `telemetry`.
    pub fn new(
        settings: CollectSettings,
        kube: Option<Kube>,
        telemetry: Telemetry,
        desired: watch::Receiver<Desired>,
        report: watch::Receiver<Report>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            settings,
            kube,
            http,
            telemetry,
            desired,
            report,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            last_error: None,
        }
    }

    /// Runs until `stop` fires.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = sync.tick() => self.telemetry.sync(),
                _ = tick.tick() => self.collect_once().await,
            }
        }
        self.telemetry.sync();
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        cluster: &str,
        path: &str,
    ) -> Result<T, String> {
        let svc = service_name(cluster);
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
                    .map_err(|e| e.to_string())?
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
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("{path}: HTTP {}", resp.status()));
                }
                resp.text().await.map_err(|e| e.to_string())?
            }
        };
        serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON: {e}"))
    }

    fn remember(&mut self, id: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        let key = h.finish();
        if !self.seen.insert(key) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > SEEN_CAPACITY
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
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

    /// One pass over every desired cluster.
    pub async fn collect_once(&mut self) {
        let Some(desired) = self.desired.borrow().clone() else {
            return;
        };
        let mode: RedactionMode = desired
            .settings
            .get(REDACTION_SETTING)
            .and_then(|m| m.parse().ok())
            .unwrap_or_default();
        let now = tether_shared::timestamps::now_unix_ms();
        let report = self.report.borrow().clone();
        for cluster in desired.clusters.keys() {
            if let Some(st) = report.clusters.iter().find(|c| &c.name == cluster) {
                self.metric(cluster, "ready_workers", f64::from(st.ready_workers), now);
                self.metric(
                    cluster,
                    "coordinator_ready",
                    f64::from(u8::from(st.coordinator_ready)),
                    now,
                );
            }
            let result = self.collect_cluster(cluster, mode, now).await;
            match (result, &self.last_error) {
                (Ok(()), Some(_)) => {
                    tracing::info!(cluster, "coordinator reachable again");
                    self.last_error = None;
                }
                (Err(e), last) if last.as_deref() != Some(e.as_str()) => {
                    tracing::warn!(cluster, "cannot read the coordinator: {e}");
                    self.last_error = Some(e);
                }
                _ => {}
            }
        }
    }

    async fn collect_cluster(
        &mut self,
        cluster: &str,
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
                && self.remember(&q.query_id)
            {
                let record = presto_json::query_record(cluster, q, mode);
                self.telemetry.record(telemetry_record::Kind::Query(record));
            }
        }
        Ok(())
    }
}
