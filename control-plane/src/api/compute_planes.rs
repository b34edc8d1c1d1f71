//! Compute planes, their enrollment tokens and their agents.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use tether_shared::names::validate_dns1123_label;
use tether_shared::tokens;

use super::auth::Principal;
use super::error::ApiError;
use super::json::{ApiJson, OptionalApiJson};
use super::rfc3339;
use crate::authz::Role;
use crate::sessions::reason;
use crate::state::AppState;
use crate::store::ComputePlane;

/// Default and bounds of enrollment token lifetimes.
const DEFAULT_ENROLLMENT_TTL: u64 = 3600;
const MAX_ENROLLMENT_TTL: u64 = 7 * 24 * 3600;

/// `POST /tenants/{t}/compute-planes` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComputePlane {
    /// A DNS-1123 label, unique in the tenant.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", max_length = 63)]
    name: String,
    /// An AWS region such as `us-east-1`.
    #[schema(pattern = "^[a-z0-9]*-[a-z0-9-]*$", max_length = 32)]
    region: String,
}

/// `POST /compute-planes/{cp}/enrollment-tokens` body (optional).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// How long the token may be used, seconds (default 3600).
    #[serde(default, deserialize_with = "integral_seconds")]
    #[schema(minimum = 1, maximum = 604800)]
    ttl_seconds: Option<u64>,
}

/// Reads a whole number of seconds as JSON Schema's `integer` means it: `1219` and `1219.0`
/// alike (serde's `u64` takes only the first); a fraction or a negative is refused.
pub(crate) fn integral_seconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole, non-negative number of seconds, got {n}"
        ))),
    }
}

fn opt_time(t: Option<i64>) -> Option<String> {
    t.map(rfc3339)
}

/// The API form of a compute plane with its agent's state.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ComputePlaneView {
    /// Id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Name.
    pub name: String,
    /// AWS region.
    pub region: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The desired state's generation.
    pub generation: i64,
    /// The generation the agent last acknowledged as applied.
    pub applied_generation: i64,
    /// What the agent reported with that acknowledgement.
    pub applied_conditions: Vec<tether_shared::status::Condition>,
    /// Telemetry records the agent had to drop (its spool was full).
    pub telemetry_dropped_records: u64,
    /// The same per class: a full spool drops query records first, then metrics, then
    /// events (cluster status is never spooled, so never dropped).
    pub telemetry_dropped_by_class: crate::store::DroppedRecords,
    /// The agent.
    pub agent: AgentView,
}

/// The agent of a compute plane, as its sessions left it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AgentView {
    /// A session is live now.
    pub connected: bool,
    /// Since when (while connected), RFC 3339.
    #[schema(format = DateTime)]
    pub connected_since: Option<String>,
    /// The live (or last) session.
    pub session_id: Option<String>,
    /// The agent's version.
    pub version: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub last_heartbeat: Option<String>,
    /// The address its session came from.
    pub remote_addr: Option<String>,
    /// Its certificate's serial (hex).
    pub certificate_serial: Option<String>,
    /// When that certificate expires, RFC 3339.
    #[schema(format = DateTime)]
    pub certificate_expires_at: Option<String>,
    /// Revoked: it must enroll again.
    pub revoked: bool,
    /// The replica holding the live (or last) session.
    pub replica: Option<String>,
}

/// `POST /compute-planes/{cp}/enrollment-tokens`: the token, shown once.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedEnrollmentToken {
    /// Id.
    pub id: String,
    /// The single-use token; only its hash is stored.
    pub token: String,
    /// The compute plane it enrolls an agent for.
    pub compute_plane_id: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// `PUT /compute-planes/{cp}/settings`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    /// The compute plane's own settings, as stored.
    pub settings: std::collections::BTreeMap<String, String>,
    /// The desired state's new generation.
    pub generation: i64,
}

/// `GET /tenants/{t}/compute-planes`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ComputePlaneList {
    /// The tenant's compute planes.
    pub compute_planes: Vec<ComputePlaneView>,
}

