//! `GET /replicas` (platform admin): the control plane's live replicas.

use axum::Json;
use axum::extract::State;

use super::auth::Principal;
use super::error::ApiError;
use crate::authz::Role;
use crate::state::AppState;

/// A replica whose lease holds.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReplicaView {
    /// Its name (`--replica-name`, or the host's).
    pub name: String,
    /// Live agent sessions at its last lease renewal.
    pub sessions: u64,
    /// Its last lease renewal, RFC 3339.
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// When it started, RFC 3339.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// It is stopping: it takes no new sessions.
    pub draining: bool,
    /// The replica that answered.
    pub this: bool,
}

/// `GET /replicas`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReplicaList {
    /// The live replicas.
    pub replicas: Vec<ReplicaView>,
}

/// `GET /replicas`: replicas whose lease holds, with their session counts.
#[utoipa::path(
    get,
    path = "/replicas",
    tag = "replicas",
    operation_id = "list_replicas",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The live replicas; `sessions` as of each one's last lease renewal, `this` marks the one that answered", body = ReplicaList),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not the platform admin", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(State(s): State<AppState>, p: Principal) -> Result<Json<ReplicaList>, ApiError> {
    p.require(Role::PlatformAdmin, "list control-plane replicas")?;
    let now_ms = s.clock.now_ms();
    let replicas = s
        .store
        .list_replicas(now_ms)
        .await?
        .into_iter()
        .map(|r| ReplicaView {
            this: r.name == s.fleet.replica(),
            sessions: r.sessions,
            last_seen: super::rfc3339_ms(r.last_seen_ms),
            started_at: super::rfc3339_ms(r.started_ms),
            draining: r.draining,
            name: r.name,
        })
        .collect();
    Ok(Json(ReplicaList { replicas }))
}
