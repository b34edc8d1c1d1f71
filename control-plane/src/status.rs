//! What the agent reports about the desired state: acks of applied generations with
//! per-cluster conditions, and observed cluster status. Stored as the agent sent it
//! (bounded), shown by the API next to the spec.

use tether_proto::v1 as pb;
use tether_shared::status::{ClusterStatus, Condition, Phase};

use crate::state::AppState;

/// Longest message or reason kept from the agent.
const MAX_TEXT: usize = 1024;
/// Most conditions kept per report.
const MAX_CONDITIONS: usize = 64;

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// A condition as the agent reported it, clipped.
pub fn condition(c: &pb::ClusterCondition) -> Condition {
    Condition {
        cluster: clip(&c.cluster),
        kind: clip(&c.r#type),
        status: clip(&c.status),
        reason: clip(&c.reason),
        message: clip(&c.message),
        last_transition_unix_ms: c.last_transition_unix_ms,
    }
}

/// Records an `Applied` ack (written behind, see [`crate::presence`]).
pub fn record_applied(state: &AppState, cp: &str, session_id: &str, a: &pb::Applied) {
    let conditions = a
        .conditions
        .iter()
        .take(MAX_CONDITIONS)
        .map(condition)
        .collect();
    state
        .presence
        .applied(cp, session_id, a.generation, conditions);
    tracing::info!(
        compute_plane = cp,
        generation = a.generation,
        "agent applied desired state"
    );
}

/// A cluster's status as the agent reported it, clipped.
pub fn cluster_status(c: &pb::ClusterStatus) -> ClusterStatus {
    ClusterStatus {
        phase: Phase::parse(&c.phase),
        coordinator_ready: c.coordinator_ready,
        ready_workers: c.ready_workers,
        desired_workers: c.desired_workers,
        endpoint: Some(clip(&c.endpoint)).filter(|e| !e.is_empty()),
        conditions: c
            .conditions
            .iter()
            .take(MAX_CONDITIONS)
            .map(condition)
            .collect(),
        last_error: Some(clip(&c.last_error)).filter(|e| !e.is_empty()),
    }
}

/// Records a `Status` report, cluster by cluster.
pub async fn record_status(state: &AppState, cp: &str, st: pb::Status) {
    for c in st.clusters.iter().take(1000) {
        if let Err(e) = state
            .store
            .record_cluster_status(cp, &c.name, &cluster_status(c), c.observed_generation)
            .await
        {
            tracing::warn!(compute_plane = cp, cluster = %c.name, error = %e, "recording cluster status failed");
        }
    }
}
