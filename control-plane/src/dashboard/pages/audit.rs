//! Usage and the audit log.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::html;
use serde_json::{Value, json};

use crate::api;
use crate::dashboard::layout::{self, page};
use crate::dashboard::session::Session;
use crate::state::AppState;

use super::*;

/// `GET /ui/tenants/{t}/usage`.
pub async fn usage(
    State(st): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Page {
    let Json(u) = api::usage::get(
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
                (u.since.as_deref().unwrap_or("")) " to " (u.until.as_deref().unwrap_or("")) ". Total: " strong #total-node-hours { (u.total_node_hours) } " node-hours." }
            h2 { "By month" }
            table.list #usage-monthly {
                thead { tr { th { "Month" } th { "Compute plane" } th { "Cluster" } th { "Node-hours" } } }
                tbody {
                    @for r in &u.monthly {
                        tr { td { (r.month) } td.mono { (r.compute_plane_id) } td { (r.cluster) } td { (r.node_hours) } }
                    }
                }
            }
            h2 { "By hour" }
            div #live-usage data-live {
                table.list #usage-hourly {
                    thead { tr { th { "Hour" } th { "Cluster" } th { "Node-hours" } } }
                    tbody {
                        @for r in u.hourly.iter().rev().take(72) {
                            tr { td { (r.hour.as_deref().unwrap_or("")) } td { (r.cluster) } td { (r.node_hours) } }
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
    let query: api::audit::AuditQuery = serde_json::from_value(Value::Object(params))
        .map_err(|e| layout::error_page(Some(&session), StatusCode::BAD_REQUEST, &e.to_string()))?;
    let Json(log) = api::audit::list(
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
                        @for e in &log.entries {
                            tr {
                                @let at = e.at.as_deref().unwrap_or("");
                                @let result = e.result.as_str();
                                td.nowrap title=(at) { (short_time(at)) }
                                td.mono { (e.token_id.as_deref().unwrap_or("")) }
                                td { (e.role.as_deref().unwrap_or("")) }
                                td.mono { (e.action) }
                                td.mono { (e.target) }
                                td { span class={ "result " (result) } { (result) " (" (e.status) ")" } }
                                td.mono { (e.client_addr) }
                                td { (e.via) }
                            }
                        }
                    }
                }
            }
            @if let Some(c) = log.next_cursor {
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
