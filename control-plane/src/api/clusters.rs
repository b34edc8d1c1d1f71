//! Presto clusters: `PUT|GET|DELETE /compute-planes/{cp}/clusters/{name}` and the list.
//! Every change bumps the compute plane's generation and is pushed to its agent; GET shows
//! the spec beside what the agent observed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tether_shared::spec::{ClusterSpec, validate_cluster_name};
use tether_shared::status::{ClusterStatus, Phase};

use super::auth::Principal;
use super::compute_planes::visible_cp;
use super::error::ApiError;
use super::json::ApiJson;
use crate::authz::Role;
use crate::state::AppState;
use crate::store::{ClusterRow, DesiredStateConflict};

/// The API form of a cluster. `generation` is the compute plane's desired generation and
/// `observed_generation` the one the agent last reconciled this cluster at, so the two
/// are equal exactly when the agent has caught up.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// Name.
    pub name: String,
    /// The desired spec.
    pub spec: ClusterSpec,
    /// The compute plane's desired generation.
    pub generation: i64,
    /// The generation the agent last reconciled this cluster at.
    pub observed_generation: i64,
    /// What the agent observed, with the phase the control plane knows better.
    pub status: ClusterStatus,
}

/// `GET /compute-planes/{cp}/clusters`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterList {
    /// Every cluster, deleted ones while the agent removes them.
    pub clusters: Vec<ClusterView>,
    /// The compute plane's desired generation.
    pub generation: i64,
}

/// The view of a cluster row.
pub fn cluster_view(row: &ClusterRow, generation: i64) -> ClusterView {
    let mut status = row
        .status
        .clone()
        .unwrap_or_else(|| ClusterStatus::pending(row.spec.workers.initial()));
    if row.deleted_generation.is_some() {
        status.phase = Phase::Deleting;
    } else if row
        .status
        .as_ref()
        .is_some_and(|r| r.phase != Phase::Failed)
        && row.observed_generation < row.generation
    {
        // The agent has not reconciled the latest spec of this cluster yet.
        status.phase = Phase::Applying;
    }
    ClusterView {
        name: row.name.clone(),
        spec: row.spec.clone(),
        generation,
        observed_generation: row.observed_generation,
        status,
    }
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    validate_cluster_name(name).map_err(|e| ApiError::field("name", e.message))
}

/// `GET /compute-planes/{cp}/clusters`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/clusters",
    tag = "clusters",
    operation_id = "list_clusters",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 200, description = "Every cluster of the compute plane", body = ClusterList),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<ClusterList>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let rows = s.store.list_clusters(&cp.id).await?;
    let clusters = rows
        .iter()
        .map(|r| cluster_view(r, cp.generation))
        .collect();
    Ok(Json(ClusterList {
        clusters,
        generation: cp.generation,
    }))
}

/// `GET /compute-planes/{cp}/clusters/{name}`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/clusters/{name}",
    tag = "clusters",
    operation_id = "get_cluster",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = String, Path, description = "Cluster name"),
    ),
    responses(
        (status = 200, description = "The cluster, its spec beside what the agent observed", body = ClusterView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane or cluster", body = crate::api::error::ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
) -> Result<Json<ClusterView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let row = s
        .store
        .get_cluster(&cp.id, &name)
        .await?
        .ok_or(ApiError::NotFound("cluster"))?;
    Ok(Json(cluster_view(&row, cp.generation)))
}

/// `PUT /compute-planes/{cp}/clusters/{name}` (operator): create or replace.
#[utoipa::path(
    put,
    path = "/compute-planes/{cp}/clusters/{name}",
    tag = "clusters",
    operation_id = "put_cluster",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = String, Path, description = "Cluster name (DNS-1123 label)"),
    ),
    request_body(
        content = tether_shared::spec::ClusterSpec,
        content_type = "application/json",
        description = "The cluster spec: `{\"presto_version\": string, \"workers\": {\"count\": n} | {\"min\": n, \"max\": n, \"target_cpu_percent\"?: n}, \"catalogs\"?: [catalog name], \"coordinator\"?: {\"cpu\", \"memory\"}, \"worker\"?: {\"cpu\", \"memory\"}, \"hive_metastore\"?: {\"enabled\", \"warehouse\"}, \"node_selector\"?: {label: value}, \"tolerations\"?: [{\"key\", \"operator\", \"value\", \"effect\"}]}`"
    ),
    responses(
        (status = 200, description = "The cluster as written (created or replaced)", body = ClusterView),
        (status = 400, description = "Invalid spec or unknown catalog; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below operator", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<ClusterSpec>,
) -> Result<Json<ClusterView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Operator, "change clusters")?;
    validate_name(&name)?;
    spec.validate()?;
    let generation = match s
        .store
        .put_cluster(&cp.id, &name, &spec, s.clock.now())
        .await?
    {
        Ok(g) => g,
        Err(DesiredStateConflict::UnknownCatalog(i, c)) => {
            return Err(ApiError::field(
                &format!("catalogs[{i}]"),
                format!("catalog {c:?} does not exist in this compute plane"),
            ));
        }
        Err(other) => return Err(ApiError::Internal(format!("{other:?}"))),
    };
    tracing::info!(compute_plane = %cp.id, cluster = %name, generation, by = %p.token_id, "cluster written");
    crate::desired::push(&s, &cp.id).await;
    let row = s
        .store
        .get_cluster(&cp.id, &name)
        .await?
        .ok_or(ApiError::NotFound("cluster"))?;
    Ok(Json(cluster_view(&row, generation)))
}

/// `DELETE /compute-planes/{cp}/clusters/{name}` (operator): the agent removes every object
/// of the cluster; GET shows `Deleting` until it has.
#[utoipa::path(
    delete,
    path = "/compute-planes/{cp}/clusters/{name}",
    tag = "clusters",
    operation_id = "delete_cluster",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = String, Path, description = "Cluster name"),
    ),
    responses(
        (status = 202, description = "Deletion accepted; the cluster shows phase `Deleting` until the agent has removed it", body = ClusterView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below operator", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane or cluster", body = crate::api::error::ErrorBody),
    )
)]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ClusterView>), ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Operator, "delete clusters")?;
    let before = s.store.get_cluster(&cp.id, &name).await?;
    let generation = s
        .store
        .delete_cluster(&cp.id, &name, s.clock.now())
        .await?
        .ok_or(ApiError::NotFound("cluster"))?;
    tracing::info!(compute_plane = %cp.id, cluster = %name, generation, by = %p.token_id, "cluster deleted");
    crate::desired::push(&s, &cp.id).await;
    // The row as it is now; if the agent has already removed it (it forgets a cluster once
    // its objects are gone), the row as it was, marked deleted.
    let mut row = match s.store.get_cluster(&cp.id, &name).await? {
        Some(row) => row,
        None => before.ok_or(ApiError::NotFound("cluster"))?,
    };
    row.deleted_generation.get_or_insert(generation);
    Ok((StatusCode::ACCEPTED, Json(cluster_view(&row, generation))))
}
