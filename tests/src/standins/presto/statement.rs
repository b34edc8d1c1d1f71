//! The client protocol (`/v1/statement`), enough for `presto-python-client` and the Presto
//! CLI: POST the SQL, follow `nextUri` (each GET moves the query one transition on: QUEUED →
//! RUNNING → FINISHED with rows, or FAILED with an error), DELETE `nextUri` to cancel.
//!
//! Paths and the `slug` parameter follow `QueuedStatementResource` and
//! `ExecutingStatementResource`; `nextUri` and `infoUri` are built from the request's `Host`
//! header, as Presto builds them from the request URI (the CLI insists both name the same
//! host and port).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query as QueryParams, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::coordinator::Coordinator;
use super::failure::FailureInfo;
use super::query::{ClientSession, Query, QueryState, Timing};
use super::server::{BODY_LIMIT, Principal, Shared, Transport, text};

/// A statement query's timeline when its client stops polling: it still ends on its own.
const STATEMENT_TIMING: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(2));

/// `StatementStats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatementStats {
    state: &'static str,
    waiting_for_prerequisites: bool,
    queued: bool,
    scheduled: bool,
    nodes: u32,
    total_splits: u32,
    queued_splits: u32,
    running_splits: u32,
    completed_splits: u32,
    cpu_time_millis: u64,
    wall_time_millis: u64,
    waiting_for_prerequisites_time_millis: u64,
    queued_time_millis: u64,
    elapsed_time_millis: u64,
    processed_rows: u64,
    processed_bytes: u64,
    peak_memory_bytes: u64,
    peak_total_memory_bytes: u64,
    peak_task_total_memory_bytes: u64,
    spilled_bytes: u64,
}

/// `QueryError`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryError {
    message: String,
    sql_state: Option<String>,
    error_code: i32,
    error_name: &'static str,
    error_type: &'static str,
    retriable: bool,
    error_location: Option<Value>,
    failure_info: FailureInfo,
}

/// `QueryResults`; absent fields are left out, as Presto leaves them out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryResults {
    id: String,
    info_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_cancel_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    columns: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    stats: StatementStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<QueryError>,
    warnings: Vec<Value>,
}

/// `GET nextUri` query parameters.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct SlugParam {
    slug: Option<String>,
}

fn column(name: &str, raw: &str) -> Value {
    json!({
        "name": name,
        "type": raw,
        "typeSignature": {"rawType": raw, "typeArguments": [], "literalArguments": [], "arguments": []},
    })
}

/// The made-up result every finished statement returns.
fn result_set() -> (Value, Value) {
    let columns = json!([
        column("_col0", "bigint"),
        column("label", "varchar"),
        column("day", "date")
    ]);
    let data = json!([
        [1, "alpha", "2024-01-01"],
        [2, "beta", "2024-01-02"],
        [3, "gamma", "2024-01-03"]
    ]);
    (columns, data)
}

