//! Telemetry reads: `GET /compute-planes/{cp}/query-log` (filters, cursor pagination) and
//! `GET /compute-planes/{cp}/metrics` (series by name and cluster, time range, step).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};

use super::auth::Principal;
use super::compute_planes::visible_cp;
use super::error::ApiError;
use crate::state::AppState;
use crate::store::{QueryFilter, QueryRow};

/// The documented schema of a time parameter: an RFC 3339 date-time or Unix milliseconds
/// (at most 18 digits).
pub struct TimeParam;

impl utoipa::PartialSchema for TimeParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(MILLIS_PATTERN)),
            )
            .description(Some("RFC 3339 or Unix milliseconds"))
            .into()
    }
}

impl utoipa::ToSchema for TimeParam {}

/// Unix milliseconds as a time parameter.
const MILLIS_PATTERN: &str = "^-?[0-9]{1,18}$";

/// An integer of at most 18 digits, as [`MILLIS_PATTERN`] says.
fn short_integer(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let ok = (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| v.parse().ok()).flatten()
}

/// A time parameter: RFC 3339 or Unix milliseconds.
fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = q.get(name) else {
        return Ok(None);
    };
    if let Some(ms) = short_integer(v) {
        return Ok(Some(ms));
    }
    tether_shared::timestamps::ms_from_rfc3339(v)
        .map(Some)
        .ok_or_else(|| {
            ApiError::field(
                name,
                "must be RFC 3339 (2026-11-26T08:00:00Z) or Unix milliseconds",
            )
        })
}

fn text_param(q: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    match q.get(name) {
        Some(v) if v.len() > 256 => Err(ApiError::field(name, "must be at most 256 characters")),
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other.cloned()),
    }
}

fn record_view(r: &QueryRow) -> QueryRecordView {
    QueryRecordView {
        query_id: r.query_id.clone(),
        cluster: r.cluster.clone(),
        user: r.user.clone(),
        source: r.source.clone(),
        catalog: r.catalog.clone(),
        schema: r.schema.clone(),
        state: r.state.clone(),
        error_type: r.error_type.clone(),
        error_code: r.error_code.clone(),
        error_message: r.error_message.clone(),
        create_time: tether_shared::timestamps::rfc3339_from_ms(r.create_time_ms),
        end_time: tether_shared::timestamps::rfc3339_from_ms(r.end_time_ms),
        queued_time_ms: r.queued_time_ms,
        elapsed_time_ms: r.elapsed_time_ms,
        cpu_time_ms: r.cpu_time_ms,
        peak_memory_bytes: r.peak_memory_bytes,
        input_rows: r.input_rows,
        input_bytes: r.input_bytes,
        output_rows: r.output_rows,
        query: r.query.clone(),
        fingerprint: r.fingerprint.clone(),
    }
}

/// One query of the log: metadata, and the text as the compute plane's redaction left it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QueryRecordView {
    /// Presto's query id.
    pub query_id: String,
    /// The cluster it ran on.
    pub cluster: String,
    /// Who ran it.
    pub user: String,
    /// The client's `X-Presto-Source`.
    pub source: String,
    /// Session catalog.
    pub catalog: String,
    /// Session schema.
    pub schema: String,
    /// `FINISHED` or `FAILED`.
    pub state: String,
    /// Presto's error type (`USER_ERROR`, …), empty when it finished.
    pub error_type: String,
    /// Presto's error name.
    pub error_code: String,
    /// The error message, redacted like the text.
    pub error_message: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub create_time: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub end_time: Option<String>,
    /// Milliseconds queued.
    pub queued_time_ms: i64,
    /// Milliseconds from creation to end.
    pub elapsed_time_ms: i64,
    /// CPU milliseconds.
    pub cpu_time_ms: i64,
    /// Peak memory.
    pub peak_memory_bytes: i64,
    /// Rows read.
    pub input_rows: i64,
    /// Bytes read.
    pub input_bytes: i64,
    /// Rows returned.
    pub output_rows: i64,
    /// The text: redacted (literals replaced), full, or empty, as the settings say.
    pub query: String,
    /// The text's shape without literals, hashed: the same for repeats of one query.
    pub fingerprint: String,
}

/// One metric of one cluster, averaged per bucket.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    /// The metric.
    pub name: String,
    /// The cluster.
    pub cluster: String,
    /// `[bucket start in Unix ms, mean value]`, oldest first.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<(i64, f64)>,
}

/// `GET /compute-planes/{cp}/metrics`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MetricsView {
    /// One series per metric and cluster.
    pub series: Vec<SeriesView>,
    /// Start of the range, RFC 3339.
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// End of the range, RFC 3339.
    #[schema(format = DateTime)]
    pub until: Option<String>,
    /// Bucket width.
    pub step_ms: i64,
}

/// A page of the query log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QueryLogPage {
    /// Newest first.
    pub records: Vec<QueryRecordView>,
    /// Where the next page starts; none at the end.
    pub next_cursor: Option<String>,
    /// Records the agent had to drop (its spool was full).
    pub dropped_records: u64,
}

