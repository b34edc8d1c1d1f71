//! One handler per page and per form. Reads and writes go through the REST API's own
//! handlers with the signed-in principal, so roles, tenancy and validation are the API's;
//! the page only hides what the role cannot do. Each form post is audited under the name
//! of the API call it made.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::chart::{self, Series};
use super::layout::{self, cp_nav, flash, page, page_at};
use super::session::{FormPost, Session};
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::{audit, catalogs, clusters, compute_planes, telemetry, tenants, usage};
use crate::authz::Role;
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

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time as `MM-DD HH:MM:SS` (UTC), compact for tables.
fn short_time(v: &Value) -> String {
    let t = s(v);
    match (t.get(5..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t,
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

// ---------------------------------------------------------------------------------------
// Tenants (platform admin) and a tenant's compute planes

/// `GET /ui/tenants` (platform admin).
pub async fn tenants(State(st): State<AppState>, session: Session) -> Page {
    tenants_page(&st, &session, None, false).await
}

async fn tenants_page(st: &AppState, session: &Session, msg: Option<&str>, err: bool) -> Page {
    let Json(list) = tenants::list(State(st.clone()), session.principal.clone())
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
                    @for t in list["tenants"].as_array().into_iter().flatten() {
                        tr {
                            td { a href={ "/ui/tenants/" (s(&t["id"])) } { (s(&t["name"])) } }
                            td.mono { (s(&t["id"])) }
                            td { (s(&t["aws_account_id"])) }
                            td { (s(&t["created_at"])) }
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
        Ok(b) => tenants::create(State(st.clone()), post.session.principal.clone(), b)
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
            let m = format!("Tenant {} created.", s(&t["name"]));
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
    let Json(list) = compute_planes::list(
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
                        @for cp in list["compute_planes"].as_array().into_iter().flatten() {
                            tr {
                                td { a href={ "/ui/cp/" (s(&cp["id"])) } { (s(&cp["name"])) } }
                                td { (s(&cp["region"])) }
                                td { (agent_badge(&cp["agent"])) }
                                td { (s(&cp["agent"]["version"])) }
                                td { (s(&cp["agent"]["last_heartbeat"])) }
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

fn agent_badge(agent: &Value) -> Markup {
    html! {
        @if agent["revoked"] == true {
            span.badge.bad { "revoked" }
        } @else if agent["connected"] == true {
            span.badge.good { "connected" }
        } @else {
            span.badge.warn { "not connected" }
        }
    }
}

/// `POST /ui/tenants/{t}/compute-planes` (admin).
pub async fn create_compute_plane(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
    post: FormPost,
) -> Page {
    let v = json!({"name": post.field("name"), "region": post.field("region")});
    let result = match body(&v) {
        Ok(b) => compute_planes::create(
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
        Ok(cp) => Ok(Redirect::to(&format!("/ui/cp/{}", s(&cp["id"]))).into_response()),
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
        Ok(b) => tenants::create_token(
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
                s(&t["role"]),
                s(&t["token"])
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

// ---------------------------------------------------------------------------------------
// A compute plane: overview, enrollment, revocation

async fn cp_json(st: &AppState, session: &Session, cp: &str) -> Result<Value, Response> {
    compute_planes::get(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.to_owned()),
    )
    .await
    .map(|Json(v)| v)
    .map_err(|e| fail(session, &e))
}

/// `GET /ui/cp/{cp}`: the agent, install instructions, enrollment and revocation.
pub async fn compute_plane(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
) -> Page {
    overview_page(&st, &session, &cp, None, false).await
}

async fn overview_page(
    st: &AppState,
    session: &Session,
    cp: &str,
    msg: Option<&str>,
    err: bool,
) -> Page {
    let v = cp_json(st, session, cp).await?;
    let a = &v["agent"];
    let admin = can(session, Role::Admin);
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}")),
        "Compute plane",
        html! {
            (cp_nav(cp, &s(&v["name"]), "Overview"))
            (flash(msg, err))
            div #live-agent data-live {
                h2 { "Agent " (agent_badge(a)) }
                dl.facts #agent {
                    dt { "Connected" } dd data-field="connected" { (s(&a["connected"])) }
                    dt { "Version" } dd { (s(&a["version"])) }
                    dt { "Connected since" } dd { (s(&a["connected_since"])) }
                    dt { "Last heartbeat" } dd { (s(&a["last_heartbeat"])) }
                    dt { "Remote address" } dd.mono { (s(&a["remote_addr"])) }
                    dt { "Certificate serial" } dd.mono { (s(&a["certificate_serial"])) }
                    dt { "Certificate expires" } dd { (s(&a["certificate_expires_at"])) }
                    dt { "Desired generation" } dd { (s(&v["generation"])) " (applied " (s(&v["applied_generation"])) ")" }
                    dt { "Telemetry records dropped by the agent" } dd { (s(&v["telemetry_dropped_records"])) }
                }
                // What the agent reports about the compute plane as a whole (a refused
                // desired-state document, for one); per-cluster ones are on the cluster pages.
                @let plane: Vec<&Value> = v["applied_conditions"].as_array().into_iter().flatten()
                    .filter(|c| c["cluster"].as_str().unwrap_or("").is_empty()).collect();
                @if !plane.is_empty() {
                    h3 { "Agent conditions" }
                    table.list #agent-conditions {
                        tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } }
                        @for c in plane {
                            tr { td { (s(&c["type"])) } td { (s(&c["status"])) } td { (s(&c["reason"])) } td { (s(&c["message"])) } }
                        }
                    }
                }
            }
            section.card {
                h2 { "Install the agent" }
                p { "Region " (s(&v["region"])) ". The agent dials out to the control plane; it needs no inbound access. "
                    "Create an enrollment token (valid 10 minutes, used once), then run the agent in the customer's VPC:" }
                pre.mono { "tether-agent run --control-plane https://CONTROL_PLANE:8443 --ca-file ca.pem \\\n    --state-dir /var/lib/tether --enrollment-token TOKEN --compute-plane " (cp) }
                p { "Or install with CloudFormation (EKS, the data-lake bucket, logs and the agent on Fargate): download the template for "
                    a #cfn-new href={ "/ui/cp/" (cp) "/cloudformation.yaml?vpc=new" } download { "a new VPC" }
                    " or for "
                    a #cfn-existing href={ "/ui/cp/" (cp) "/cloudformation.yaml?vpc=existing" } download { "your VPC" }
                    ", then create the stack with the enrollment token as its EnrollmentToken parameter. See docs/install.md." }
                @if admin {
                    form.inline method="post" action={ "/ui/cp/" (cp) "/enrollment-token" } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" #new-enrollment-token { "Create enrollment token" }
                    }
                }
            }
            @if admin {
                form.card.danger method="post" action={ "/ui/cp/" (cp) "/revoke" } {
                    h2 { "Revoke the agent" }
                    p { "Ends its session at once; it can reconnect only after enrolling again with a new token." }
                    input type="hidden" name="csrf" value=(session.csrf);
                    label.check { input type="checkbox" name="confirm" value="yes" required; " I understand" }
                    button.danger type="submit" { "Revoke agent certificate" }
                }
            }
        },
    )
    .into_response())
}

/// `GET /ui/cp/{cp}/cloudformation.yaml?vpc=new|existing`: the template as a download.
pub async fn cloudformation(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let yaml = crate::install::template_yaml(&st, &session.principal, &cp, &q)
        .await
        .map_err(|e| fail(&session, &e))?;
    let file = format!(
        "attachment; filename=\"tether-{cp}-{}.yaml\"",
        q.get("vpc").map_or("new", String::as_str)
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/yaml".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, file),
        ],
        yaml,
    )
        .into_response())
}

/// `POST /ui/cp/{cp}/enrollment-token` (admin): shows the token once.
pub async fn create_enrollment_token(
    State(st): State<AppState>,
    Path(cp): Path<String>,
    post: FormPost,
) -> Page {
    let result = compute_planes::create_enrollment_token(
        State(st.clone()),
        post.session.principal.clone(),
        Path(cp.clone()),
        crate::api::json::OptionalApiJson(None),
    )
    .await
    .map(|(_, Json(v))| v);
    let target = format!("/compute-planes/{cp}/enrollment-tokens");
    let result = post
        .audited(
            &st,
            "POST /compute-planes/{cp}/enrollment-tokens",
            &target,
            StatusCode::CREATED,
            result,
        )
        .await;
    match result {
        Ok(t) => {
            let m = format!(
                "Enrollment token (shown once, expires {}): {}",
                s(&t["expires_at"]),
                s(&t["token"])
            );
            overview_page(&st, &post.session, &cp, Some(&m), false).await
        }
        Err(e) => Err(fail(&post.session, &e)),
    }
}

/// `POST /ui/cp/{cp}/revoke` (admin).
pub async fn revoke(State(st): State<AppState>, Path(cp): Path<String>, post: FormPost) -> Page {
    if post.field("confirm") != "yes" {
        return overview_page(
            &st,
            &post.session,
            &cp,
            Some("Tick the confirmation to revoke."),
            true,
        )
        .await;
    }
    let result = compute_planes::revoke_agent(
        State(st.clone()),
        post.session.principal.clone(),
        Path(cp.clone()),
    )
    .await;
    let target = format!("/compute-planes/{cp}/revoke-agent");
    let result = post
        .audited(
            &st,
            "POST /compute-planes/{cp}/revoke-agent",
            &target,
            StatusCode::OK,
            result,
        )
        .await;
    match result {
        Ok(_) => overview_page(&st, &post.session, &cp, Some("Agent revoked."), false).await,
        Err(e) => Err(fail(&post.session, &e)),
    }
}

// ---------------------------------------------------------------------------------------
// Clusters

/// `GET /ui/cp/{cp}/clusters`.
pub async fn clusters(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
) -> Page {
    clusters_page(&st, &session, &cp, None, false).await
}

async fn clusters_page(
    st: &AppState,
    session: &Session,
    cp: &str,
    msg: Option<&str>,
    err: bool,
) -> Page {
    let v = cp_json(st, session, cp).await?;
    let p = session.principal.clone();
    let Json(list) = clusters::list(State(st.clone()), p.clone(), Path(cp.to_owned()))
        .await
        .map_err(|e| fail(session, &e))?;
    let Json(cats) = catalogs::list(State(st.clone()), p, Path(cp.to_owned()))
        .await
        .map_err(|e| fail(session, &e))?;
    let operator = can(session, Role::Operator);
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}/clusters")),
        "Clusters",
        html! {
            (cp_nav(cp, &s(&v["name"]), "Clusters"))
            (flash(msg, err))
            div #live-clusters data-live {
                table.list #clusters {
                    thead { tr {
                        th { "Cluster" } th { "Phase" } th { "Workers ready" } th { "Generation" }
                        th { "Endpoint" } th { "Last error" }
                    } }
                    tbody {
                        @for c in list["clusters"].as_array().into_iter().flatten() {
                            @let name = s(&c["name"]);
                            tr data-cluster=(name) {
                                td { a href={ "/ui/cp/" (cp) "/clusters/" (name) } { (name) } }
                                td { span class={ "phase " (s(&c["status"]["phase"]).to_lowercase()) } data-field="phase" { (s(&c["status"]["phase"])) } }
                                td data-field="workers" { (s(&c["status"]["ready_workers"])) " / " (s(&c["status"]["desired_workers"])) }
                                td { (s(&c["generation"])) " (observed " (s(&c["observed_generation"])) ")" }
                                td.mono { (s(&c["status"]["endpoint"])) }
                                td.error { (s(&c["status"]["last_error"])) }
                            }
                        }
                    }
                }
            }
            @if operator {
                form.card #create-cluster method="post" action={ "/ui/cp/" (cp) "/clusters" } {
                    h2 { "New cluster" }
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Name" input #cluster-name name="name" required pattern="[a-z0-9-]{1,40}"; }
                    label { "Presto version" input name="presto_version" value="0.293" required; }
                    label { "Workers" input #cluster-workers name="workers" type="number" min="0" max="500" value="2" required; }
                    fieldset {
                        legend { "Catalogs" }
                        @for cat in cats["catalogs"].as_array().into_iter().flatten() {
                            label.check { input type="checkbox" name="catalogs" value=(s(&cat["name"])); " " (s(&cat["name"])) }
                        }
                    }
                    label { "Coordinator CPU / memory" input name="coordinator_cpu" value="2"; input name="coordinator_memory" value="8Gi"; }
                    label { "Worker CPU / memory" input name="worker_cpu" value="4"; input name="worker_memory" value="16Gi"; }
                    button type="submit" #create-cluster-submit { "Create cluster" }
                }
            }
        },
    )
    .into_response())
}

