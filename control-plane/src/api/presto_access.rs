//! Who may query a compute plane's Presto clusters and what they may read:
//! `PUT|GET|DELETE /compute-planes/{cp}/presto-access`. One document for every cluster of
//! the compute plane, sent with the desired state; the agent renders it into Presto's own
//! LDAP password authenticator and file-based access control (see
//! `tether_shared::spec::PrestoAccess`). It holds no password: Presto binds to the
//! customer's directory with the user's own, and a service account is a Secret in the VPC.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tether_shared::spec::{PrestoAccess, validate_table_rules_catalog};

use super::auth::Principal;
use super::compute_planes::visible_cp;
use super::error::ApiError;
use super::json::ApiJson;
use crate::authz::Role;
use crate::state::AppState;

/// The compute plane's Presto access document and the generation it is part of.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PrestoAccessView {
    /// The document.
    pub presto_access: PrestoAccess,
    /// The desired state's generation.
    pub generation: i64,
}

/// `GET /compute-planes/{cp}/presto-access`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/presto-access",
    tag = "compute-planes",
    operation_id = "get_presto_access",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 200, description = "The document and its generation", body = PrestoAccessView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller, or no document set", body = crate::api::error::ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<PrestoAccessView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let stored = s.store.desired_state(&cp.id).await?;
    let access = stored
        .presto_access
        .ok_or(ApiError::NotFound("presto access"))?;
    Ok(Json(PrestoAccessView {
        presto_access: access,
        generation: stored.generation,
    }))
}

/// `PUT /compute-planes/{cp}/presto-access` (admin).
#[utoipa::path(
    put,
    path = "/compute-planes/{cp}/presto-access",
    tag = "compute-planes",
    operation_id = "put_presto_access",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    request_body(
        content = PrestoAccess,
        content_type = "application/json",
        description = "`{\"authentication\"?: {\"kind\": \"none\"} | {\"kind\": \"ldap\", \"url\": \"ldaps://HOST[:PORT]\", \"user_bind_pattern\": \"uid=${USER},ou=...\", \"ca_pem\"?: PEM, \"ca_ref\"?: \"k8s:CONFIGMAP\", \"user_base_dn\"?, \"group_auth_pattern\"?, \"bind_secret_ref\"?: \"k8s:SECRET\"}, \"rules\"?: {\"catalogs\": [{\"user\"?: REGEX, \"catalog\"?: REGEX, \"allow\": \"all\" | \"read-only\" | \"none\"}], \"schemas\"?: [{\"user\"?, \"schema\"?, \"owner\": bool}]}, \"table_rules\"?: {HIVE_CATALOG: [{\"user\"?, \"schema\"?, \"table\"?, \"privileges\": [\"SELECT\" | \"INSERT\" | \"DELETE\" | \"OWNERSHIP\" | \"GRANT_SELECT\"]}]}, \"tls\"?: {\"certificate_ref\": \"k8s:TLS_SECRET\"}}`"
    ),
    responses(
        (status = 200, description = "The document and its generation", body = PrestoAccessView),
        (status = 400, description = "Invalid document; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    ApiJson(access): ApiJson<PrestoAccess>,
) -> Result<Json<PrestoAccessView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "change who may query Presto")?;
    access.validate()?;
    let catalogs = s.store.list_catalogs(&cp.id).await?;
    for name in access.table_rules.keys() {
        let spec = catalogs.iter().find(|c| &c.name == name).map(|c| &c.spec);
        validate_table_rules_catalog(name, spec)?;
    }
    let generation = s.store.put_presto_access(&cp.id, Some(&access)).await?;
    tracing::info!(compute_plane = %cp.id, generation, by = %p.token_id, "presto access written");
    crate::desired::push(&s, &cp.id).await;
    Ok(Json(PrestoAccessView {
        presto_access: access,
        generation,
    }))
}

/// `DELETE /compute-planes/{cp}/presto-access` (admin): back to Presto's defaults (no
/// authentication, every catalog open).
#[utoipa::path(
    delete,
    path = "/compute-planes/{cp}/presto-access",
    tag = "compute-planes",
    operation_id = "delete_presto_access",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller, or no document set", body = crate::api::error::ErrorBody),
    )
)]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<StatusCode, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "change who may query Presto")?;
    if s.store.desired_state(&cp.id).await?.presto_access.is_none() {
        return Err(ApiError::NotFound("presto access"));
    }
    let generation = s.store.put_presto_access(&cp.id, None).await?;
    tracing::info!(compute_plane = %cp.id, generation, by = %p.token_id, "presto access removed");
    crate::desired::push(&s, &cp.id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A catalog change the compute plane's table rules forbid: deleting a catalog they name,
/// or turning it into a connector without Hive's file-based security. Checked before the
/// write, so the agent never receives a document it must refuse.
pub(crate) async fn check_catalog_change(
    s: &AppState,
    cp: &str,
    name: &str,
    new_spec: Option<&tether_shared::spec::CatalogSpec>,
) -> Result<(), ApiError> {
    let Some(access) = s.store.desired_state(cp).await?.presto_access else {
        return Ok(());
    };
    if !access.table_rules.contains_key(name) {
        return Ok(());
    }
    match new_spec {
        None => Err(ApiError::Conflict(format!(
            "catalog {name:?} has table rules in this compute plane's presto access; remove them first"
        ))),
        Some(spec) => validate_table_rules_catalog(name, Some(spec)).map_err(|e| {
            ApiError::Conflict(format!(
                "{e}; remove them from this compute plane's presto access first"
            ))
        }),
    }
}
