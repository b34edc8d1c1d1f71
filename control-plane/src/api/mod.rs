//! The REST API under `/api/v1` (JSON, `Authorization: Bearer TOKEN`), plus `/healthz`,
//! `/readyz` and `/metrics`. [`router`] builds it without a socket, so routes are
//! testable with `tower::ServiceExt::oneshot`.

pub mod audit;
pub mod auth;
pub mod catalogs;
pub mod clusters;
pub mod compute_planes;
pub mod error;
pub mod json;
pub mod telemetry;
pub mod tenants;
pub mod usage;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};

use crate::state::AppState;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The HTTP router of the control plane.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/tenants/{tenant}/tokens", post(tenants::create_token))
        .route("/tenants/{tenant}/usage", get(usage::get))
        .route("/audit-log", get(audit::list))
        .route(
            "/tenants/{tenant}/compute-planes",
            get(compute_planes::list).post(compute_planes::create),
        )
        .route("/compute-planes/{cp}", get(compute_planes::get))
        .route(
            "/compute-planes/{cp}/enrollment-tokens",
            post(compute_planes::create_enrollment_token),
        )
        .route(
            "/compute-planes/{cp}/revoke-agent",
            post(compute_planes::revoke_agent),
        )
        .route("/compute-planes/{cp}/clusters", get(clusters::list))
        .route(
            "/compute-planes/{cp}/clusters/{name}",
            get(clusters::get)
                .put(clusters::put)
                .delete(clusters::delete),
        )
        .route(
            "/compute-planes/{cp}/settings",
            axum::routing::put(compute_planes::put_settings),
        )
        .route("/compute-planes/{cp}/query-log", get(telemetry::query_log))
        .route("/compute-planes/{cp}/metrics", get(telemetry::metrics))
        .route("/compute-planes/{cp}/catalogs", get(catalogs::list))
        .route(
            "/compute-planes/{cp}/catalogs/{name}",
            get(catalogs::get)
                .put(catalogs::put)
                .delete(catalogs::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Result<&'static str, error::ApiError> {
    state.store.list_tenants().await?;
    Ok("ready\n")
}

async fn metrics(State(state): State<AppState>) -> String {
    crate::metrics::render(state.sessions.len())
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