/// `http://host:port` as the client addressed us (behind the API server's service proxy the
/// Host header is the backend's own address).
fn base_uri(shared: &Shared, headers: &HeaderMap, transport: Option<Transport>) -> String {
    let own = match transport {
        Some(Transport::Https) => "https",
        _ => "http",
    };
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(own);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| shared.addr.to_string(), str::to_owned);
    format!("{proto}://{host}")
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn results(q: &Query, now: Instant, workers: u32, base: &str, next: Option<String>) -> Value {
    let s = q.snapshot(now);
    let ms = |d: Duration| d.as_millis() as u64;
    let stats = StatementStats {
        state: q.state.name(),
        waiting_for_prerequisites: false,
        queued: q.state == QueryState::Queued,
        scheduled: s.scheduled,
        nodes: if s.scheduled { workers + 1 } else { 0 },
        total_splits: s.total_drivers,
        queued_splits: s.queued_drivers,
        running_splits: s.running_drivers,
        completed_splits: s.completed_drivers,
        cpu_time_millis: ms(s.cpu_time),
        wall_time_millis: ms(s.cpu_time.mul_f64(1.15)),
        waiting_for_prerequisites_time_millis: 0,
        queued_time_millis: ms(s.queued_time),
        elapsed_time_millis: ms(s.elapsed_time),
        processed_rows: s.input_rows,
        processed_bytes: s.input_bytes,
        peak_memory_bytes: s.peak_user_memory,
        peak_total_memory_bytes: s.peak_total_memory,
        peak_task_total_memory_bytes: s.peak_total_memory / u64::from(s.total_tasks.max(1)),
        spilled_bytes: 0,
    };
    let error = q.failure.as_ref().map(|f| QueryError {
        message: f.info.message.clone(),
        sql_state: None,
        error_code: f.code.code,
        error_name: f.code.name,
        error_type: f.code.kind,
        retriable: f.code.retriable,
        error_location: None,
        failure_info: (&f.info).into(),
    });
    let (columns, data) = match q.state {
        QueryState::Finished => {
            let (c, d) = result_set();
            (Some(c), Some(d))
        }
        _ => (None, None),
    };
    let r = QueryResults {
        id: q.id.clone(),
        info_uri: format!("{base}/ui/query.html?{}", q.id),
        partial_cancel_uri: None,
        next_uri: next,
        columns,
        data,
        stats,
        error,
        warnings: Vec::new(),
    };
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// `POST /v1/statement`.
pub(crate) async fn post(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let Some(user) = header_value(headers, "x-presto-user") else {
        return text(StatusCode::BAD_REQUEST, "User must be set");
    };
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "Statement is too large");
    };
    let sql = String::from_utf8_lossy(&body).into_owned();
    if sql.trim().is_empty() {
        return text(StatusCode::BAD_REQUEST, "SQL statement is empty");
    }
    let remote = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let session = ClientSession {
        user,
        source: header_value(headers, "x-presto-source"),
        catalog: header_value(headers, "x-presto-catalog"),
        schema: header_value(headers, "x-presto-schema"),
        remote_address: remote,
        user_agent: header_value(headers, "user-agent"),
        client_info: header_value(headers, "x-presto-client-info"),
        client_tags: header_value(headers, "x-presto-client-tags")
            .map(|t| t.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default(),
    };
    let timing = Timing {
        queued_for: STATEMENT_TIMING.0,
        run_for: STATEMENT_TIMING.1,
        failure_pick: sql.to_ascii_lowercase().contains("fail").then_some(0),
    };
    // `checkCanSetUser` when the session is made, the catalog and table checks while the
    // statement is analysed: either fails the query (it is still created and recorded).
    let principal = parts.extensions.get::<Principal>().map(|p| p.0.as_str());
    let denied = shared.security.as_ref().and_then(|s| {
        s.check_statement(
            principal,
            &session.user,
            (session.catalog.as_deref(), session.schema.as_deref()),
            &sql,
        )
        .err()
    });
    let transport = parts.extensions.get::<Transport>().copied();
    let base = base_uri(&shared, headers, transport);
    let (mut c, now) = shared.coordinator();
    let id = c.create(sql, session, timing, now);
    if let Some(message) = denied {
        c.abort(&id, super::failure::Failure::access_denied(&message), now);
    }
    let Some(q) = c.get(&id) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "query vanished");
    };
    let next = format!("{base}/v1/statement/queued/{id}/1?slug={}", q.slug);
    Json(results(
        q,
        now,
        shared.opts.active_workers,
        &base,
        Some(next),
    ))
    .into_response()
}

/// `GET /v1/statement/{queued|executing}/{queryId}/{token}?slug=…`.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path((phase, id, token)): Path<(String, String, u64)>,
    QueryParams(p): QueryParams<SlugParam>,
    transport: Option<axum::Extension<Transport>>,
    headers: HeaderMap,
) -> Response {
    let base = base_uri(&shared, &headers, transport.map(|t| t.0));
    let (mut c, now) = shared.coordinator();
    if !addressed(&c, &phase, &id, p.slug.as_deref()) {
        return text(StatusCode::NOT_FOUND, "Query not found");
    }
    // The queued resource hands over once the query is dispatched; the executing resource
    // answers once the query is done.
    let until = |state: QueryState| match phase.as_str() {
        "queued" => state != QueryState::Queued,
        _ => state.is_done(),
    };
    while let Some(state) = c.get(&id).map(|q| q.state)
        && !until(state)
    {
        c.step(&id, now);
    }
    let Some(q) = c.get(&id) else {
        return text(StatusCode::NOT_FOUND, "Query not found");
    };
    let next = match (phase.as_str(), q.state) {
        (_, QueryState::Failed) | ("executing", QueryState::Finished) => None,
        ("queued", _) => Some(format!(
            "{base}/v1/statement/executing/{id}/0?slug={}",
            q.slug
        )),
        _ => Some(format!(
            "{base}/v1/statement/executing/{id}/{}?slug={}",
            token + 1,
            q.slug
        )),
    };
    Json(results(q, now, shared.opts.active_workers, &base, next)).into_response()
}

/// `DELETE nextUri`: cancels the query (204), as the CLI does on Ctrl-C.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((phase, id, _token)): Path<(String, String, u64)>,
    QueryParams(p): QueryParams<SlugParam>,
) -> Response {
    let (mut c, now) = shared.coordinator();
    if !addressed(&c, &phase, &id, p.slug.as_deref()) {
        return text(StatusCode::NOT_FOUND, "Query not found");
    }
    c.abort(&id, super::failure::Failure::canceled(), now);
    StatusCode::NO_CONTENT.into_response()
}

/// True if `phase` is a statement resource and `id` a live query whose slug is `slug`.
fn addressed(c: &Coordinator, phase: &str, id: &str, slug: Option<&str>) -> bool {
    matches!(phase, "queued" | "executing")
        && c.get(id).is_some_and(|q| Some(q.slug.as_str()) == slug)
}
