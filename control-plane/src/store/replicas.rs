//! The replicas of the control plane: leases, the sessions each holds, and the health
//! check of the store itself.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// One replica's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
    /// `--replica-name`.
    pub name: String,
    /// When it started (Unix ms).
    pub started_ms: i64,
    /// Its last renewal (Unix ms).
    pub last_seen_ms: i64,
    /// How long a renewal holds (ms).
    pub lease_ms: i64,
    /// Live sessions at the last renewal.
    pub sessions: u64,
    /// Stopping: admits no new sessions.
    pub draining: bool,
}

/// What the store says of a compute plane whose session a replica holds (to catch up
/// after notifications may have been lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSession {
    /// Compute plane.
    pub compute_plane_id: String,
    /// Desired generation.
    pub generation: i64,
    /// The generation its agent last acked.
    pub applied_generation: i64,
    /// The agent is revoked.
    pub revoked: bool,
    /// The current session.
    pub session_id: Option<String>,
    /// The replica holding the current session.
    pub replica: Option<String>,
}

/// Replica leases and store health.
#[async_trait]
pub trait ReplicaStore: Send + Sync + std::fmt::Debug + 'static {
    /// One round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Creates or renews a replica's lease; true if it was created (a new replica, or one
    /// whose lease had run out and been expired by another).
    async fn renew_replica(&self, r: &Replica) -> Result<bool, StoreError>;
    /// Records again that `replica` holds these sessions `(compute plane, session id)`
    /// (those still current): after its lease ran out while it could not reach the
    /// database, another replica marked them disconnected. Returns how many it took back.
    async fn reclaim_sessions(
        &self,
        replica: &str,
        sessions: &[(String, String)],
    ) -> Result<u64, StoreError>;
    /// Replicas whose lease holds at `now_ms`, by name.
    async fn list_replicas(&self, now_ms: i64) -> Result<Vec<Replica>, StoreError>;
    /// Replicas whose lease ran out before `now_ms`: the sessions they still hold are marked
    /// disconnected and their leases removed. Returns their names.
    async fn expire_replicas(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;
    /// A replica stopped cleanly: its lease goes, and sessions still recorded as held by it
    /// are marked disconnected.
    async fn remove_replica(&self, name: &str) -> Result<(), StoreError>;
    /// The state of these compute planes, for a replica that holds their sessions.
    async fn held_sessions(&self, cps: &[String]) -> Result<Vec<HeldSession>, StoreError>;
}
