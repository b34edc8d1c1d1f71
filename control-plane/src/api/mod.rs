//! The REST API under `/api/v1` (JSON, `Authorization: Bearer TOKEN`), plus `/healthz`,
//! `/readyz` and `/metrics`. [`router`] builds it without a socket, so routes are
//! testable with `tower::ServiceExt::oneshot`. Its OpenAPI document, generated from the
//! handlers' `#[utoipa::path]` annotations as the routes are registered, is served at
//! `GET /api/v1/openapi.json`.

pub mod audit;
pub mod auth;
pub mod catalogs;
pub mod clusters;
pub mod compute_planes;
pub mod error;
pub mod identity;
pub mod json;
pub mod presto_access;
pub mod replicas;
pub mod support;
pub mod telemetry;
pub mod tenants;
pub mod usage;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The static part of the OpenAPI document; [`router`] adds every route's operation to it
/// as it registers the route, so the document lists exactly what is served.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tether control plane API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Tenants, compute planes, Presto clusters and catalogs, telemetry, usage and the audit log. \
            Every operation but `GET /openapi.json` needs `Authorization: Bearer TOKEN`. \
            Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenants and their API tokens"),
        (name = "compute-planes", description = "Compute planes, enrollment tokens, agents and settings"),
        (name = "clusters", description = "Presto clusters of a compute plane"),
        (name = "catalogs", description = "Catalogs of a compute plane"),
        (name = "telemetry", description = "Query log and metrics"),
        (name = "usage", description = "Metered node-hours"),
        (name = "audit", description = "The audit log"),
        (name = "replicas", description = "The control plane's replicas"),
        (name = "openapi", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme that operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An API token: `Authorization: Bearer TOKEN`"))
                        .build(),
                ),
            );
    }
}

/// The routes under `/api/v1` and their OpenAPI document, from the same calls.
fn api_routes(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::create_token))
        .routes(routes!(tenants::put_settings))
        .routes(routes!(identity::get, identity::put, identity::delete))
        .routes(routes!(identity::users))
        .routes(routes!(usage::get))
        .routes(routes!(audit::list))
        .routes(routes!(replicas::list))
        .routes(routes!(compute_planes::list, compute_planes::create))
        .routes(routes!(compute_planes::get))
        .routes(routes!(compute_planes::create_enrollment_token))
        .routes(routes!(compute_planes::revoke_agent))
        .routes(routes!(support::create, support::list))
        .routes(routes!(support::bundle))
        .routes(routes!(crate::install::cloudformation))
        .routes(routes!(clusters::list))
        .routes(routes!(clusters::get, clusters::put, clusters::delete))
        .routes(routes!(compute_planes::put_settings))
        .routes(routes!(
            presto_access::get,
            presto_access::put,
            presto_access::delete
        ))
        .routes(routes!(telemetry::query_log))
        .routes(routes!(telemetry::metrics))
        .routes(routes!(catalogs::list))
        .routes(routes!(catalogs::get, catalogs::put, catalogs::delete))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        // Public, so outside the authenticating audit layer.
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// `GET /openapi.json`: this document, the OpenAPI 3 description of the API (public).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    operation_id = "openapi",
    responses(
        (status = 200, description = "This document", body = serde_json::Value, content_type = "application/json"),
    )
)]
async fn openapi_json(Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(&*doc).into_response()
}

/// The HTTP router of the control plane.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes(&state);
    let api = api.layer(Extension(Arc::new(doc)));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Ready: the database answers and this replica is not draining (load balancers stop
/// sending new work to a replica that is stopping).
async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.fleet.is_draining() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "draining: this replica is stopping\n",
        )
            .into_response();
    }
    match state.store.ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => error::ApiError::from(e).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> String {
    crate::metrics::render(state.sessions.len())
}

/// RFC 3339 form of Unix milliseconds, for JSON.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// RFC 3339 form of Unix seconds, for JSON.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