fn cluster_spec_from_form(post: &FormPost, base: Option<&Value>) -> Value {
    let workers: Value = post
        .field("workers")
        .parse::<u64>()
        .map_or_else(|_| json!(post.field("workers")), |n| json!({"count": n}));
    let mut spec = base.cloned().unwrap_or_else(|| {
        json!({
            "presto_version": post.field("presto_version"),
            "catalogs": post.all("catalogs"),
            "coordinator": {"cpu": post.field("coordinator_cpu"), "memory": post.field("coordinator_memory")},
            "worker": {"cpu": post.field("worker_cpu"), "memory": post.field("worker_memory")},
        })
    });
    spec["workers"] = workers;
    spec
}

async fn put_cluster(
    st: &AppState,
    post: &FormPost,
    cp: &str,
    name: &str,
    spec: &Value,
) -> Result<Value, ApiError> {
    let result = match body(spec) {
        Ok(b) => clusters::put(
            State(st.clone()),
            post.session.principal.clone(),
            Path((cp.to_owned(), name.to_owned())),
            b,
        )
        .await
        .map(|Json(v)| v),
        Err(e) => Err(e),
    };
    post.audited(
        st,
        "PUT /compute-planes/{cp}/clusters/{name}",
        &format!("/compute-planes/{cp}/clusters/{name}"),
        StatusCode::OK,
        result,
    )
    .await
}

