//! Tenants (platform admin) and a tenant's compute planes and tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde_json::json;

use crate::api;
use crate::authz::Role;
use crate::dashboard::layout::{flash, page_at};
use crate::dashboard::session::{FormPost, Session};
use crate::state::AppState;

use super::*;

/// `GET /ui/tenants` (platform admin).
pub async fn tenants(State(st): State<AppState>, session: Session) -> Page {
    tenants_page(&st, &session, None, false).await
}

async fn tenants_page(st: &AppState, session: &Session, msg: Option<&str>, err: bool) -> Page {
    let Json(list) = api::tenants::list(State(st.clone()), session.principal.clone())
        .await
        .map_err(|e| fail(session, &e))?;
    let admin = session.principal.role == Role::PlatformAdmin;
    Ok(page_at(
        Some(session),
        Some("/ui/tenants"),
        "Tenants",
        html! {
            h1 { "Tenants" }
            (flash(msg, err))
            table.list #tenants {
                thead { tr { th { "Name" } th { "Id" } th { "AWS account" } th { "Created" } } }
                tbody {
                    @for t in &list.tenants {
                        tr {
                            td { a href={ "/ui/tenants/" (t.id) } { (t.name) } }
                            td.mono { (t.id) }
                            td { (t.aws_account_id.as_deref().unwrap_or("")) }
                            td { (t.created_at) }
                        }
                    }
                }
            }
            @if admin {
                form.card method="post" action="/ui/tenants" {
                    h2 { "New tenant" }
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Name" input name="name" required pattern="[a-z0-9-]{1,63}"; }
                    label { "AWS account id (optional)" input name="aws_account_id" pattern="[0-9]{12}"; }
                    button type="submit" { "Create tenant" }
                }
            }
        },
    )
    .into_response())
}

/// `POST /ui/tenants` (platform admin).
pub async fn create_tenant(State(st): State<AppState>, post: FormPost) -> Page {
    let mut v = json!({"name": post.field("name")});
    let account = post.field("aws_account_id");
    if !account.is_empty() {
        v["aws_account_id"] = json!(account);
    }
    let result = match body(&v) {
        Ok(b) => api::tenants::create(State(st.clone()), post.session.principal.clone(), b)
            .await
            .map(|(_, Json(v))| v),
        Err(e) => Err(e),
    };
    let result = post
        .audited(
            &st,
            "POST /tenants",
            "/tenants",
            StatusCode::CREATED,
            result,
        )
        .await;
    match result {
        Ok(t) => {
            let m = format!("Tenant {} created.", t.name);
            tenants_page(&st, &post.session, Some(&m), false).await
        }
        Err(e) if e.status() == StatusCode::FORBIDDEN => Err(fail(&post.session, &e)),
        Err(e) => tenants_page(&st, &post.session, Some(&e.to_string()), true).await,
    }
}

/// `GET /ui/tenants/{t}`: the tenant's compute planes.
pub async fn tenant(
    State(st): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Page {
    tenant_page(&st, &session, &tenant, None, false).await
}

async fn tenant_page(
    st: &AppState,
    session: &Session,
    tenant: &str,
    msg: Option<&str>,
    err: bool,
) -> Page {
    let Json(list) = api::compute_planes::list(
        State(st.clone()),
        session.principal.clone(),
        Path(tenant.to_owned()),
    )
    .await
    .map_err(|e| fail(session, &e))?;
    let name = st
        .store
        .get_tenant(tenant)
        .await
        .ok()
        .flatten()
        .map_or_else(|| tenant.to_owned(), |t| t.name);
    let admin = can(session, Role::Admin);
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/tenants/{tenant}")),
        "Compute planes",
        html! {
            h1 { "Tenant " span.name { (name) } }
            (flash(msg, err))
            h2 { "Compute planes" }
            div #live-compute-planes data-live {
                table.list #compute-planes {
                    thead { tr { th { "Name" } th { "Region" } th { "Agent" } th { "Version" } th { "Last heartbeat" } } }
                    tbody {
                        @for cp in &list.compute_planes {
                            tr {
                                td { a href={ "/ui/cp/" (cp.id) } { (cp.name) } }
                                td { (cp.region) }
                                td { (agent_badge(&cp.agent)) }
                                td { (cp.agent.version.as_deref().unwrap_or("")) }
                                td { (cp.agent.last_heartbeat.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if admin {
                div.cards {
                    form.card method="post" action={ "/ui/tenants/" (tenant) "/compute-planes" } {
                        h2 { "New compute plane" }
                        input type="hidden" name="csrf" value=(session.csrf);
                        label { "Name" input name="name" required; }
                        label { "AWS region" input name="region" value="us-east-1" required; }
                        button type="submit" { "Create compute plane" }
                    }
                    form.card method="post" action={ "/ui/tenants/" (tenant) "/tokens" } {
                        h2 { "New API token" }
                        input type="hidden" name="csrf" value=(session.csrf);
                        label { "Role"
                            select name="role" {
                                option value="viewer" { "viewer (read)" }
                                option value="operator" { "operator (clusters, catalogs)" }
                                option value="admin" { "admin (tokens, compute planes, agents)" }
                            }
                        }
                        button type="submit" { "Create token" }
                    }
                }
            }
        },
    )
    .into_response())
}

/// `POST /ui/tenants/{t}/compute-planes` (admin).
pub async fn create_compute_plane(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
    post: FormPost,
) -> Page {
    let v = json!({"name": post.field("name"), "region": post.field("region")});
    let result = match body(&v) {
        Ok(b) => api::compute_planes::create(
            State(st.clone()),
            post.session.principal.clone(),
            Path(tenant.clone()),
            b,
        )
        .await
        .map(|(_, Json(v))| v),
        Err(e) => Err(e),
    };
    let target = format!("/tenants/{tenant}/compute-planes");
    let result = post
        .audited(
            &st,
            "POST /tenants/{tenant}/compute-planes",
            &target,
            StatusCode::CREATED,
            result,
        )
        .await;
    match result {
        Ok(cp) => Ok(Redirect::to(&format!("/ui/cp/{}", cp.id)).into_response()),
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => tenant_page(&st, &post.session, &tenant, Some(&e.to_string()), true).await,
    }
}

/// `POST /ui/tenants/{t}/tokens` (admin): shows the new token once.
pub async fn create_token(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
    post: FormPost,
) -> Page {
    let v = json!({"role": post.field("role")});
    let result = match body(&v) {
        Ok(b) => api::tenants::create_token(
            State(st.clone()),
            post.session.principal.clone(),
            Path(tenant.clone()),
            b,
        )
        .await
        .map(|(_, Json(v))| v),
        Err(e) => Err(e),
    };
    let target = format!("/tenants/{tenant}/tokens");
    let result = post
        .audited(
            &st,
            "POST /tenants/{tenant}/tokens",
            &target,
            StatusCode::CREATED,
            result,
        )
        .await;
    match result {
        Ok(t) => {
            let m = format!(
                "New {} token (shown once, copy it now): {}",
                t.role, t.token
            );
            if post.session.principal.role == Role::PlatformAdmin {
                tenants_page(&st, &post.session, Some(&m), false).await
            } else {
                tenant_page(&st, &post.session, &tenant, Some(&m), false).await
            }
        }
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => tenant_page(&st, &post.session, &tenant, Some(&e.to_string()), true).await,
    }
}