/// The API form of a compute plane with its agent's state.
pub fn compute_plane_view(cp: &ComputePlane) -> ComputePlaneView {
    let a = &cp.agent;
    ComputePlaneView {
        id: cp.id.clone(),
        tenant_id: cp.tenant_id.clone(),
        name: cp.name.clone(),
        region: cp.region.clone(),
        created_at: rfc3339(cp.created_at),
        generation: cp.generation,
        applied_generation: cp.applied_generation,
        applied_conditions: cp.applied_conditions.clone(),
        telemetry_dropped_records: cp.telemetry_dropped,
        telemetry_dropped_by_class: cp.telemetry_dropped_by_class,
        agent: AgentView {
            connected: a.connected,
            connected_since: if a.connected {
                opt_time(a.connected_since)
            } else {
                None
            },
            session_id: a.session_id.clone(),
            version: a.version.clone(),
            last_heartbeat: opt_time(a.last_heartbeat),
            remote_addr: a.remote_addr.clone(),
            certificate_serial: a.certificate_serial.clone(),
            certificate_expires_at: opt_time(a.certificate_expires_at),
            revoked: a.revoked,
            replica: a.replica.clone(),
        },
    }
}

fn validate_region(region: &str) -> Result<(), ApiError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && region.contains('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            "region",
            "must be an AWS region such as us-east-1",
        ))
    }
}

pub(crate) async fn visible_cp(
    s: &AppState,
    p: &Principal,
    id: &str,
) -> Result<ComputePlane, ApiError> {
    match s.store.get_compute_plane(id).await? {
        Some(cp) if p.can_see(&cp.tenant_id) => Ok(cp),
        _ => Err(ApiError::NotFound("compute plane")),
    }
}

/// `GET /tenants/{t}/compute-planes`.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/compute-planes",
    tag = "compute-planes",
    operation_id = "list_compute_planes",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant's compute planes", body = ComputePlaneList),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<ComputePlaneList>, ApiError> {
    p.see(&tenant, "tenant")?;
    s.store
        .get_tenant(&tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let cps = s.store.list_compute_planes(&tenant).await?;
    Ok(Json(ComputePlaneList {
        compute_planes: cps.iter().map(compute_plane_view).collect(),
    }))
}

