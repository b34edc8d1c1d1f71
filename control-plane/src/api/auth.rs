//! Who is calling: the bearer token's id, tenant and role. Handlers ask two questions,
//! in this order: may the caller *see* the tenant (else 404, so tenants cannot probe for
//! each other's ids), and does the role allow the action (else 403).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::authz::Role;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id (for audit).
    pub token_id: String,
    /// The caller's tenant; `None` for the platform admin.
    pub tenant_id: Option<String>,
    /// Role.
    pub role: Role,
    /// The person, when the token is one's (`alice@example.com via oidc`).
    pub user: Option<String>,
    /// That person's user id.
    pub user_id: Option<String>,
}

impl Principal {
    /// Whether the caller may see `tenant_id`'s objects at all.
    pub fn can_see(&self, tenant_id: &str) -> bool {
        self.role == Role::PlatformAdmin || self.tenant_id.as_deref() == Some(tenant_id)
    }

    /// 404 unless the caller may see the tenant.
    pub fn see(&self, tenant_id: &str, what: &'static str) -> Result<(), ApiError> {
        if self.can_see(tenant_id) {
            Ok(())
        } else {
            Err(ApiError::NotFound(what))
        }
    }

    /// 403 unless the role is at least `needed`.
    pub fn require(&self, needed: Role, action: &str) -> Result<(), ApiError> {
        if self.role.at_least(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "role {} may not {action}; it needs {}",
                self.role.as_str(),
                needed.as_str()
            )))
        }
    }
}

/// The outcome of reading the bearer token, resolved once per request by
/// [`super::audit::record`] and kept in the request's extensions.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Option<Principal>);

impl Principal {
    /// The principal of an API token row, if the token still works at `now` (Unix
    /// seconds).
    pub fn of_token(t: crate::store::ApiToken, now: i64) -> Option<Self> {
        t.live(now).then_some(Principal {
            token_id: t.id,
            tenant_id: t.tenant_id,
            role: t.role,
            user: t.user,
            user_id: t.user_id,
        })
    }

    /// Who, for logs and pages: the person, else the token id.
    pub fn who(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| format!("token {}", self.token_id))
    }
}

/// Looks up the bearer token of `headers`; `None` when there is none, it is unknown, or
/// it expired.
pub async fn bearer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
    else {
        return Ok(None);
    };
    let found = state
        .store
        .find_api_token(&tether_shared::tokens::hash(token))
        .await?;
    Ok(found.and_then(|t| Principal::of_token(t, state.clock.now())))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Authenticated(p)) = parts.extensions.get::<Authenticated>() {
            return p.clone().ok_or(ApiError::Unauthorized);
        }
        bearer(state, &parts.headers)
            .await?
            .ok_or(ApiError::Unauthorized)
    }
}