/// `POST /ui/cp/{cp}/clusters` (operator): create.
pub async fn create_cluster(
    State(st): State<AppState>,
    Path(cp): Path<String>,
    post: FormPost,
) -> Page {
    let name = post.field("name");
    let spec = cluster_spec_from_form(&post, None);
    match put_cluster(&st, &post, &cp, &name, &spec).await {
        Ok(_) => Ok(Redirect::to(&format!("/ui/cp/{cp}/clusters/{name}")).into_response()),
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => clusters_page(&st, &post.session, &cp, Some(&e.to_string()), true).await,
    }
}

/// `GET /ui/cp/{cp}/clusters/{name}`.
pub async fn cluster(
    State(st): State<AppState>,
    session: Session,
    Path((cp, name)): Path<(String, String)>,
) -> Page {
    cluster_page(&st, &session, &cp, &name, None, false).await
}

async fn cluster_page(
    st: &AppState,
    session: &Session,
    cp: &str,
    name: &str,
    msg: Option<&str>,
    err: bool,
) -> Page {
    let v = cp_json(st, session, cp).await?;
    let Json(c) = clusters::get(
        State(st.clone()),
        session.principal.clone(),
        Path((cp.to_owned(), name.to_owned())),
    )
    .await
    .map_err(|e| fail(session, &e))?;
    let st_ = &c["status"];
    let operator = can(session, Role::Operator);
    let workers = match &c["spec"]["workers"] {
        w if w["count"].is_number() => s(&w["count"]),
        w => format!("{}–{} (autoscaling)", s(&w["min"]), s(&w["max"])),
    };
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}/clusters/{name}")),
        name,
        html! {
            (cp_nav(cp, &s(&v["name"]), "Clusters"))
            h2 { "Cluster " span.name { (name) } }
            (flash(msg, err))
            div #live-cluster data-live {
                dl.facts #cluster {
                    dt { "Phase" } dd { span class={ "phase " (s(&st_["phase"]).to_lowercase()) } #phase data-field="phase" { (s(&st_["phase"])) } }
                    dt { "Workers ready" } dd #ready-workers data-field="ready_workers" { (s(&st_["ready_workers"])) " / " (s(&st_["desired_workers"])) }
                    dt { "Coordinator ready" } dd { (s(&st_["coordinator_ready"])) }
                    dt { "Generation" } dd #generation { (s(&c["generation"])) }
                    dt { "Observed generation" } dd #observed-generation { (s(&c["observed_generation"])) }
                    dt { "Endpoint" } dd.mono { (s(&st_["endpoint"])) }
                    dt { "Last error" } dd.error { (s(&st_["last_error"])) }
                    dt { "Spec" } dd { "Presto " (s(&c["spec"]["presto_version"])) ", workers " (workers)
                        ", catalogs " (c["spec"]["catalogs"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                }
                h3 { "Conditions" }
                table.list #conditions {
                    thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } } }
                    tbody {
                        @for k in st_["conditions"].as_array().into_iter().flatten() {
                            tr { td { (s(&k["type"])) } td { (s(&k["status"])) } td { (s(&k["reason"])) } td { (s(&k["message"])) } }
                        }
                    }
                }
            }
            @if operator && st_["phase"] != "Deleting" {
                div.cards {
                    form.card #scale-cluster method="post" action={ "/ui/cp/" (cp) "/clusters/" (name) "/scale" } {
                        h3 { "Scale" }
                        input type="hidden" name="csrf" value=(session.csrf);
                        label { "Workers" input #scale-workers name="workers" type="number" min="0" max="500" value=(s(&c["spec"]["workers"]["count"])) required; }
                        button type="submit" #scale-submit { "Scale" }
                    }
                    div.card.danger {
                        h3 { "Delete" }
                        p { "Removes the cluster's coordinator, workers and configuration from the compute plane." }
                        a.button.danger #delete-cluster href={ "/ui/cp/" (cp) "/clusters/" (name) "/delete" } { "Delete cluster…" }
                    }
                }
            }
        },
    )
    .into_response())
}

