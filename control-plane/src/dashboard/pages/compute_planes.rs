//! A compute plane: overview, CloudFormation, enrollment, revocation.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::html;

use crate::api;
use crate::authz::Role;
use crate::dashboard::layout::{cp_nav, flash, page_at};
use crate::dashboard::session::{FormPost, Session};
use crate::state::AppState;

use super::*;

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
    let a = &v.agent;
    let admin = can(session, Role::Admin);
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}")),
        "Compute plane",
        html! {
            (cp_nav(cp, &v.name, "Overview"))
            (flash(msg, err))
            div #live-agent data-live {
                h2 { "Agent " (agent_badge(a)) }
                dl.facts #agent {
                    dt { "Connected" } dd data-field="connected" { (a.connected) }
                    dt { "Version" } dd { (a.version.as_deref().unwrap_or("")) }
                    dt { "Connected since" } dd { (a.connected_since.as_deref().unwrap_or("")) }
                    dt { "Last heartbeat" } dd { (a.last_heartbeat.as_deref().unwrap_or("")) }
                    dt { "Remote address" } dd.mono { (a.remote_addr.as_deref().unwrap_or("")) }
                    dt { "Certificate serial" } dd.mono { (a.certificate_serial.as_deref().unwrap_or("")) }
                    dt { "Certificate expires" } dd { (a.certificate_expires_at.as_deref().unwrap_or("")) }
                    dt { "Desired generation" } dd { (v.generation) " (applied " (v.applied_generation) ")" }
                    dt { "Telemetry records dropped by the agent" } dd #telemetry-dropped {
                        (v.telemetry_dropped_records)
                        @let d = &v.telemetry_dropped_by_class;
                        " (query records " span data-field="dropped-query-records" { (d.query_records) }
                        ", metrics " span data-field="dropped-metrics" { (d.metrics) }
                        ", events " span data-field="dropped-events" { (d.events) } ")"
                    }
                }
                // What the agent reports about the compute plane as a whole (a refused
                // desired-state document, for one), and every change the customer's
                // guardrails refused (also of clusters deleted here and held in the VPC);
                // other per-cluster ones are on the cluster pages.
                @let plane: Vec<&tether_shared::status::Condition> = v.applied_conditions.iter()
                    .filter(|c| c.cluster.is_empty() || c.kind == "GuardrailRefused").collect();
                @if !plane.is_empty() {
                    h3 { "Agent conditions" }
                    table.list #agent-conditions {
                        tr { th { "Cluster" } th { "Type" } th { "Status" } th { "Reason" } th { "Message" } }
                        @for c in plane {
                            tr { td { (c.cluster) } td { (c.kind) } td { (c.status) } td { (c.reason) } td { (c.message) } }
                        }
                    }
                }
            }
            section.card {
                h2 { "Install the agent" }
                p { "Region " (v.region) ". The agent dials out to the control plane; it needs no inbound access. "
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
    let result = api::compute_planes::create_enrollment_token(
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
                t.expires_at, t.token
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
    let result = api::compute_planes::revoke_agent(
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
