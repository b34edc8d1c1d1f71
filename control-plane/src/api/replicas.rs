//! `GET /replicas` (platform admin): the control plane's live replicas.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::ApiError;
use crate::authz::Role;
use crate::state::AppState;

/// `GET /replicas`: replicas whose lease holds, with their session counts.
#[utoipa::path(
    get,
    path = "/replicas",
    tag = "replicas",
    operation_id = "list_replicas",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"replicas\": [{\"name\", \"sessions\", \"last_seen\", \"started_at\", \"draining\", \"this\"}]}`: `sessions` as of the replica's last lease renewal; `this` marks the replica that answered", body = serde_json::Value),
        (status = 401, description = "No or unknown API token"),
        (status = 403, description = "Not the platform admin"),
    )
)]
pub async fn list(State(s): State<AppState>, p: Principal) -> Result<Json<Value>, ApiError> {
    p.require(Role::PlatformAdmin, "list control-plane replicas")?;
    let now_ms = s.clock.now_ms();
    let replicas: Vec<Value> = s
        .store
        .list_replicas(now_ms)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "name": r.name,
                "sessions": r.sessions,
                "last_seen": super::rfc3339_ms(r.last_seen_ms),
                "started_at": super::rfc3339_ms(r.started_ms),
                "draining": r.draining,
                "this": r.name == s.fleet.replica(),
            })
        })
        .collect();
    Ok(Json(json!({ "replicas": replicas })))
}