/// `POST /ui/cp/{cp}/clusters/{name}/scale` (operator).
pub async fn scale_cluster(
    State(st): State<AppState>,
    Path((cp, name)): Path<(String, String)>,
    post: FormPost,
) -> Page {
    let current = clusters::get(
        State(st.clone()),
        post.session.principal.clone(),
        Path((cp.clone(), name.clone())),
    )
    .await
    .map_err(|e| fail(&post.session, &e))?;
    let spec = cluster_spec_from_form(&post, Some(&current.0["spec"]));
    match put_cluster(&st, &post, &cp, &name, &spec).await {
        Ok(c) => {
            let m = format!(
                "Scaling to {} workers (generation {}).",
                post.field("workers"),
                s(&c["generation"])
            );
            cluster_page(&st, &post.session, &cp, &name, Some(&m), false).await
        }
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => cluster_page(&st, &post.session, &cp, &name, Some(&e.to_string()), true).await,
    }
}

/// `GET /ui/cp/{cp}/clusters/{name}/delete`: the confirmation.
pub async fn confirm_delete_cluster(
    State(st): State<AppState>,
    session: Session,
    Path((cp, name)): Path<(String, String)>,
) -> Page {
    let v = cp_json(&st, &session, &cp).await?;
    // Only for a cluster that exists (the name goes into the form's action).
    let _exists = clusters::get(
        State(st.clone()),
        session.principal.clone(),
        Path((cp.clone(), name.clone())),
    )
    .await
    .map_err(|e| fail(&session, &e))?;
    Ok(page(
        Some(&session),
        "Delete cluster",
        html! {
            (cp_nav(&cp, &s(&v["name"]), "Clusters"))
            form.card.danger #confirm-delete method="post" action={ "/ui/cp/" (cp) "/clusters/" (name) "/delete" } {
                h2 { "Delete cluster " span.name { (name) } "?" }
                p { "Running queries on it fail. Type the cluster's name to confirm." }
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Cluster name" input #confirm-name name="confirm" required; }
                button.danger type="submit" #confirm-delete-submit { "Delete" }
                " " a href={ "/ui/cp/" (cp) "/clusters/" (name) } { "Cancel" }
            }
        },
    )
    .into_response())
}

