//! The audit trail: [`record`] authenticates every API request once and appends an entry
//! for every mutating one (and the dashboard appends its sign-ins and form posts through
//! [`append`]); `GET /audit-log` reads it.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

use super::auth::{Authenticated, Principal, bearer};
use super::error::ApiError;
use crate::authz::Role;
use crate::state::AppState;
use crate::store::{AuditEntry, AuditFilter, AuditResult};

/// What the audit entry of a request says about where it came from.
pub struct Origin<'a> {
    /// `api` or `dashboard`.
    pub via: &'static str,
    /// The client's address.
    pub client_addr: String,
    /// The caller, if authenticated.
    pub principal: Option<&'a Principal>,
    /// The person, when known without a principal (a refused sign-in names who tried).
    pub user: Option<String>,
}

/// The client's address from the connection, `unknown` when served without one (tests).
pub fn client_addr(req_extensions: &axum::http::Extensions) -> String {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// The tenant a path acts on: `/tenants/{t}/…` directly, `/compute-planes/{cp}/…` through
/// the compute plane. Only a tenant the caller may see is named, so an entry never lands in
/// another tenant's log because someone probed it; otherwise the caller's own tenant.
pub async fn tenant_of(
    state: &AppState,
    path: &str,
    principal: Option<&Principal>,
) -> Option<String> {
    let mut seg = path.trim_start_matches('/').split('/');
    let named = match (seg.next(), seg.next()) {
        (Some("tenants"), Some(t)) if !t.is_empty() => Some(t.to_owned()),
        (Some("compute-planes"), Some(cp)) if !cp.is_empty() => state
            .store
            .get_compute_plane(cp)
            .await
            .ok()
            .flatten()
            .map(|c| c.tenant_id),
        _ => None,
    };
    match (named, principal) {
        (Some(t), Some(p)) if p.can_see(&t) => Some(t),
        (_, Some(p)) => p.tenant_id.clone(),
        (_, None) => None,
    }
}

/// Appends one entry; a failure to write is logged loudly (the action itself has happened).
pub async fn append(
    state: &AppState,
    origin: Origin<'_>,
    tenant_id: Option<String>,
    action: String,
    target: String,
    status: u16,
) {
    // Bounded: the path comes from the caller, who may not even be signed in.
    let mut target = target;
    if target.len() > 512 {
        let mut cut = 512;
        while !target.is_char_boundary(cut) {
            cut -= 1;
        }
        target.truncate(cut);
        target.push('…');
    }
    let entry = AuditEntry {
        id: 0,
        at_ms: state.clock.now_ms(),
        token_id: origin.principal.map(|p| p.token_id.clone()),
        role: origin.principal.map(|p| p.role.as_str().to_owned()),
        tenant_id,
        action,
        target,
        result: AuditResult::of_status(status),
        status,
        client_addr: origin.client_addr,
        via: origin.via.to_owned(),
        user: origin
            .principal
            .and_then(|p| p.user.clone())
            .or(origin.user),
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(action = %entry.action, target = %entry.target, "AUDIT ENTRY NOT WRITTEN: {e}");
    }
}

/// Middleware on the API routes: resolves the bearer token once (handlers read it from
/// the extensions), and records every mutating call with its outcome.
pub async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match bearer(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    req.extensions_mut()
        .insert(Authenticated(principal.clone()));
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !mutating {
        return next.run(req).await;
    }
    let path = req.uri().path().trim_start_matches("/api/v1").to_owned();
    let route = req.extensions().get::<MatchedPath>().map_or_else(
        || path.clone(),
        |m| m.as_str().trim_start_matches("/api/v1").to_owned(),
    );
    let action = format!("{} {route}", req.method());
    let client = client_addr(req.extensions());
    let response = next.run(req).await;
    let tenant = tenant_of(&state, &path, principal.as_ref()).await;
    append(
        &state,
        Origin {
            via: "api",
            client_addr: client,
            principal: principal.as_ref(),
            user: None,
        },
        tenant,
        action,
        path,
        response.status().as_u16(),
    )
    .await;
    response
}

/// One audited action.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    /// Id (also the paging cursor).
    pub id: i64,
    /// When, RFC 3339.
    #[schema(format = DateTime)]
    pub at: Option<String>,
    /// The API token that acted (a person's session has one too).
    pub token_id: Option<String>,
    /// The person, `alice@example.com via oidc`, when the caller is one.
    pub user: Option<String>,
    /// The caller's role.
    pub role: Option<String>,
    /// The tenant acted on.
    pub tenant_id: Option<String>,
    /// `METHOD /path/{template}` or `sign-in`, `sign-out`.
    pub action: String,
    /// The concrete path.
    pub target: String,
    /// How it ended.
    pub result: AuditResult,
    /// The HTTP status.
    pub status: u16,
    /// The caller's address.
    pub client_addr: String,
    /// `api` or `dashboard`.
    pub via: String,
}

