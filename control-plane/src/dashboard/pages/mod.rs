//! One handler per page and per form. Reads and writes go through the REST API's own
//! handlers with the signed-in principal, so roles, tenancy and validation are the API's;
//! the page only hides what the role cannot do. Each form post is audited under the name
//! of the API call it made.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api;
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::authz::Role;
use crate::dashboard::layout::{self};
use crate::dashboard::session::Session;
use crate::state::AppState;

type Page = Result<Response, Response>;

/// Refusals (403) and what does not exist (404) get the error page; other errors (bad
/// input) are shown above the form they came from.
fn shown_as_page(e: &ApiError) -> bool {
    matches!(e.status(), StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
}

fn fail(session: &Session, e: &ApiError) -> Response {
    layout::error_page(Some(session), e.status(), &e.to_string())
}

/// A JSON body for an API handler, parsed with the API's own field-naming errors.
fn body<T: DeserializeOwned>(v: &Value) -> Result<ApiJson<T>, ApiError> {
    crate::api::json::parse(v.to_string().as_bytes()).map(ApiJson)
}

/// An RFC 3339 time as `MM-DD HH:MM:SS` (UTC), compact for tables.
fn short_time(t: &str) -> String {
    match (t.get(5..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_owned(),
    }
}

fn can(session: &Session, role: Role) -> bool {
    session.principal.role.at_least(role)
}

/// `GET /`: the sign-in page, or the caller's home.
pub async fn home(session: Option<Session>) -> Response {
    match session {
        None => Redirect::to("/login").into_response(),
        Some(s) if s.principal.role == Role::PlatformAdmin => {
            Redirect::to("/ui/tenants").into_response()
        }
        Some(s) => match &s.principal.tenant_id {
            Some(t) => Redirect::to(&format!("/ui/tenants/{t}")).into_response(),
            None => Redirect::to("/login").into_response(),
        },
    }
}

async fn cp_json(
    st: &AppState,
    session: &Session,
    cp: &str,
) -> Result<api::compute_planes::ComputePlaneView, Response> {
    api::compute_planes::get(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.to_owned()),
    )
    .await
    .map(|Json(v)| v)
    .map_err(|e| fail(session, &e))
}

fn agent_badge(agent: &api::compute_planes::AgentView) -> Markup {
    html! {
        @if agent.revoked {
            span.badge.bad { "revoked" }
        } @else if agent.connected {
            span.badge.good { "connected" }
        } @else {
            span.badge.warn { "not connected" }
        }
    }
}

mod audit;
mod catalogs;
mod clusters;
mod compute_planes;
mod telemetry;
mod tenants;

pub use audit::*;
pub use catalogs::*;
pub use clusters::*;
pub use compute_planes::*;
pub use telemetry::*;
pub use tenants::*;
