//! The query log and the metrics charts.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use maud::html;

use crate::api;
use crate::dashboard::chart::{self, Series};
use crate::dashboard::layout::{cp_nav, flash, page};
use crate::dashboard::session::Session;
use crate::state::AppState;

use super::*;

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
    let (log, error) = match api::telemetry::query_log(
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
        Err(e) => (
            api::telemetry::QueryLogPage {
                records: Vec::new(),
                next_cursor: None,
                dropped_records: 0,
            },
            Some(e.to_string()),
        ),
    };
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let cursor = log.next_cursor.clone();
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
            (cp_nav(&cp, &v.name, "Query log"))
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
                        @for r in &log.records {
                            tr {
                                td.mono { (r.query_id) }
                                td { (r.cluster) }
                                td { (r.user) }
                                td { span class={ "state " (r.state.to_lowercase()) } { (r.state) } }
                                td.mono.query { (r.query) }
                                @let (created, ended) = (r.create_time.as_deref().unwrap_or(""), r.end_time.as_deref().unwrap_or(""));
                                td.nowrap title=(created) { (short_time(created)) }
                                td.nowrap title=(ended) { (short_time(ended)) }
                                td { (format!("{:.1} s", r.elapsed_time_ms as f64 / 1000.0)) }
                                td.error { (r.error_code) @if !r.error_message.is_empty() { ": " (r.error_message) } }
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
    let Json(m) = api::telemetry::metrics(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.clone()),
        Query(params),
    )
    .await
    .map_err(|e| fail(&session, &e))?;
    let series_of = |name: &str| -> Vec<Series> {
        m.series
            .iter()
            .filter(|x| x.name == name)
            .map(|x| Series {
                label: x.cluster.clone(),
                points: x.points.clone(),
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
            (cp_nav(&cp, &v.name, "Metrics"))
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
