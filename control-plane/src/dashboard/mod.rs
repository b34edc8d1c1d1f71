//! The web dashboard, server-rendered (maud) on top of the REST API's own handlers, so the
//! dashboard and the API enforce the same roles and validation.
//!
//! Security: sign-in with an API token creates a session (the cookie holds a random id,
//! the store only its hash; `HttpOnly`, `SameSite=Strict`, `Secure` when the request came
//! over TLS — `X-Forwarded-Proto: https` from the TLS-terminating load balancer). Every
//! form carries the session's CSRF token (the sign-in form a double-submit cookie) and every
//! POST checks it, and refuses a cross-origin `Origin`. Every response carries a strict
//! Content-Security-Policy: scripts and styles only from this origin, no inline script, no
//! external anything. Every form post is audited like the API call it makes.
//!
//! Pages update live: `static/app.js` re-fetches the page every few seconds and swaps the
//! elements marked `data-live` (tables and charts, never forms).
//!
//! Read in this order: [`router`], [`session`] (sign-in, the session extractor, CSRF),
//! [`pages`] (one handler per page or form, a module per resource), [`layout`], [`chart`].

mod chart;
mod layout;
mod pages;
pub mod session;
pub mod sso;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// The dashboard's routes (everything outside `/api/v1` and the health endpoints).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/ui/login", get(sso::choose_tenant))
        .route(
            "/ui/login/{tenant}",
            get(sso::login_page).post(sso::ldap_login),
        )
        .route("/ui/oidc/start/{tenant}", post(sso::oidc_start))
        .route(
            "/ui/platform/login",
            get(sso::platform_page).post(sso::platform_start),
        )
        .route("/ui/oidc/callback/{tenant}", get(sso::oidc_callback))
        .route(sso::PLATFORM_CALLBACK_PATH, get(sso::platform_callback))
        .route("/ui/me", get(sso::me_page))
        .route("/ui/me/tokens", post(sso::create_personal_token))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/ui/tenants",
            get(pages::tenants).post(pages::create_tenant),
        )
        .route("/ui/tenants/{tenant}", get(pages::tenant))
        .route(
            "/ui/tenants/{tenant}/compute-planes",
            post(pages::create_compute_plane),
        )
        .route("/ui/tenants/{tenant}/tokens", post(pages::create_token))
        .route("/ui/tenants/{tenant}/usage", get(pages::usage))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/cp/{cp}", get(pages::compute_plane))
        .route(
            "/ui/cp/{cp}/enrollment-token",
            post(pages::create_enrollment_token),
        )
        .route("/ui/cp/{cp}/revoke", post(pages::revoke))
        .route(
            "/ui/cp/{cp}/cloudformation.yaml",
            get(pages::cloudformation),
        )
        .route(
            "/ui/cp/{cp}/clusters",
            get(pages::clusters).post(pages::create_cluster),
        )
        .route("/ui/cp/{cp}/clusters/{name}", get(pages::cluster))
        .route(
            "/ui/cp/{cp}/clusters/{name}/scale",
            post(pages::scale_cluster),
        )
        .route(
            "/ui/cp/{cp}/clusters/{name}/delete",
            get(pages::confirm_delete_cluster).post(pages::delete_cluster),
        )
        .route(
            "/ui/cp/{cp}/catalogs",
            get(pages::catalogs).post(pages::create_catalog),
        )
        .route(
            "/ui/cp/{cp}/catalogs/{name}/delete",
            post(pages::delete_catalog),
        )
        .route("/ui/cp/{cp}/queries", get(pages::queries))
        .route("/ui/cp/{cp}/metrics", get(pages::metrics))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Middleware for every response of the control plane's HTTP server: the CSP and the
/// other headers a security review expects; pages are never cached.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