/// `POST /ui/cp/{cp}/clusters/{name}/delete` (operator), with the name typed again.
pub async fn delete_cluster(
    State(st): State<AppState>,
    Path((cp, name)): Path<(String, String)>,
    post: FormPost,
) -> Page {
    if post.field("confirm") != name {
        return cluster_page(
            &st,
            &post.session,
            &cp,
            &name,
            Some("Not deleted: the name typed did not match."),
            true,
        )
        .await;
    }
    let result = clusters::delete(
        State(st.clone()),
        post.session.principal.clone(),
        Path((cp.clone(), name.clone())),
    )
    .await;
    let status = result
        .as_ref()
        .map_or_else(ApiError::status, |(code, _)| *code);
    post.audit(
        &st,
        "DELETE /compute-planes/{cp}/clusters/{name}",
        &format!("/compute-planes/{cp}/clusters/{name}"),
        status,
    )
    .await;
    match result {
        Ok(_) => {
            clusters_page(
                &st,
                &post.session,
                &cp,
                Some(&format!("Deleting cluster {name}.")),
                false,
            )
            .await
        }
        Err(e) => Err(fail(&post.session, &e)),
    }
}

// ---------------------------------------------------------------------------------------
// Catalogs

/// `GET /ui/cp/{cp}/catalogs`.
pub async fn catalogs(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
) -> Page {
    catalogs_page(&st, &session, &cp, None, false).await
}

