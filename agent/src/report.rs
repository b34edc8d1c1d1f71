//! What the reconciler tells the control plane: the generation it applied, with
//! per-cluster conditions, and each cluster's observed status. The reconciler publishes
//! the latest report on a `watch` channel; each session sends it on start and on change.

use tether_proto::v1 as pb;

/// The reconciler's latest findings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Highest generation applied without error (0: none yet).
    pub applied_generation: i64,
    /// Conditions of the last apply, per cluster.
    pub conditions: Vec<pb::ClusterCondition>,
    /// Observed state of each desired cluster.
    pub clusters: Vec<pb::ClusterStatus>,
}

impl Report {
    /// The `Applied` message.
    pub fn applied(&self) -> pb::AgentMessage {
        pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Applied(pb::Applied {
                generation: self.applied_generation,
                conditions: self.conditions.clone(),
            })),
        }
    }

    /// The `Status` message.
    pub fn status(&self) -> pb::AgentMessage {
        pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Status(pb::Status {
                clusters: self.clusters.clone(),
            })),
        }
    }
}
