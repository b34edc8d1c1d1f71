//! Presto clusters: `PUT|GET|DELETE /compute-planes/{cp}/clusters/{name}` and the list.
//! Every change bumps the compute plane's generation and is pushed to its agent; GET shows
//! the spec beside what the agent observed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tether_shared::spec::{ClusterSpec, validate_cluster_name};

use super::auth::Principal;
use super::compute_planes::visible_cp;
use super::error::ApiError;
use super::json::ApiJson;
use crate::state::AppState;
use crate::store::{ClusterRow, DesiredStateConflict, Role};

/// The API form of a cluster. `generation` is the compute plane's desired generation and
/// `observed_generation` the one the agent last reconciled this cluster at, so the two
/// are equal exactly when the agent has caught up.
pub fn cluster_json(row: &ClusterRow, generation: i64) -> Value {
    let spec: Value = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
    let reported: Option<Value> = row
        .status
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    let desired_workers = serde_json::from_str::<ClusterSpec>(&row.spec)
        .map(|s| s.workers.initial())
        .unwrap_or(0);
    let mut status = reported.clone().unwrap_or_else(|| {
        json!({
            "phase": "Pending",
            "coordinator_ready": false,
            "ready_workers": 0,
            "desired_workers": desired_workers,
            "endpoint": null,
            "conditions": [],
            "last_error": null,
        })
    });
    let phase = if row.deleted_generation.is_some() {
        Some("Deleting")
    } else if reported.as_ref().is_some_and(|r| r["phase"] != "Failed")
        && row.observed_generation < row.generation
    {
        // The agent has not reconciled the latest spec of this cluster yet.
        Some("Applying")
    } else {
        None
    };
    if let (Some(p), Some(obj)) = (phase, status.as_object_mut()) {
        obj.insert("phase".into(), Value::String(p.into()));
    }
    json!({
        "name": row.name,
        "spec": spec,
        "generation": generation,
        "observed_generation": row.observed_generation,
        "status": status,
    })
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
        (status = 200, description = "`{\"clusters\": [cluster], \"generation\"}`", body = serde_json::Value),
        (status = 401, description = "No or unknown API token"),
        (status = 404, description = "No such compute plane visible to the caller"),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let rows = s.store.list_clusters(&cp.id).await?;
    let clusters: Vec<Value> = rows
        .iter()
        .map(|r| cluster_json(r, cp.generation))
        .collect();
    Ok(Json(
        json!({ "clusters": clusters, "generation": cp.generation }),
    ))
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
        (status = 200, description = "The cluster, its spec beside what the agent observed: `{\"name\", \"spec\", \"generation\", \"observed_generation\", \"status\": {\"phase\", \"coordinator_ready\", \"ready_workers\", \"desired_workers\", \"endpoint\", \"conditions\", \"last_error\"}}`", body = serde_json::Value),
        (status = 401, description = "No or unknown API token"),
        (status = 404, description = "No such compute plane or cluster"),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let row = s
        .store
        .get_cluster(&cp.id, &name)
        .await?
        .ok_or(ApiError::NotFound("cluster"))?;
    Ok(Json(cluster_json(&row, cp.generation)))
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
        content = serde_json::Value,
        content_type = "application/json",
        description = "The cluster spec: `{\"presto_version\": string, \"workers\": {\"count\": n} | {\"min\": n, \"max\": n, \"target_cpu_percent\"?: n}, \"catalogs\"?: [catalog name], \"coordinator\"?: {\"cpu\", \"memory\"}, \"worker\"?: {\"cpu\", \"memory\"}, \"hive_metastore\"?: {\"enabled\", \"warehouse\"}, \"node_selector\"?: {label: value}, \"tolerations\"?: [{\"key\", \"operator\", \"value\", \"effect\"}]}`"
    ),
    responses(
        (status = 200, description = "The cluster as written (created or replaced): `{\"name\", \"spec\", \"generation\", \"observed_generation\", \"status\": {\"phase\", \"coordinator_ready\", \"ready_workers\", \"desired_workers\", \"endpoint\", \"conditions\", \"last_error\"}}`", body = serde_json::Value),
        (status = 400, description = "Invalid spec or unknown catalog; `error.field` names the field"),
        (status = 401, description = "No or unknown API token"),
        (status = 403, description = "Role below operator"),
        (status = 404, description = "No such compute plane visible to the caller"),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<ClusterSpec>,
) -> Result<Json<Value>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Operator, "change clusters")?;
    validate_name(&name)?;
    spec.validate().map_err(|e| ApiError::BadRequest {
        message: e.to_string(),
        field: Some(e.field),
    })?;
    let text = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let generation = match s
        .store
        .put_cluster(&cp.id, &name, &text, &spec.catalogs, s.clock.now())
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
    Ok(Json(cluster_json(&row, generation)))
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
        (status = 202, description = "Deletion accepted; the cluster shows phase `Deleting` until the agent has removed it", body = serde_json::Value),
        (status = 401, description = "No or unknown API token"),
        (status = 403, description = "Role below operator"),
        (status = 404, description = "No such compute plane or cluster"),
    )
)]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Operator, "delete clusters")?;
    let generation = s
        .store
        .delete_cluster(&cp.id, &name, s.clock.now())
        .await?
        .ok_or(ApiError::NotFound("cluster"))?;
    tracing::info!(compute_plane = %cp.id, cluster = %name, generation, by = %p.token_id, "cluster deleted");
    crate::desired::push(&s, &cp.id).await;
    let body = match s.store.get_cluster(&cp.id, &name).await? {
        Some(row) => cluster_json(&row, generation),
        None => json!({"name": name, "generation": generation, "status": {"phase": "Deleting"}}),
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}