/// A page of the audit log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntryView>,
    /// Where the next page starts; none at the end.
    pub next_cursor: Option<i64>,
}

/// Query of `GET /audit-log`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    tenant: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    result: Option<AuditResult>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<i64>,
}

fn ms_param(name: &str, v: Option<&String>) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        tether_shared::timestamps::ms_from_rfc3339(s)
            .ok_or_else(|| ApiError::field(name, "must be an RFC 3339 time"))
    })
    .transpose()
}

/// `GET /audit-log` (admin): newest first. Tenant admins see their tenant's entries; the
/// platform admin sees all, or one tenant's with `tenant=`.
#[utoipa::path(
    get,
    path = "/audit-log",
    tag = "audit",
    operation_id = "audit_log",
    security(("bearer" = [])),
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant's entries (platform admin; a tenant admin may only name their own)"),
        ("actor" = Option<String>, Query, description = "Only entries of this API token id"),
        ("action" = Option<String>, Query, description = "Only this action, e.g. `PUT /compute-planes/{cp}/clusters/{name}`"),
        ("result" = Option<crate::store::AuditResult>, Query, description = "Only this result: `ok`, `denied`, `rejected` or `error`"),
        ("since" = Option<String>, Query, format = DateTime, description = "Earliest time, RFC 3339"),
        ("until" = Option<String>, Query, format = DateTime, description = "Latest time, RFC 3339"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of entries, newest first", body = AuditPage),
        (status = 400, description = "Invalid parameter", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "`tenant` names another tenant than the caller's", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        field: None,
    })?;
    p.require(Role::Admin, "read the audit log")?;
    let tenant_id = match (&p.tenant_id, q.tenant) {
        (Some(own), Some(asked)) if *own != asked => return Err(ApiError::NotFound("tenant")),
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let filter = AuditFilter {
        tenant_id,
        token_id: q.actor,
        action: q.action,
        result: q.result,
        since_ms: ms_param("since", q.since.as_ref())?,
        until_ms: ms_param("until", q.until.as_ref())?,
        limit: match q.limit {
            None => 100,
            Some(n @ 1..=1000) => n,
            Some(_) => return Err(ApiError::field("limit", "must be between 1 and 1000")),
        },
        cursor: q.cursor,
    };
    let (entries, next) = s.store.audit_log(&filter).await?;
    let entries = entries
        .iter()
        .map(|e| AuditEntryView {
            id: e.id,
            at: tether_shared::timestamps::rfc3339_from_ms(e.at_ms),
            token_id: e.token_id.clone(),
            user: e.user.clone(),
            role: e.role.clone(),
            tenant_id: e.tenant_id.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            result: e.result,
            status: e.status,
            client_addr: e.client_addr.clone(),
            via: e.via.clone(),
        })
        .collect();
    Ok(Json(AuditPage {
        entries,
        next_cursor: next,
    }))
}
