//! Tenants and their API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tether_shared::names::validate_dns1123_label;
use tether_shared::tokens;

use super::auth::Principal;
use super::error::ApiError;
use super::json::ApiJson;
use super::rfc3339;
use crate::authz::Role;
use crate::state::AppState;
use crate::store::Tenant;

/// `POST /tenants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// A DNS-1123 label, unique.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", max_length = 63)]
    name: String,
    /// The AWS account (12 digits) its compute planes must run in.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{12}$")]
    aws_account_id: Option<String>,
    /// Check the agent's AWS account at enrollment (default: on; applies only when an
    /// account id is registered).
    #[serde(default)]
    account_binding: Option<bool>,
}

/// `POST /tenants/{t}/tokens` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin`, `operator` or `viewer`.
    #[schema(pattern = "^(admin|operator|viewer)$")]
    role: String,
}

/// The API form of a tenant.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Id.
    pub id: String,
    /// Name (a DNS-1123 label, unique).
    pub name: String,
    /// The AWS account its compute planes must run in, if registered.
    pub aws_account_id: Option<String>,
    /// Whether enrollment checks the agent's AWS account.
    pub account_binding: bool,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Settings for every compute plane of the tenant.
    pub settings: std::collections::BTreeMap<String, String>,
}

/// `GET /tenants`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantList {
    /// The tenants the caller may see.
    pub tenants: Vec<TenantView>,
}

/// `POST /tenants/{t}/tokens`: the token, shown once.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token's id (what audit entries name).
    pub id: String,
    /// The token itself; only its hash is stored.
    pub token: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Its tenant.
    pub tenant_id: String,
}

fn tenant_view(t: &Tenant) -> TenantView {
    TenantView {
        id: t.id.clone(),
        name: t.name.clone(),
        aws_account_id: t.aws_account_id.clone(),
        account_binding: t.account_binding && t.aws_account_id.is_some(),
        created_at: rfc3339(t.created_at),
        settings: t.settings.clone(),
    }
}

/// `GET /tenants`: all tenants for the platform admin, one's own otherwise.
#[utoipa::path(
    get,
    path = "/tenants",
    tag = "tenants",
    operation_id = "list_tenants",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenants the caller may see", body = TenantList),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(State(s): State<AppState>, p: Principal) -> Result<Json<TenantList>, ApiError> {
    let all = s.store.list_tenants().await?;
    let tenants = all
        .iter()
        .filter(|t| p.can_see(&t.id))
        .map(tenant_view)
        .collect();
    Ok(Json(TenantList { tenants }))
}

/// `POST /tenants` (platform admin).
#[utoipa::path(
    post,
    path = "/tenants",
    tag = "tenants",
    operation_id = "create_tenant",
    security(("bearer" = [])),
    request_body(
        content = CreateTenant,
        content_type = "application/json",
        description = "`{\"name\": DNS-1123 label, \"aws_account_id\"?: 12 digits}`"
    ),
    responses(
        (status = 201, description = "The tenant", body = TenantView),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not the platform admin", body = crate::api::error::ErrorBody),
        (status = 409, description = "A tenant of that name exists", body = crate::api::error::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    p.require(Role::PlatformAdmin, "create tenants")?;
    validate_dns1123_label(&body.name).map_err(|e| ApiError::field("name", e))?;
    if let Some(acct) = &body.aws_account_id
        && (acct.len() != 12 || !acct.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(ApiError::field("aws_account_id", "must be 12 digits"));
    }
    let t = s
        .store
        .create_tenant(
            &body.name,
            body.aws_account_id.as_deref(),
            body.account_binding.unwrap_or(true),
            s.clock.now(),
        )
        .await?;
    tracing::info!(tenant = %t.id, name = %t.name, by = %p.token_id, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant_view(&t))))
}

/// `POST /tenants/{t}/tokens` (tenant admin or platform admin): a new API token, shown
/// once; only its hash is stored.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/tokens",
    tag = "tenants",
    operation_id = "create_api_token",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(
        content = CreateToken,
        content_type = "application/json",
        description = "`{\"role\": \"admin\" | \"operator\" | \"viewer\"}`"
    ),
    responses(
        (status = 201, description = "The token, shown once", body = CreatedToken),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn create_token(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    p.see(&tenant, "tenant")?;
    let t = s
        .store
        .get_tenant(&tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    p.require(Role::Admin, "create API tokens")?;
    let role = match Role::parse(&body.role) {
        Some(r @ (Role::Admin | Role::Operator | Role::Viewer)) => r,
        _ => {
            return Err(ApiError::field(
                "role",
                "must be one of admin, operator, viewer",
            ));
        }
    };
    let token = tokens::generate(tokens::API_TOKEN_PREFIX);
    let stored = s
        .store
        .create_api_token(Some(&t.id), role, &tokens::hash(&token), s.clock.now())
        .await?;
    tracing::info!(tenant = %t.id, token_id = %stored.id, role = role.as_str(), by = %p.token_id, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: stored.id,
            token,
            role: role.as_str().to_owned(),
            tenant_id: t.id,
        }),
    ))
}

/// `PUT /tenants/{t}/settings`: what changed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantSettingsView {
    /// The tenant's settings, as stored.
    pub settings: std::collections::BTreeMap<String, String>,
    /// How many compute planes now have a new generation.
    pub compute_planes: u64,
    /// Live sessions sent the new document at once.
    pub pushed: u64,
}

/// `PUT /tenants/{t}/settings` (tenant admin or platform admin): settings for every
/// compute plane of the tenant — one change that reaches all its agents. A compute
/// plane's own settings (`PUT /compute-planes/{cp}/settings`) override them key by key.
#[utoipa::path(
    put,
    path = "/tenants/{tenant}/settings",
    tag = "tenants",
    operation_id = "put_tenant_settings",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(
        content = super::compute_planes::Settings,
        content_type = "application/json",
        description = "`{\"query_text_redaction\"?: \"redacted\" (default) | \"full\" | \"none\"}`"
    ),
    responses(
        (status = 200, description = "The settings as stored, and how far the change reached", body = TenantSettingsView),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn put_settings(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<super::compute_planes::Settings>,
) -> Result<Json<TenantSettingsView>, ApiError> {
    p.see(&tenant, "tenant")?;
    p.require(Role::Admin, "change tenant settings")?;
    let settings = body.validated()?;
    let t0 = std::time::Instant::now();
    let n = s.store.put_tenant_settings(&tenant, &settings).await?;
    let written = t0.elapsed();
    let pushed = crate::desired::push_tenant(&s, &tenant).await?;
    tracing::info!(
        %tenant, compute_planes = n, pushed, settings = ?settings, by = %p.token_id,
        write_ms = written.as_millis() as u64, push_ms = (t0.elapsed() - written).as_millis() as u64,
        "tenant settings changed"
    );
    Ok(Json(TenantSettingsView {
        settings,
        compute_planes: n as u64,
        pushed: pushed as u64,
    }))
}
