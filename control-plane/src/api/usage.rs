//! `GET /tenants/{t}/usage`: node-hours per cluster per hour and per month, integrated from
//! the ready pods the agents report (never from the spec) — the basis of pay-as-you-go
//! billing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use time::OffsetDateTime;

use super::auth::Principal;
use super::error::ApiError;
use crate::state::AppState;
use crate::store::UsageRow;

/// Query of `GET /tenants/{t}/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
}

const HOUR_MS: f64 = 3_600_000.0;

/// Start of the month of `ms` (UTC), as Unix ms.
fn month_start_ms(ms: i64) -> i64 {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.replace_day(1).ok())
        .map(|t| t.replace_time(time::Time::MIDNIGHT))
        .map_or(0, |t| t.unix_timestamp() * 1000)
}

/// `YYYY-MM` of `ms`.
fn month_label(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).map_or_else(
        |_| String::new(),
        |t| format!("{:04}-{:02}", t.year(), u8::from(t.month())),
    )
}

/// Rounds node-hours for display: three decimals.
fn hours(node_ms: i64) -> f64 {
    (node_ms as f64 / HOUR_MS * 1000.0).round() / 1000.0
}

/// Node-hours of one cluster in one hour.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct HourlyUsage {
    /// The compute plane.
    pub compute_plane_id: String,
    /// The cluster.
    pub cluster: String,
    /// The hour's start, RFC 3339.
    #[schema(format = DateTime)]
    pub hour: Option<String>,
    /// Ready Presto pods × hours, three decimals.
    pub node_hours: f64,
}

/// Node-hours of one cluster in one month.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MonthlyUsage {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// The compute plane.
    pub compute_plane_id: String,
    /// The cluster.
    pub cluster: String,
    /// Ready Presto pods × hours, three decimals.
    pub node_hours: f64,
}

/// `GET /tenants/{t}/usage`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// The tenant.
    pub tenant_id: String,
    /// Start of the range, RFC 3339.
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// End of the range, RFC 3339.
    #[schema(format = DateTime)]
    pub until: Option<String>,
    /// Per hour and cluster.
    pub hourly: Vec<HourlyUsage>,
    /// Per month and cluster.
    pub monthly: Vec<MonthlyUsage>,
    /// The sum.
    pub total_node_hours: f64,
}

/// Usage of a tenant: the rows, and the sums by month.
pub fn summarize(rows: &[UsageRow]) -> (Vec<HourlyUsage>, Vec<MonthlyUsage>, f64) {
    let hourly = rows
        .iter()
        .map(|r| HourlyUsage {
            compute_plane_id: r.compute_plane_id.clone(),
            cluster: r.cluster.clone(),
            hour: tether_shared::timestamps::rfc3339_from_ms(r.hour_ms),
            node_hours: hours(r.node_ms),
        })
        .collect();
    let mut months: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for r in rows {
        *months
            .entry((
                month_label(r.hour_ms),
                r.compute_plane_id.clone(),
                r.cluster.clone(),
            ))
            .or_default() += r.node_ms;
    }
    let monthly = months
        .into_iter()
        .map(|((month, compute_plane_id, cluster), ms)| MonthlyUsage {
            month,
            compute_plane_id,
            cluster,
            node_hours: hours(ms),
        })
        .collect();
    let total = hours(rows.iter().map(|r| r.node_ms).sum());
    (hourly, monthly, total)
}

/// `GET /tenants/{t}/usage?since=&until=` (viewer): defaults to the current month so far.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/usage",
    tag = "usage",
    operation_id = "get_usage",
    security(("bearer" = [])),
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("since" = Option<String>, Query, format = DateTime, description = "Start, RFC 3339 (default: the start of the current month, UTC)"),
        ("until" = Option<String>, Query, format = DateTime, description = "End, RFC 3339 (default: now)"),
    ),
    responses(
        (status = 200, description = "Node-hours by hour and month", body = UsageView),
        (status = 400, description = "Invalid parameter; `error.field` names it", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such tenant visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path(tenant): Path<String>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsageView>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        field: None,
    })?;
    p.see(&tenant, "tenant")?;
    if s.store.get_tenant(&tenant).await?.is_none() {
        return Err(ApiError::NotFound("tenant"));
    }
    let now = s.clock.now_ms();
    let parse = |name: &str, v: &Option<String>, default: i64| match v {
        Some(t) => tether_shared::timestamps::ms_from_rfc3339(t)
            .ok_or_else(|| ApiError::field(name, "must be an RFC 3339 time")),
        None => Ok(default),
    };
    let since = parse("since", &q.since, month_start_ms(now))?;
    let until = parse("until", &q.until, now + 1)?;
    if until <= since {
        return Err(ApiError::field("until", "must be after since"));
    }
    // Hours are stored by their start; include the hour `since` falls in.
    let rows = s
        .store
        .usage(&tenant, since - since.rem_euclid(3_600_000), until)
        .await?;
    let (hourly, monthly, total) = summarize(&rows);
    Ok(Json(UsageView {
        tenant_id: tenant,
        since: tether_shared::timestamps::rfc3339_from_ms(since),
        until: tether_shared::timestamps::rfc3339_from_ms(until),
        hourly,
        monthly,
        total_node_hours: total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_at_midnight_on_the_first() {
        // 2026-11-26T09:27:38Z
        let ms = 1_795_685_258_000;
        let start = month_start_ms(ms);
        assert_eq!(
            tether_shared::timestamps::rfc3339_from_ms(start).as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        assert_eq!(month_label(ms), "2026-11");
    }
}