async fn catalogs_page(
    st: &AppState,
    session: &Session,
    cp: &str,
    msg: Option<&str>,
    err: bool,
) -> Page {
    let v = cp_json(st, session, cp).await?;
    let Json(cats) = catalogs::list(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.to_owned()),
    )
    .await
    .map_err(|e| fail(session, &e))?;
    let operator = can(session, Role::Operator);
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}/catalogs")),
        "Catalogs",
        html! {
            (cp_nav(cp, &s(&v["name"]), "Catalogs"))
            (flash(msg, err))
            table.list #catalogs {
                thead { tr { th { "Catalog" } th { "Connector" } th { "Properties" } th { "Credentials" } th { "Generation" } @if operator { th {} } } }
                tbody {
                    @for c in cats["catalogs"].as_array().into_iter().flatten() {
                        @let name = s(&c["name"]);
                        tr {
                            td { (name) }
                            td { (s(&c["spec"]["connector"])) }
                            td.mono {
                                @for (k, val) in c["spec"]["properties"].as_object().into_iter().flatten() {
                                    (k) "=" (s(val)) br;
                                }
                            }
                            td.mono { (s(&c["spec"]["credentials"]["secret_ref"])) }
                            td { (s(&c["generation"])) }
                            @if operator {
                                td {
                                    form.inline method="post" action={ "/ui/cp/" (cp) "/catalogs/" (name) "/delete" } {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        button.link.danger type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if operator {
                form.card #create-catalog method="post" action={ "/ui/cp/" (cp) "/catalogs" } {
                    h2 { "New catalog" }
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Name" input name="name" required pattern="[a-z0-9_]{1,40}"; }
                    label { "Connector"
                        select name="connector" {
                            option value="hive" { "hive" }
                            option value="mysql" { "mysql" }
                            option value="postgresql" { "postgresql" }
                        }
                    }
                    label { "Properties (one key=value per line)" textarea name="properties" rows="4" {} }
                    label { "Credentials secret (arn:aws:secretsmanager:… or k8s:NAME, optional)" input name="secret_ref"; }
                    button type="submit" { "Create catalog" }
                }
            }
        },
    )
    .into_response())
}

/// `POST /ui/cp/{cp}/catalogs` (operator).
pub async fn create_catalog(
    State(st): State<AppState>,
    Path(cp): Path<String>,
    post: FormPost,
) -> Page {
    let name = post.field("name");
    let mut props = serde_json::Map::new();
    let mut bad_line = None;
    for line in post.field("properties").lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                props.insert(k.trim().to_owned(), json!(v.trim()));
            }
            None => bad_line = Some(line.to_owned()),
        }
    }
    if let Some(line) = bad_line {
        let m = format!("properties: line {line:?} is not key=value");
        return catalogs_page(&st, &post.session, &cp, Some(&m), true).await;
    }
    let mut spec = json!({"connector": post.field("connector"), "properties": props});
    let secret = post.field("secret_ref");
    if !secret.is_empty() {
        spec["credentials"] = json!({"secret_ref": secret});
    }
    let result = match body(&spec) {
        Ok(b) => catalogs::put(
            State(st.clone()),
            post.session.principal.clone(),
            Path((cp.clone(), name.clone())),
            b,
        )
        .await
        .map(|_| ()),
        Err(e) => Err(e),
    };
    let result = post
        .audited(
            &st,
            "PUT /compute-planes/{cp}/catalogs/{name}",
            &format!("/compute-planes/{cp}/catalogs/{name}"),
            StatusCode::OK,
            result,
        )
        .await;
    match result {
        Ok(()) => {
            catalogs_page(
                &st,
                &post.session,
                &cp,
                Some(&format!("Catalog {name} saved.")),
                false,
            )
            .await
        }
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => catalogs_page(&st, &post.session, &cp, Some(&e.to_string()), true).await,
    }
}

/// `POST /ui/cp/{cp}/catalogs/{name}/delete` (operator).
pub async fn delete_catalog(
    State(st): State<AppState>,
    Path((cp, name)): Path<(String, String)>,
    post: FormPost,
) -> Page {
    let result = catalogs::delete(
        State(st.clone()),
        post.session.principal.clone(),
        Path((cp.clone(), name.clone())),
    )
    .await
    .map(|_| ());
    let result = post
        .audited(
            &st,
            "DELETE /compute-planes/{cp}/catalogs/{name}",
            &format!("/compute-planes/{cp}/catalogs/{name}"),
            StatusCode::OK,
            result,
        )
        .await;
    match result {
        Ok(()) => {
            catalogs_page(
                &st,
                &post.session,
                &cp,
                Some(&format!("Catalog {name} deleted.")),
                false,
            )
            .await
        }
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => catalogs_page(&st, &post.session, &cp, Some(&e.to_string()), true).await,
    }
}

// ---------------------------------------------------------------------------------------
// Query log and metrics

