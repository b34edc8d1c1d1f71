//! Clusters: list, create, scale, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde_json::{Value, json};

use crate::api;
use crate::api::error::ApiError;
use crate::authz::Role;
use crate::dashboard::layout::{cp_nav, flash, page, page_at};
use crate::dashboard::session::{FormPost, Session};
use crate::state::AppState;
use tether_shared::spec::Workers;
use tether_shared::status::Phase;

use super::*;

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
    let Json(list) = api::clusters::list(State(st.clone()), p.clone(), Path(cp.to_owned()))
        .await
        .map_err(|e| fail(session, &e))?;
    let Json(cats) = api::catalogs::list(State(st.clone()), p, Path(cp.to_owned()))
        .await
        .map_err(|e| fail(session, &e))?;
    let operator = can(session, Role::Operator);
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}/clusters")),
        "Clusters",
        html! {
            (cp_nav(cp, &v.name, "Clusters"))
            (flash(msg, err))
            div #live-clusters data-live {
                table.list #clusters {
                    thead { tr {
                        th { "Cluster" } th { "Phase" } th { "Workers ready" } th { "Generation" }
                        th { "Endpoint" } th { "Last error" }
                    } }
                    tbody {
                        @for c in &list.clusters {
                            @let name = &c.name;
                            tr data-cluster=(name) {
                                td { a href={ "/ui/cp/" (cp) "/clusters/" (name) } { (name) } }
                                td { span class={ "phase " (c.status.phase.as_str().to_lowercase()) } data-field="phase" { (c.status.phase) } }
                                td data-field="workers" { (c.status.ready_workers) " / " (c.status.desired_workers) }
                                td { (c.generation) " (observed " (c.observed_generation) ")" }
                                td.mono { (c.status.endpoint.as_deref().unwrap_or("")) }
                                td.error { (c.status.last_error.as_deref().unwrap_or("")) }
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
                        @for cat in &cats.catalogs {
                            label.check { input type="checkbox" name="catalogs" value=(cat.name); " " (cat.name) }
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
) -> Result<api::clusters::ClusterView, ApiError> {
    let result = match body(spec) {
        Ok(b) => api::clusters::put(
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
    let Json(c) = api::clusters::get(
        State(st.clone()),
        session.principal.clone(),
        Path((cp.to_owned(), name.to_owned())),
    )
    .await
    .map_err(|e| fail(session, &e))?;
    let st_ = &c.status;
    let operator = can(session, Role::Operator);
    let (workers, count) = match c.spec.workers {
        Workers::Fixed { count } => (count.to_string(), count.to_string()),
        Workers::Autoscaling { min, max, .. } => {
            (format!("{min}–{max} (autoscaling)"), String::new())
        }
    };
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}/clusters/{name}")),
        name,
        html! {
            (cp_nav(cp, &v.name, "Clusters"))
            h2 { "Cluster " span.name { (name) } }
            (flash(msg, err))
            div #live-cluster data-live {
                dl.facts #cluster {
                    dt { "Phase" } dd { span class={ "phase " (st_.phase.as_str().to_lowercase()) } #phase data-field="phase" { (st_.phase) } }
                    dt { "Workers ready" } dd #ready-workers data-field="ready_workers" { (st_.ready_workers) " / " (st_.desired_workers) }
                    dt { "Coordinator ready" } dd { (st_.coordinator_ready) }
                    dt { "Generation" } dd #generation { (c.generation) }
                    dt { "Observed generation" } dd #observed-generation { (c.observed_generation) }
                    dt { "Endpoint" } dd.mono { (st_.endpoint.as_deref().unwrap_or("")) }
                    dt { "Last error" } dd.error { (st_.last_error.as_deref().unwrap_or("")) }
                    dt { "Spec" } dd { "Presto " (c.spec.presto_version) ", workers " (workers)
                        ", catalogs " (c.spec.catalogs.join(", ")) }
                }
                h3 { "Conditions" }
                table.list #conditions {
                    thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } } }
                    tbody {
                        @for k in &st_.conditions {
                            tr { td { (k.kind) } td { (k.status) } td { (k.reason) } td { (k.message) } }
                        }
                    }
                }
            }
            @if operator && st_.phase != Phase::Deleting {
                div.cards {
                    form.card #scale-cluster method="post" action={ "/ui/cp/" (cp) "/clusters/" (name) "/scale" } {
                        h3 { "Scale" }
                        input type="hidden" name="csrf" value=(session.csrf);
                        label { "Workers" input #scale-workers name="workers" type="number" min="0" max="500" value=(count) required; }
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
    let current = api::clusters::get(
        State(st.clone()),
        post.session.principal.clone(),
        Path((cp.clone(), name.clone())),
    )
    .await
    .map_err(|e| fail(&post.session, &e))?;
    let base = serde_json::to_value(&current.0.spec).unwrap_or_default();
    let spec = cluster_spec_from_form(&post, Some(&base));
    match put_cluster(&st, &post, &cp, &name, &spec).await {
        Ok(c) => {
            let m = format!(
                "Scaling to {} workers (generation {}).",
                post.field("workers"),
                c.generation
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
    let _exists = api::clusters::get(
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
            (cp_nav(&cp, &v.name, "Clusters"))
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
    let result = api::clusters::delete(
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
