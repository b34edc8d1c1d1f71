//! Prometheus text metrics of the agent, served on `--metrics-listen` at `/metrics`:
//! session state, control messages, telemetry (records spooled, acked, dropped, spool
//! bytes), reconcile runs, errors by reason and durations. Counters are process-global,
//! as Prometheus client libraries keep them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::report::Report;
use crate::telemetry::Telemetry;

/// The agent's counters.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// 1 while a session is up.
    pub session_up: AtomicU64,
    /// Sessions established.
    pub sessions_total: AtomicU64,
    /// Control messages received.
    pub control_messages_total: AtomicU64,
    /// Reconcile passes.
    pub reconcile_total: AtomicU64,
    /// Sum of reconcile pass durations, microseconds.
    pub reconcile_micros_total: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl AgentMetrics {
    /// Counts a reconcile error by reason.
    pub fn reconcile_error(&self, reason: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }
}

/// The process's counters.
pub static METRICS: LazyLock<AgentMetrics> = LazyLock::new(AgentMetrics::default);

fn counter(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The exposition text.
pub fn render(telemetry: &Telemetry, report: &Report) -> String {
    let m = &*METRICS;
    let (next, acked, dropped, bytes) = telemetry.stats();
    let mut out = String::new();
    counter(
        &mut out,
        "tether_agent_session_up",
        "Whether a session to the control plane is up.",
        "gauge",
        m.session_up.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "tether_agent_sessions_total",
        "Sessions established.",
        "counter",
        m.sessions_total.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "tether_agent_control_messages_total",
        "Control messages received.",
        "counter",
        m.control_messages_total.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "tether_agent_telemetry_records_total",
        "Telemetry records spooled (per-agent sequence numbers used).",
        "counter",
        next.saturating_sub(1),
    );
    counter(
        &mut out,
        "tether_agent_telemetry_acked_seq",
        "Highest sequence number the control plane acked (or dropped).",
        "gauge",
        acked,
    );
    counter(
        &mut out,
        "tether_agent_telemetry_dropped_total",
        "Telemetry records dropped because the spool was full.",
        "counter",
        dropped,
    );
    counter(
        &mut out,
        "tether_agent_spool_bytes",
        "Bytes in the on-disk telemetry spool.",
        "gauge",
        bytes,
    );
    counter(
        &mut out,
        "tether_agent_applied_generation",
        "Desired-state generation last processed.",
        "gauge",
        report.applied_generation,
    );
    counter(
        &mut out,
        "tether_agent_reconcile_total",
        "Reconcile passes.",
        "counter",
        m.reconcile_total.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "tether_agent_reconcile_seconds_total",
        "Time spent reconciling.",
        "counter",
        m.reconcile_micros_total.load(Ordering::Relaxed) as f64 / 1e6,
    );
    let _ = writeln!(
        out,
        "# HELP tether_agent_reconcile_errors_total Reconcile errors by reason.\n# TYPE tether_agent_reconcile_errors_total counter"
    );
    for (reason, n) in m.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(
            out,
            "tether_agent_reconcile_errors_total{{reason=\"{reason}\"}} {n}"
        );
    }
    out
}

/// Serves `/metrics` (and `/healthz`) on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    telemetry: Telemetry,
    report: watch::Receiver<Report>,
    mut stop: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let telemetry = telemetry.clone();
                let report = report.borrow().clone();
                async move { render(&telemetry, &report) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("metrics server stopped: {e}");
    }
}