/// `GET /ui/cp/{cp}/queries?cluster=&user=&state=&q=&cursor=`.
pub async fn queries(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let v = cp_json(&st, &session, &cp).await?;
    let mut params: HashMap<String, String> = q
        .iter()
        .filter(|(k, v)| {
            ["cluster", "user", "state", "q", "cursor"].contains(&k.as_str()) && !v.is_empty()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.insert("limit".into(), "50".into());
    let (log, error) = match telemetry::query_log(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.clone()),
        Query(params.clone()),
    )
    .await
    {
        Ok(Json(log)) => (log, None),
        Err(e) if shown_as_page(&e) => {
            return Err(fail(&session, &e));
        }
        Err(e) => (json!({"records": []}), Some(e.to_string())),
    };
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let cursor = log["next_cursor"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| log["next_cursor"].as_i64().map(|c| c.to_string()));
    let next = cursor.map(|c| {
        let mut p: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "cursor" && k.as_str() != "limit")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        p.push(("cursor".into(), c.to_string()));
        format!(
            "/ui/cp/{cp}/queries?{}",
            serde_urlencoded::to_string(&p).unwrap_or_default()
        )
    });
    Ok(page(
        Some(&session),
        "Query log",
        html! {
            (cp_nav(&cp, &s(&v["name"]), "Query log"))
            form.filters method="get" action={ "/ui/cp/" (cp) "/queries" } {
                label { "Cluster" input name="cluster" value=(get("cluster")); }
                label { "User" input name="user" value=(get("user")); }
                label { "State"
                    select name="state" {
                        option value="" { "any" }
                        @for st_ in ["FINISHED", "FAILED"] {
                            option value=(st_) selected[get("state") == st_] { (st_) }
                        }
                    }
                }
                label { "Text contains" input name="q" value=(get("q")); }
                button type="submit" { "Filter" }
            }
            (flash(error.as_deref(), true))
            p.hint { "Query text is redacted in the agent: literals never leave the customer's VPC." }
            div #live-queries data-live {
                table.list #queries {
                    thead { tr {
                        th { "Query id" } th { "Cluster" } th { "User" } th { "State" } th { "Query (redacted)" }
                        th { "Created (UTC)" } th { "Ended (UTC)" } th { "Elapsed" } th { "Error" }
                    } }
                    tbody {
                        @for r in log["records"].as_array().into_iter().flatten() {
                            tr {
                                td.mono { (s(&r["query_id"])) }
                                td { (s(&r["cluster"])) }
                                td { (s(&r["user"])) }
                                td { span class={ "state " (s(&r["state"]).to_lowercase()) } { (s(&r["state"])) } }
                                td.mono.query { (s(&r["query"])) }
                                td.nowrap title=(s(&r["create_time"])) { (short_time(&r["create_time"])) }
                                td.nowrap title=(s(&r["end_time"])) { (short_time(&r["end_time"])) }
                                td { (r["elapsed_time_ms"].as_i64().map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_default()) }
                                td.error { (s(&r["error_code"])) @if !s(&r["error_message"]).is_empty() { ": " (s(&r["error_message"])) } }
                            }
                        }
                    }
                }
            }
            @if let Some(n) = next { p { a href=(n) #next-page { "Older queries →" } } }
        },
    )
    .into_response())
}

