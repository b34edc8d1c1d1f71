//! Catalogs: `PUT|GET|DELETE /compute-planes/{cp}/catalogs/{name}` and the list. A
//! catalog belongs to one compute plane and can be attached to many of its clusters.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tether_shared::names::validate_dns1123_label;
use tether_shared::spec::CatalogSpec;

use super::auth::Principal;
use super::compute_planes::visible_cp;
use super::error::ApiError;
use super::json::ApiJson;
use crate::authz::Role;
use crate::state::AppState;
use crate::store::{CatalogRow, DesiredStateConflict};

/// The API form of a catalog.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CatalogView {
    /// Name (the Presto catalog name).
    pub name: String,
    /// The spec.
    pub spec: CatalogSpec,
    /// The compute plane's generation when it was last written.
    pub generation: i64,
}

/// `GET /compute-planes/{cp}/catalogs`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CatalogList {
    /// Every catalog of the compute plane, by name.
    pub catalogs: Vec<CatalogView>,
}

fn catalog_view(row: &CatalogRow) -> CatalogView {
    CatalogView {
        name: row.name.clone(),
        spec: row.spec.clone(),
        generation: row.generation,
    }
}

/// `GET /compute-planes/{cp}/catalogs`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/catalogs",
    tag = "catalogs",
    operation_id = "list_catalogs",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 200, description = "Every catalog of the compute plane", body = CatalogList),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<CatalogList>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let rows = s.store.list_catalogs(&cp.id).await?;
    Ok(Json(CatalogList {
        catalogs: rows.iter().map(catalog_view).collect(),
    }))
}

/// `GET /compute-planes/{cp}/catalogs/{name}`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/catalogs/{name}",
    tag = "catalogs",
    operation_id = "get_catalog",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = String, Path, description = "Catalog name"),
    ),
    responses(
        (status = 200, description = "The catalog", body = CatalogView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane or catalog", body = crate::api::error::ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
) -> Result<Json<CatalogView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let row = s
        .store
        .get_catalog(&cp.id, &name)
        .await?
        .ok_or(ApiError::NotFound("catalog"))?;
    Ok(Json(catalog_view(&row)))
}

/// `PUT /compute-planes/{cp}/catalogs/{name}` (operator).
#[utoipa::path(
    put,
    path = "/compute-planes/{cp}/catalogs/{name}",
    tag = "catalogs",
    operation_id = "put_catalog",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = String, Path, description = "Catalog name (DNS-1123 label)"),
    ),
    request_body(
        content = tether_shared::spec::CatalogSpec,
        content_type = "application/json",
        description = "The catalog spec: `{\"connector\": \"hive\" | \"mysql\" | \"postgresql\", \"properties\"?: {name: value} from the connector's allow-list, \"credentials\"?: {\"secret_ref\": \"arn:aws:secretsmanager:...\" | \"k8s:NAME\"}}`"
    ),
    responses(
        (status = 200, description = "The catalog as written (created or replaced)", body = CatalogView),
        (status = 400, description = "Invalid spec; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below operator", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<CatalogSpec>,
) -> Result<Json<CatalogView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Operator, "change catalogs")?;
    validate_dns1123_label(&name).map_err(|e| ApiError::field("name", e))?;
    spec.validate()?;
    super::presto_access::check_catalog_change(&s, &cp.id, &name, Some(&spec)).await?;
    let generation = s
        .store
        .put_catalog(&cp.id, &name, &spec, s.clock.now())
        .await?;
    tracing::info!(compute_plane = %cp.id, catalog = %name, generation, by = %p.token_id, "catalog written");
    crate::desired::push(&s, &cp.id).await;
    let row = s
        .store
        .get_catalog(&cp.id, &name)
        .await?
        .ok_or(ApiError::NotFound("catalog"))?;
    Ok(Json(catalog_view(&row)))
}

/// `DELETE /compute-planes/{cp}/catalogs/{name}` (operator): refused while attached.
#[utoipa::path(
    delete,
    path = "/compute-planes/{cp}/catalogs/{name}",
    tag = "catalogs",
    operation_id = "delete_catalog",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = String, Path, description = "Catalog name"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below operator", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane or catalog", body = crate::api::error::ErrorBody),
        (status = 409, description = "The catalog is attached to clusters, or has table rules in the presto access; detach it or remove them first", body = crate::api::error::ErrorBody),
    )
)]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Operator, "delete catalogs")?;
    super::presto_access::check_catalog_change(&s, &cp.id, &name, None).await?;
    match s.store.delete_catalog(&cp.id, &name).await? {
        Ok(Some(generation)) => {
            tracing::info!(compute_plane = %cp.id, catalog = %name, generation, by = %p.token_id, "catalog deleted");
            crate::desired::push(&s, &cp.id).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(None) => Err(ApiError::NotFound("catalog")),
        Err(DesiredStateConflict::CatalogInUse(users)) => Err(ApiError::Conflict(format!(
            "catalog {name:?} is attached to clusters {}; detach it first",
            users.join(", ")
        ))),
        Err(other) => Err(ApiError::Internal(format!("{other:?}"))),
    }
}
