//! Presence: which agent has a live session, since when, its heartbeats and acks. Written
//! behind by [`crate::presence`], many compute planes per transaction.

use async_trait::async_trait;
use tether_shared::status::Condition;

use super::StoreError;

/// A live session as recorded on connect.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// Session id.
    pub session_id: String,
    /// Unix seconds.
    pub at: i64,
    /// Agent version.
    pub version: String,
    /// Peer address.
    pub remote_addr: String,
    /// The control-plane replica that holds the session.
    pub replica: String,
}

/// The session a claim superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    /// Its id.
    pub session_id: String,
    /// The replica that held it.
    pub replica: Option<String>,
}

/// What one compute plane's agent reported since the last write.
#[derive(Debug, Clone)]
pub struct PresenceUpdate {
    /// Compute plane.
    pub compute_plane_id: String,
    /// A session started.
    pub connected: Option<SessionStart>,
    /// The latest heartbeat: session id and Unix seconds.
    pub heartbeat: Option<(String, i64)>,
    /// The highest generation applied by a session (its id), with its conditions.
    pub applied: Option<(String, i64, Vec<Condition>)>,
    /// This session ended.
    pub disconnected: Option<String>,
}

/// Agent presence.
#[async_trait]
pub trait PresenceStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records what agents reported, compute plane by compute plane, in one transaction:
    /// for each, its session start, heartbeat, applied generation and session end, in that
    /// order. A heartbeat, ack or end of a session that is no longer current changes
    /// nothing (fencing: a superseded session cannot overwrite its successor's state).
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError>;
    /// Records at once (not written behind) that `start` is now the compute plane's
    /// session, held by `start.replica`, and returns the session it superseded if one was
    /// connected. Replicas call this on every session start, so that the newest claim wins
    /// whichever replica each session is on.
    async fn claim_session(
        &self,
        cp: &str,
        start: &SessionStart,
    ) -> Result<Option<Superseded>, StoreError>;
    /// On start of a single-replica control plane: no session survived the restart.
    async fn mark_all_disconnected(&self) -> Result<(), StoreError>;
}