/// `GET /ui/cp/{cp}/metrics?range=1h`: charts over time.
pub async fn metrics(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let v = cp_json(&st, &session, &cp).await?;
    let range_ms: i64 = match q.get("range").map(String::as_str) {
        Some("15m") => 900_000,
        Some("6h") => 6 * 3_600_000,
        Some("24h") => 24 * 3_600_000,
        _ => 3_600_000,
    };
    let step = (range_ms / 120 / 1000).max(5);
    let now = st.clock.now_ms();
    let since = now - range_ms;
    let mut params = HashMap::new();
    params.insert("since".to_owned(), since.to_string());
    params.insert("until".to_owned(), (now + 1).to_string());
    params.insert("step".to_owned(), format!("{step}s"));
    let Json(m) = telemetry::metrics(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.clone()),
        Query(params),
    )
    .await
    .map_err(|e| fail(&session, &e))?;
    let series_of = |name: &str| -> Vec<Series> {
        m["series"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["name"] == name)
            .map(|x| Series {
                label: s(&x["cluster"]),
                points: x["points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?)))
                    .collect(),
            })
            .collect()
    };
    // Input rate from the cumulative input bytes: difference over time, per second.
    let rate = |name: &str| -> Vec<Series> {
        series_of(name)
            .into_iter()
            .map(|mut x| {
                x.points = x
                    .points
                    .windows(2)
                    .filter(|w| w[1].0 > w[0].0)
                    .map(|w| {
                        (
                            w[1].0,
                            ((w[1].1 - w[0].1) / ((w[1].0 - w[0].0) as f64 / 1000.0)).max(0.0),
                        )
                    })
                    .collect();
                x
            })
            .collect()
    };
    let charts = [
        ("Running queries", "", series_of("running_queries")),
        ("Queued queries", "", series_of("queued_queries")),
        ("Active workers", "", series_of("active_workers")),
        (
            "Reserved memory",
            "bytes",
            series_of("reserved_memory_bytes"),
        ),
        ("Input rate", "bytes/s", rate("input_bytes_total")),
    ];
    Ok(page(
        Some(&session),
        "Metrics",
        html! {
            (cp_nav(&cp, &s(&v["name"]), "Metrics"))
            nav.ranges {
                @for r in ["15m", "1h", "6h", "24h"] {
                    a href={ "/ui/cp/" (cp) "/metrics?range=" (r) } { (r) }
                }
            }
            div #live-charts.charts data-live {
                @for (title, unit, series) in &charts {
                    (chart::line_chart(title, unit, series, since, now))
                }
            }
        },
    )
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Usage and audit

/// `GET /ui/tenants/{t}/usage`.
pub async fn usage(
    State(st): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Page {
    let Json(u) = usage::get(
        State(st.clone()),
        session.principal.clone(),
        Path(tenant.clone()),
        Ok(Query(serde_json::from_value(json!({})).map_err(|_| {
            layout::error_page(
                Some(&session),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )
        })?)),
    )
    .await
    .map_err(|e| fail(&session, &e))?;
    Ok(page(
        Some(&session),
        "Usage",
        html! {
            h1 { "Usage" }
            p.hint { "Node-hours (coordinator and ready workers), measured from what the agents report, from "
                (s(&u["since"])) " to " (s(&u["until"])) ". Total: " strong #total-node-hours { (s(&u["total_node_hours"])) } " node-hours." }
            h2 { "By month" }
            table.list #usage-monthly {
                thead { tr { th { "Month" } th { "Compute plane" } th { "Cluster" } th { "Node-hours" } } }
                tbody {
                    @for r in u["monthly"].as_array().into_iter().flatten() {
                        tr { td { (s(&r["month"])) } td.mono { (s(&r["compute_plane_id"])) } td { (s(&r["cluster"])) } td { (s(&r["node_hours"])) } }
                    }
                }
            }
            h2 { "By hour" }
            div #live-usage data-live {
                table.list #usage-hourly {
                    thead { tr { th { "Hour" } th { "Cluster" } th { "Node-hours" } } }
                    tbody {
                        @for r in u["hourly"].as_array().into_iter().flatten().rev().take(72) {
                            tr { td { (s(&r["hour"])) } td { (s(&r["cluster"])) } td { (s(&r["node_hours"])) } }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}

/// `GET /ui/audit?actor=&action=&result=&cursor=` (admin).
pub async fn audit(
    State(st): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let mut params = serde_json::Map::new();
    for k in ["actor", "action", "result", "cursor", "tenant"] {
        if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
            params.insert(
                k.into(),
                if k == "cursor" {
                    json!(v.parse::<i64>().unwrap_or(0))
                } else {
                    json!(v)
                },
            );
        }
    }
    let query: audit::AuditQuery = serde_json::from_value(Value::Object(params))
        .map_err(|e| layout::error_page(Some(&session), StatusCode::BAD_REQUEST, &e.to_string()))?;
    let Json(log) = audit::list(
        State(st.clone()),
        session.principal.clone(),
        Ok(Query(query)),
    )
    .await
    .map_err(|e| fail(&session, &e))?;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    Ok(page(
        Some(&session),
        "Audit log",
        html! {
            h1 { "Audit log" }
            form.filters method="get" action="/ui/audit" {
                label { "Actor (token id)" input name="actor" value=(get("actor")); }
                label { "Action contains" input name="action" value=(get("action")); }
                label { "Result"
                    select name="result" {
                        option value="" { "any" }
                        @for r in ["ok", "denied", "rejected", "error"] {
                            option value=(r) selected[get("result") == r] { (r) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            div #live-audit data-live {
                table.list #audit {
                    thead { tr { th { "When" } th { "Actor" } th { "Role" } th { "Action" } th { "Target" } th { "Result" } th { "Client" } th { "Via" } } }
                    tbody {
                        @for e in log["entries"].as_array().into_iter().flatten() {
                            tr {
                                td.nowrap title=(s(&e["at"])) { (short_time(&e["at"])) }
                                td.mono { (s(&e["token_id"])) }
                                td { (s(&e["role"])) }
                                td.mono { (s(&e["action"])) }
                                td.mono { (s(&e["target"])) }
                                td { span class={ "result " (s(&e["result"])) } { (s(&e["result"])) " (" (s(&e["status"])) ")" } }
                                td.mono { (s(&e["client_addr"])) }
                                td { (s(&e["via"])) }
                            }
                        }
                    }
                }
            }
            @if let Some(c) = log["next_cursor"].as_i64() {
                @let keep: Vec<(String, String)> = q.iter()
                    .filter(|(k, v)| ["actor", "action", "result", "tenant"].contains(&k.as_str()) && !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .chain(std::iter::once(("cursor".to_owned(), c.to_string())))
                    .collect();
                p { a #older href={ "/ui/audit?" (serde_urlencoded::to_string(&keep).unwrap_or_default()) } { "Older entries →" } }
            }
        },
    )
    .into_response())
}