/// `POST /tenants/{t}/compute-planes` (admin).
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/compute-planes",
    tag = "compute-planes",
    operation_id = "create_compute_plane",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(
        content = CreateComputePlane,
        content_type = "application/json",
        description = "`{\"name\": DNS-1123 label, \"region\": AWS region such as \"us-east-1\"}`"
    ),
    responses(
        (status = 201, description = "The compute plane", body = ComputePlaneView),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
        (status = 409, description = "The tenant has a compute plane of that name", body = crate::api::error::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateComputePlane>,
) -> Result<(StatusCode, Json<ComputePlaneView>), ApiError> {
    p.see(&tenant, "tenant")?;
    s.store
        .get_tenant(&tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    p.require(Role::Admin, "create compute planes")?;
    validate_dns1123_label(&body.name).map_err(|e| ApiError::field("name", e))?;
    validate_region(&body.region)?;
    let cp = s
        .store
        .create_compute_plane(&tenant, &body.name, &body.region, s.clock.now())
        .await?;
    tracing::info!(tenant = %tenant, compute_plane = %cp.id, name = %cp.name, by = %p.token_id, "compute plane created");
    Ok((StatusCode::CREATED, Json(compute_plane_view(&cp))))
}

/// `GET /compute-planes/{cp}`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}",
    tag = "compute-planes",
    operation_id = "get_compute_plane",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 200, description = "The compute plane with its agent's state", body = ComputePlaneView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<ComputePlaneView>, ApiError> {
    Ok(Json(compute_plane_view(&visible_cp(&s, &p, &cp).await?)))
}

/// `POST /compute-planes/{cp}/enrollment-tokens` (admin): a one-time bootstrap token,
/// shown once.
#[utoipa::path(
    post,
    path = "/compute-planes/{cp}/enrollment-tokens",
    tag = "compute-planes",
    operation_id = "create_enrollment_token",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    request_body(
        content = Option<CreateEnrollmentToken>,
        content_type = "application/json",
        description = "Optional (an empty body means the defaults): `{\"ttl_seconds\"?: 1..=604800, default 3600}`"
    ),
    responses(
        (status = 201, description = "The enrollment token, shown once", body = CreatedEnrollmentToken),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn create_enrollment_token(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    OptionalApiJson(body): OptionalApiJson<CreateEnrollmentToken>,
) -> Result<(StatusCode, Json<CreatedEnrollmentToken>), ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "create enrollment tokens")?;
    let ttl = body
        .and_then(|b| b.ttl_seconds)
        .unwrap_or(DEFAULT_ENROLLMENT_TTL);
    if ttl == 0 || ttl > MAX_ENROLLMENT_TTL {
        return Err(ApiError::field(
            "ttl_seconds",
            format!("must be between 1 and {MAX_ENROLLMENT_TTL}"),
        ));
    }
    let token = tokens::generate(tokens::ENROLLMENT_TOKEN_PREFIX);
    let now = s.clock.now();
    let expires_at = now + ttl as i64;
    let id = s
        .store
        .create_enrollment_token(&cp.id, &tokens::hash(&token), expires_at, now)
        .await?;
    tracing::info!(compute_plane = %cp.id, token_id = %id, ttl, by = %p.token_id, "enrollment token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollmentToken {
            id,
            token,
            compute_plane_id: cp.id,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

/// `POST /compute-planes/{cp}/revoke-agent` (admin): revokes every certificate of the
/// agent and ends its live session at once.
#[utoipa::path(
    post,
    path = "/compute-planes/{cp}/revoke-agent",
    tag = "compute-planes",
    operation_id = "revoke_agent",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    responses(
        (status = 200, description = "The compute plane after the revocation", body = ComputePlaneView),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn revoke_agent(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
) -> Result<Json<ComputePlaneView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "revoke agents")?;
    s.store.revoke_agent(&cp.id).await?;
    let ended = s.sessions.end(
        &cp.id,
        reason::REVOKED,
        "this agent's certificate was revoked",
    );
    // The session may be on another replica.
    s.fleet
        .publish(crate::fleet::Event::EndSession {
            cp: cp.id.clone(),
            session_id: None,
            reason: reason::REVOKED.to_owned(),
            message: "this agent's certificate was revoked".to_owned(),
        })
        .await;
    tracing::info!(compute_plane = %cp.id, session = ?ended, by = %p.token_id, "agent revoked");
    let cp = visible_cp(&s, &p, &cp.id).await?;
    Ok(Json(compute_plane_view(&cp)))
}

/// `PUT /compute-planes/{cp}/settings` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `redacted` (default), `full` or `none`.
    #[serde(default)]
    #[schema(pattern = "^(redacted|full|none)$")]
    query_text_redaction: Option<String>,
}

impl Settings {
    /// The settings as stored and sent, or which field is wrong.
    pub fn validated(self) -> Result<crate::store::Settings, ApiError> {
        let mut settings = crate::store::Settings::new();
        if let Some(mode) = self.query_text_redaction {
            mode.parse::<tether_shared::redact::RedactionMode>()
                .map_err(|_| {
                    ApiError::field("query_text_redaction", "must be redacted, full or none")
                })?;
            settings.insert("query_text_redaction".into(), mode);
        }
        Ok(settings)
    }
}

/// `PUT /compute-planes/{cp}/settings` (admin): settings the agent applies, e.g. how much
/// query text leaves the VPC. Sent with the desired state.
#[utoipa::path(
    put,
    path = "/compute-planes/{cp}/settings",
    tag = "compute-planes",
    operation_id = "put_compute_plane_settings",
    security(("bearer" = [])),
    params(("cp" = String, Path, description = "Compute plane id")),
    request_body(
        content = Settings,
        content_type = "application/json",
        description = "`{\"query_text_redaction\"?: \"redacted\" (default) | \"full\" | \"none\"}`"
    ),
    responses(
        (status = 200, description = "The settings as stored and the new generation", body = SettingsView),
        (status = 400, description = "Invalid body; `error.field` names the field", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Role below admin", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn put_settings(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    ApiJson(body): ApiJson<Settings>,
) -> Result<Json<SettingsView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    p.require(Role::Admin, "change compute plane settings")?;
    let settings = body.validated()?;
    let generation = s.store.put_settings(&cp.id, &settings).await?;
    tracing::info!(compute_plane = %cp.id, generation, settings = ?settings, by = %p.token_id, "settings changed");
    crate::desired::push(&s, &cp.id).await;
    Ok(Json(SettingsView {
        settings,
        generation,
    }))
}
