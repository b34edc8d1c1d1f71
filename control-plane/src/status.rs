//! What the agent reports about the desired state: acks of applied generations with
//! per-cluster conditions, and observed cluster status. Stored as the agent sent it
//! (bounded), shown by the API next to the spec.

use serde_json::{Value, json};
use tether_proto::v1 as pb;

use crate::state::AppState;

/// Longest message or reason kept from the agent.
const MAX_TEXT: usize = 1024;
/// Most conditions kept per report.
const MAX_CONDITIONS: usize = 64;

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// The API form of a condition.
pub fn condition_json(c: &pb::ClusterCondition) -> Value {
    json!({
        "cluster": clip(&c.cluster),
        "type": clip(&c.r#type),
        "status": clip(&c.status),
        "reason": clip(&c.reason),
        "message": clip(&c.message),
        "last_transition_unix_ms": c.last_transition_unix_ms,
    })
}

/// Records an `Applied` ack (written behind, see [`crate::presence`]).
pub fn record_applied(state: &AppState, cp: &str, a: &pb::Applied) {
    let conditions: Vec<Value> = a
        .conditions
        .iter()
        .take(MAX_CONDITIONS)
        .map(condition_json)
        .collect();
    let text = Value::Array(conditions).to_string();
    state.presence.applied(cp, a.generation, text);
    tracing::info!(
        compute_plane = cp,
        generation = a.generation,
        "agent applied desired state"
    );
}

/// Records a `Status` report, cluster by cluster.
pub async fn record_status(state: &AppState, cp: &str, st: pb::Status) {
    for c in st.clusters.iter().take(1000) {
        let body = json!({
            "phase": clip(&c.phase),
            "coordinator_ready": c.coordinator_ready,
            "ready_workers": c.ready_workers,
            "desired_workers": c.desired_workers,
            "endpoint": clip(&c.endpoint),
            "conditions": c.conditions.iter().take(MAX_CONDITIONS).map(condition_json).collect::<Vec<_>>(),
            "last_error": if c.last_error.is_empty() { Value::Null } else { Value::String(clip(&c.last_error)) },
        });
        if let Err(e) = state
            .store
            .record_cluster_status(cp, &c.name, &body.to_string(), c.observed_generation)
            .await
        {
            tracing::warn!(compute_plane = cp, cluster = %c.name, error = %e, "recording cluster status failed");
        }
    }
}
