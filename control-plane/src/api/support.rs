//! Support requests: ask a compute plane's agent for a diagnostic bundle, see whether it
//! came, and read it. The agent sends it only after the customer approved it in the VPC.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Principal;
use super::compute_planes::visible_cp;
use super::error::ApiError;
use super::json::ApiJson;
use crate::authz::Role;
use crate::state::AppState;
use crate::store::SupportRequestRow;

/// Default lifetime of a request: a day.
const DEFAULT_EXPIRY: u64 = 86_400;
/// Longest lifetime of a request: a week.
const MAX_EXPIRY: u64 = 7 * 86_400;
/// Longest reason.
const MAX_REASON: usize = 500;

/// `POST /compute-planes/{cp}/support-requests` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSupportRequest {
    /// Why, for the customer who approves it (1 to 500 characters).
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// How long the agent may send it: 10 to 604800 seconds (default 86400).
    #[serde(default, deserialize_with = "super::compute_planes::integral_seconds")]
    #[schema(minimum = 10, maximum = 604800)]
    pub expires_in_seconds: Option<u64>,
}

/// A support request.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SupportRequestView {
    /// Id.
    pub id: String,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
    /// Until when the agent may send it (RFC 3339).
    pub expires_at: String,
    /// `pending` (waiting for the customer's approval), `received` or `expired`.
    pub status: String,
    /// When the bundle arrived.
    pub received_at: Option<String>,
    /// Its size.
    pub bundle_bytes: Option<i64>,
}

/// A received bundle.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SupportBundleView {
    /// The request.
    pub request_id: String,
    /// Its files, as the agent sent them (redacted there).
    pub files: Vec<SupportFileView>,
}

/// One file of a bundle.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SupportFileView {
    /// Name, e.g. `doctor.txt`.
    pub name: String,
    /// Content.
    pub content: String,
}

fn ms(at: i64) -> String {
    tether_shared::timestamps::rfc3339_from_ms(at).unwrap_or_default()
}

fn view(r: &SupportRequestRow, now_ms: i64) -> SupportRequestView {
    let status = match (r.received_at_ms, r.expires_at_ms <= now_ms) {
        (Some(_), _) => "received",
        (None, true) => "expired",
        (None, false) => "pending",
    };
    SupportRequestView {
        id: r.id.clone(),
        reason: r.reason.clone(),
        requested_by: r.requested_by.clone(),
        requested_at: ms(r.requested_at_ms),
        expires_at: ms(r.expires_at_ms),
        status: status.into(),
        received_at: r.received_at_ms.map(ms),
        bundle_bytes: r.bundle_bytes,
    }
}

/// `POST /compute-planes/{cp}/support-requests` (admin): asks the agent for a diagnostic
/// bundle; it comes once the customer approved it in the VPC.
#[utoipa::path(
    post,
    path = "/compute-planes/{cp}/support-requests",
    tag = "compute-planes",
    operation_id = "create_support_request",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    request_body = CreateSupportRequest,
    responses(
        (status = 201, description = "The request, pending the customer's approval", body = SupportRequestView),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
        (status = 409, description = "Too many open requests (5) for this compute plane", body = crate::api::error::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    ApiJson(body): ApiJson<CreateSupportRequest>,
) -> Result<(StatusCode, Json<SupportRequestView>), ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "request support bundles")?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(ApiError::field(
            "reason",
            format!("must be 1 to {MAX_REASON} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(ApiError::field(
            "reason",
            "must not contain control characters",
        ));
    }
    let expiry = body.expires_in_seconds.unwrap_or(DEFAULT_EXPIRY);
    if !(10..=MAX_EXPIRY).contains(&expiry) {
        return Err(ApiError::field(
            "expires_in_seconds",
            format!("must be between 10 and {MAX_EXPIRY}"),
        ));
    }
    let now = s.clock.now_ms();
    let open = s
        .store
        .support_requests(&cp.id)
        .await?
        .iter()
        .filter(|r| crate::support::is_open(r, now))
        .count();
    if open >= crate::support::MAX_OPEN {
        return Err(ApiError::Conflict(format!(
            "{open} support requests of this compute plane are open (at most {}): wait until one is answered or expires",
            crate::support::MAX_OPEN
        )));
    }
    let row = SupportRequestRow {
        id: format!("sr-{}", uuid::Uuid::new_v4().simple()),
        compute_plane_id: cp.id.clone(),
        reason: reason.to_owned(),
        requested_by: p
            .user
            .clone()
            .unwrap_or_else(|| format!("token {}", p.token_id)),
        requested_at_ms: now,
        expires_at_ms: now + expiry as i64 * 1000,
        received_at_ms: None,
        bundle_bytes: None,
    };
    s.store.create_support_request(&row).await?;
    crate::support::push(&s, &cp.id).await;
    tracing::info!(compute_plane = %cp.id, request = %row.id, by = %row.requested_by, "support bundle requested");
    Ok((StatusCode::CREATED, Json(view(&row, now))))
}

/// `GET /compute-planes/{cp}/support-requests`: the requests, newest first.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/support-requests",
    tag = "compute-planes",
    operation_id = "list_support_requests",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 200, description = "The requests, newest first", body = Vec<SupportRequestView>),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<Vec<SupportRequestView>>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let now = s.clock.now_ms();
    let rows = s.store.support_requests(&cp.id).await?;
    Ok(Json(rows.iter().map(|r| view(r, now)).collect()))
}

/// `GET /compute-planes/{cp}/support-requests/{id}/bundle` (admin): the bundle as the agent
/// sent it; 409 while it has not come.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/support-requests/{id}/bundle",
    tag = "compute-planes",
    operation_id = "get_support_bundle",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("id" = String, Path, description = "Support request id"),
    ),
    responses(
        (status = 200, description = "The bundle", body = SupportBundleView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane or request visible to the caller", body = crate::api::error::ErrorBody),
        (status = 409, description = "The bundle has not come (not approved yet, or expired)", body = crate::api::error::ErrorBody),
    )
)]
pub async fn bundle(
    State(s): State<AppState>,
    p: Principal,
    Path((cp, id)): Path<(String, String)>,
) -> Result<Json<SupportBundleView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "read support bundles")?;
    let Some(text) = s.store.support_bundle(&cp.id, &id).await? else {
        return Err(ApiError::Conflict(format!(
            "the bundle of {id} has not come: the customer has not approved it (tether-agent support approve), or it expired"
        )));
    };
    #[derive(Deserialize)]
    struct Stored {
        files: Vec<SupportFileView>,
    }
    let stored: Stored = serde_json::from_str(&text)
        .map_err(|e| ApiError::Internal(format!("stored bundle of {id} is unreadable: {e}")))?;
    Ok(Json(SupportBundleView {
        request_id: id,
        files: stored.files,
    }))
}
