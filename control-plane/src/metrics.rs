//! Prometheus counters of the control plane (process-global, as Prometheus client
//! libraries keep them), rendered at `/metrics` with the live session gauge.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The control plane's counters.
#[derive(Debug, Default)]
pub struct CpMetrics {
    /// Telemetry batches stored.
    pub telemetry_batches_total: AtomicU64,
    /// Telemetry records stored (new sequence numbers only).
    pub telemetry_records_total: AtomicU64,
    /// Desired-state documents pushed to sessions.
    pub desired_state_pushes_total: AtomicU64,
    /// Agent messages received on sessions.
    pub agent_messages_total: AtomicU64,
    /// Session starts told to come back later (`Goodbye{overloaded}`).
    pub sessions_deferred_total: AtomicU64,
    /// TLS handshakes that waited for a handshake slot.
    pub handshakes_queued_total: AtomicU64,
    /// Full TLS handshakes (certificate chain verified).
    pub handshakes_full_total: AtomicU64,
    /// Resumed TLS handshakes (a session ticket of any replica).
    pub handshakes_resumed_total: AtomicU64,
    /// Events received from other replicas.
    pub fleet_events_received_total: AtomicU64,
}

/// The process's counters.
pub static METRICS: LazyLock<CpMetrics> = LazyLock::new(CpMetrics::default);

/// The exposition text, with `sessions` live sessions.
pub fn render(sessions: usize) -> String {
    let m = &*METRICS;
    let line = |name: &str, help: &str, kind: &str, v: u64| {
        format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n")
    };
    [
        line(
            "tether_agent_sessions",
            "Live agent sessions on this control plane.",
            "gauge",
            sessions as u64,
        ),
        line(
            "tether_agent_messages_total",
            "Messages received from agents on sessions.",
            "counter",
            m.agent_messages_total.load(Ordering::Relaxed),
        ),
        line(
            "tether_sessions_deferred_total",
            "Session starts told to come back later (Goodbye overloaded, with retry_after).",
            "counter",
            m.sessions_deferred_total.load(Ordering::Relaxed),
        ),
        line(
            "tether_tls_handshakes_queued_total",
            "TLS handshakes that waited for one of the concurrent handshake slots.",
            "counter",
            m.handshakes_queued_total.load(Ordering::Relaxed),
        ),
        format!(
            "# HELP tether_tls_handshakes_total TLS handshakes of agents, full or resumed from a session ticket of any replica.\n\
             # TYPE tether_tls_handshakes_total counter\n\
             tether_tls_handshakes_total{{kind=\"full\"}} {}\n\
             tether_tls_handshakes_total{{kind=\"resumed\"}} {}\n",
            m.handshakes_full_total.load(Ordering::Relaxed),
            m.handshakes_resumed_total.load(Ordering::Relaxed)
        ),
        line(
            "tether_fleet_events_received_total",
            "Events (desired state changed, end session) received from other replicas.",
            "counter",
            m.fleet_events_received_total.load(Ordering::Relaxed),
        ),
        line(
            "tether_desired_state_pushes_total",
            "Desired-state documents pushed to agents.",
            "counter",
            m.desired_state_pushes_total.load(Ordering::Relaxed),
        ),
        line(
            "tether_telemetry_batches_total",
            "Telemetry batches stored.",
            "counter",
            m.telemetry_batches_total.load(Ordering::Relaxed),
        ),
        line(
            "tether_telemetry_records_total",
            "Telemetry records stored (new sequence numbers).",
            "counter",
            m.telemetry_records_total.load(Ordering::Relaxed),
        ),
    ]
    .concat()
}
