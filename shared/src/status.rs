//! What the agent observes of a cluster: its phase, readiness and conditions. One type for
//! the status path (agent report → store), the REST API and the dashboard, so no caller
//! parses a status from JSON by string keys.

use serde::{Deserialize, Serialize};

/// Where a cluster is in its life, as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// No report from the agent yet.
    Pending,
    /// The coordinator (or every worker) is not ready yet.
    Starting,
    /// Coordinator and every desired worker ready.
    Running,
    /// Coordinator ready, some workers missing.
    Degraded,
    /// The agent could not apply or read the cluster.
    Failed,
    /// The control plane has a newer spec than the agent last reconciled.
    Applying,
    /// A DELETE waits for the agent.
    Deleting,
    /// A phase this version does not know (a newer agent).
    #[serde(other)]
    Unknown,
}

impl Phase {
    /// The name on the wire and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Starting => "Starting",
            Phase::Running => "Running",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::Applying => "Applying",
            Phase::Deleting => "Deleting",
            Phase::Unknown => "Unknown",
        }
    }

    /// Parses the wire name; a name this version does not know is [`Phase::Unknown`].
    pub fn parse(s: &str) -> Self {
        match s {
            "Pending" => Phase::Pending,
            "Starting" => Phase::Starting,
            "Running" => Phase::Running,
            "Degraded" => Phase::Degraded,
            "Failed" => Phase::Failed,
            "Applying" => Phase::Applying,
            "Deleting" => Phase::Deleting,
            _ => Phase::Unknown,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition the agent reported (Kubernetes-style: type, status, reason, message).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// The cluster it is about (empty: the compute plane).
    #[serde(default)]
    pub cluster: String,
    /// E.g. `Ready`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// One CamelCase word.
    #[serde(default)]
    pub reason: String,
    /// For people.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (Unix ms).
    #[serde(default)]
    pub last_transition_unix_ms: i64,
}

/// The observed state of one cluster.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Phase.
    pub phase: Phase,
    /// The coordinator is ready.
    #[serde(default)]
    pub coordinator_ready: bool,
    /// Workers ready.
    #[serde(default)]
    pub ready_workers: u32,
    /// Workers wanted now.
    #[serde(default)]
    pub desired_workers: u32,
    /// The coordinator's URL inside the VPC.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The agent's last error for this cluster.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl ClusterStatus {
    /// The status of a cluster the agent has not reported on yet.
    pub fn pending(desired_workers: u32) -> Self {
        Self {
            phase: Phase::Pending,
            coordinator_ready: false,
            ready_workers: 0,
            desired_workers,
            endpoint: None,
            conditions: vec![],
            last_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_round_trip_and_unknown_ones_are_kept_apart() {
        for p in [
            Phase::Pending,
            Phase::Starting,
            Phase::Running,
            Phase::Degraded,
            Phase::Failed,
            Phase::Applying,
            Phase::Deleting,
        ] {
            assert_eq!(Phase::parse(p.as_str()), p);
            let json = serde_json::to_string(&p).expect("serialize");
            assert_eq!(json, format!("\"{p}\""));
        }
        assert_eq!(Phase::parse("Rolling"), Phase::Unknown);
        let s: ClusterStatus =
            serde_json::from_str(r#"{"phase":"Rolling"}"#).expect("a newer agent's phase");
        assert_eq!(s.phase, Phase::Unknown);
    }

    #[test]
    fn condition_type_is_named_type_in_json() {
        let c = Condition {
            kind: "Ready".into(),
            ..Condition::default()
        };
        let v = serde_json::to_value(&c).expect("serialize");
        assert_eq!(v["type"], "Ready");
    }
}
