//! A tenant's identity provider and its users (see [`crate::identity`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Principal;
use super::error::ApiError;
use super::json::ApiJson;
use super::rfc3339;
use crate::authz::Role;
use crate::identity::{self, ProviderInput};
use crate::state::AppState;
use crate::store::Tenant;

/// The tenant, if the caller may see it and is its admin.
async fn admin_of(
    s: &AppState,
    p: &Principal,
    tenant: &str,
    action: &str,
) -> Result<Tenant, ApiError> {
    p.see(tenant, "tenant")?;
    let t = s
        .store
        .get_tenant(tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    p.require(Role::Admin, action)?;
    Ok(t)
}

async fn secret_stored(s: &AppState, tenant_id: &str) -> Result<bool, ApiError> {
    Ok(s.secrets
        .get(&identity::secret_name(tenant_id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .is_some())
}

/// `PUT /tenants/{t}/identity-provider` (tenant admin): how the tenant's people sign in.
#[utoipa::path(
    put,
    path = "/tenants/{tenant}/identity-provider",
    tag = "tenants",
    operation_id = "put_identity_provider",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(
        content = ProviderInput,
        content_type = "application/json",
        description = "`{\"kind\": \"oidc\", \"issuer\": URL, \"client_id\", \"client_secret\", \"groups_claim\"?: \"groups\", \"role_mapping\": {GROUP: \"admin\"|\"operator\"|\"viewer\"}}` or `{\"kind\": \"ldap\", \"url\": \"ldaps://…\" | \"ldap://…\" (with `start_tls`), \"start_tls\"?, \"ca_pem\"?, \"user_dn_template\": \"uid={username},…\", \"group_base_dn\", \"group_filter\"?: \"(member={user_dn})\", \"bind_dn\"?, \"bind_password\"?, \"role_mapping\"}`. A secret left out keeps the stored one."
    ),
    responses(
        (status = 200, description = "The configuration as stored, without its secret: `client_secret_set` / `bind_password_set` say whether one is stored", body = identity::ProviderView),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<ProviderInput>,
) -> Result<Json<identity::ProviderView>, ApiError> {
    let t = admin_of(&s, &p, &tenant, "configure the identity provider").await?;
    let had_secret = secret_stored(&s, &t.id).await?;
    let old = s.store.identity_provider(&t.id).await?;
    let (config, secret) = body.validate(true, s.identity.allow_loopback)?;
    // A stored secret is kept only for the same endpoint (see `same_endpoint`).
    let keeps = had_secret && old.as_ref().is_some_and(|o| o.same_endpoint(&config));
    if secret.is_none() && config.needs_secret() && !keeps {
        let field = match config.via() {
            identity::Via::Oidc => "client_secret",
            identity::Via::Ldap => "bind_password",
        };
        return Err(ApiError::field(
            field,
            "is required (again whenever the issuer, client, directory or service account changes)",
        ));
    }
    let now = s.clock.now();
    match &secret {
        Some(secret) => s
            .secrets
            .put(&identity::secret_name(&t.id), secret.as_bytes(), now)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        None if !keeps || !config.needs_secret() => {
            s.store.delete_secret(&identity::secret_name(&t.id)).await?
        }
        None => {}
    }
    s.store.put_identity_provider(&t.id, &config, now).await?;
    tracing::info!(tenant = %t.id, kind = config.via().as_str(), by = %p.who(), "identity provider set");
    let stored = secret.is_some() || (keeps && config.needs_secret());
    Ok(Json(config.public_view(stored)))
}

/// `GET /tenants/{t}/identity-provider` (tenant admin).
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/identity-provider",
    tag = "tenants",
    operation_id = "get_identity_provider",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The configuration without its secret", body = identity::ProviderView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller, or no identity provider", body = crate::api::error::ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<identity::ProviderView>, ApiError> {
    let t = admin_of(&s, &p, &tenant, "read the identity provider").await?;
    let config = s
        .store
        .identity_provider(&t.id)
        .await?
        .ok_or(ApiError::NotFound("identity provider"))?;
    Ok(Json(config.public_view(secret_stored(&s, &t.id).await?)))
}

/// `DELETE /tenants/{t}/identity-provider` (tenant admin): its people can no longer sign
/// in, and their sessions and personal tokens end now.
#[utoipa::path(
    delete,
    path = "/tenants/{tenant}/identity-provider",
    tag = "tenants",
    operation_id = "delete_identity_provider",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller, or no identity provider", body = crate::api::error::ErrorBody),
    )
)]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    let t = admin_of(&s, &p, &tenant, "remove the identity provider").await?;
    if !s
        .store
        .delete_identity_provider(&t.id, s.clock.now())
        .await?
    {
        return Err(ApiError::NotFound("identity provider"));
    }
    s.store.delete_secret(&identity::secret_name(&t.id)).await?;
    tracing::info!(tenant = %t.id, by = %p.who(), "identity provider removed");
    Ok(StatusCode::NO_CONTENT)
}

/// A person who signed in.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Their name as the provider gave it (e-mail, or the directory's user name).
    pub name: String,
    /// How they signed in.
    pub via: identity::Via,
    /// The provider's subject (`sub`, or the user's DN).
    pub subject: String,
    /// Their role at the last sign-in.
    pub role: Role,
    /// First sign-in, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last sign-in, RFC 3339.
    #[schema(format = DateTime)]
    pub last_sign_in_at: String,
}

/// `GET /tenants/{t}/users`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserList {
    /// Everyone who signed in to the tenant.
    pub users: Vec<UserView>,
}

/// `GET /tenants/{t}/users` (tenant admin): who signed in, how, with which role, when last.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/users",
    tag = "tenants",
    operation_id = "list_users",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Everyone who signed in to the tenant", body = UserList),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn users(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<UserList>, ApiError> {
    let t = admin_of(&s, &p, &tenant, "list users").await?;
    let users = s
        .store
        .list_users(&t.id)
        .await?
        .iter()
        .map(|u| UserView {
            id: u.id.clone(),
            name: u.name.clone(),
            via: u.via,
            subject: u.subject.clone(),
            role: u.role,
            created_at: rfc3339(u.created_at),
            last_sign_in_at: rfc3339(u.last_sign_in_at),
        })
        .collect();
    Ok(Json(UserList { users }))
}