/// `GET /compute-planes/{cp}/query-log?cluster=&user=&state=&since=&until=&q=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/query-log",
    tag = "telemetry",
    operation_id = "query_log",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("cluster" = Option<String>, Query, description = "Only this cluster's queries"),
        ("user" = Option<String>, Query, description = "Only this Presto user's queries"),
        ("state" = Option<String>, Query, description = "Only queries in this state, e.g. FINISHED or FAILED"),
        ("since" = Option<TimeParam>, Query, description = "Earliest create time: RFC 3339 (2026-11-26T08:00:00Z) or Unix milliseconds"),
        ("until" = Option<TimeParam>, Query, description = "Latest create time: RFC 3339 (2026-11-26T08:00:00Z) or Unix milliseconds"),
        ("q" = Option<String>, Query, description = "Text the query contains (at most 256 characters)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Records per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,18}$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the query log, newest first", body = QueryLogPage),
        (status = 400, description = "Invalid parameter; `error.field` names it", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn query_log(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<QueryLogPage>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let limit = match q.get("limit") {
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::field("limit", "must be between 1 and 1000"))?,
        None => 100,
    };
    let cursor = match q.get("cursor") {
        Some(v) => Some(
            short_integer(v)
                .ok_or_else(|| ApiError::field("cursor", "must be a cursor from next_cursor"))?,
        ),
        None => None,
    };
    let filter = QueryFilter {
        cluster: text_param(&q, "cluster")?,
        user: text_param(&q, "user")?,
        state: text_param(&q, "state")?,
        since_ms: time_param(&q, "since")?,
        until_ms: time_param(&q, "until")?,
        text: text_param(&q, "q")?,
        limit,
        cursor,
    };
    let (rows, next) = s.store.query_log(&cp.id, &filter).await?;
    let dropped = cp.telemetry_dropped;
    Ok(Json(QueryLogPage {
        records: rows.iter().map(record_view).collect(),
        next_cursor: next.map(|c| c.to_string()),
        dropped_records: dropped,
    }))
}

/// `GET /compute-planes/{cp}/metrics?name=&cluster=&since=&until=&step=`: samples averaged
/// into `step`-wide buckets (default 60 s) over the range (default: the last hour).
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/metrics",
    tag = "telemetry",
    operation_id = "metrics",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("name" = Option<String>, Query, description = "Only this metric"),
        ("cluster" = Option<String>, Query, description = "Only this cluster's series"),
        ("since" = Option<TimeParam>, Query, description = "Start of the range: RFC 3339 (2026-11-26T08:00:00Z) or Unix milliseconds (default: an hour before until)"),
        ("until" = Option<TimeParam>, Query, description = "End of the range: RFC 3339 (2026-11-26T08:00:00Z) or Unix milliseconds (default: now)"),
        ("step" = Option<String>, Query, description = "Bucket width, a duration of at least 1s such as 60s (default 60s; at most 10000 points)"),
    ),
    responses(
        (status = 200, description = "The series over the range", body = MetricsView),
        (status = 400, description = "Invalid parameter; `error.field` names it", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn metrics(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<MetricsView>, ApiError> {
    let cp = visible_cp(&s, &p, &cp).await?;
    let now_ms = s.clock.now() * 1000;
    let until = time_param(&q, "until")?.unwrap_or(now_ms + 1);
    let since = time_param(&q, "since")?.unwrap_or(until - 3_600_000);
    if since >= until {
        return Err(ApiError::field("since", "must be before until"));
    }
    let step_ms = match q.get("step") {
        Some(v) => humantime::parse_duration(v)
            .ok()
            .map(|d| d.as_millis() as i64)
            .filter(|ms| *ms >= 1000)
            .ok_or_else(|| {
                ApiError::field("step", "must be a duration of at least 1s, e.g. 60s")
            })?,
        None => 60_000,
    };
    if (until - since) / step_ms > 10_000 {
        return Err(ApiError::field(
            "step",
            "too small for the range (at most 10000 points)",
        ));
    }
    let samples = s
        .store
        .metric_samples(
            &cp.id,
            text_param(&q, "name")?.as_deref(),
            text_param(&q, "cluster")?.as_deref(),
            since,
            until,
        )
        .await?;
    // (name, cluster) -> bucket start -> (sum, count)
    let mut series: BTreeMap<(String, String), BTreeMap<i64, (f64, u32)>> = BTreeMap::new();
    for (cluster, name, ts, value) in samples {
        let bucket = since + (ts - since) / step_ms * step_ms;
        let e = series
            .entry((name, cluster))
            .or_default()
            .entry(bucket)
            .or_insert((0.0, 0));
        e.0 += value;
        e.1 += 1;
    }
    let series = series
        .into_iter()
        .map(|((name, cluster), points)| SeriesView {
            name,
            cluster,
            points: points
                .into_iter()
                .map(|(t, (sum, n))| (t, sum / f64::from(n)))
                .collect(),
        })
        .collect();
    Ok(Json(MetricsView {
        series,
        since: tether_shared::timestamps::rfc3339_from_ms(since),
        until: tether_shared::timestamps::rfc3339_from_ms(until),
        step_ms,
    }))
}
