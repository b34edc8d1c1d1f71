//! The JSON shapes of the coordinator's REST resources, field for field as Jackson prints
//! Presto's classes (`ServerInfo`, `ClusterStats`, `BasicQueryInfo`, `BasicQueryStats`,
//! `SessionRepresentation`, `QueryInfo`, `HeartbeatFailureDetector.Stats`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use super::durations::{AirDuration, DataSize, DateTime, epoch_millis};
use super::failure::{ErrorCode, ExecutionFailureInfo};
use super::query::{Query, QueryState, Snapshot};

/// `NodeVersion`.
#[derive(Debug, Serialize)]
pub(crate) struct NodeVersion {
    pub version: String,
}

/// `ServerInfo` (`GET /v1/info`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerInfo {
    pub node_version: NodeVersion,
    pub environment: String,
    pub coordinator: bool,
    pub starting: bool,
    pub uptime: AirDuration,
}

/// `ClusterStats` (`GET /v1/cluster`).
#[derive(Debug, Serialize, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterStats {
    pub running_queries: u64,
    pub blocked_queries: u64,
    pub queued_queries: u64,
    pub active_workers: u64,
    pub running_drivers: u64,
    pub running_tasks: u64,
    pub reserved_memory: f64,
    pub total_input_rows: u64,
    pub total_input_bytes: u64,
    pub total_cpu_time_secs: u64,
    pub adjusted_queue_size: u64,
}

/// `ResourceEstimates` (all unset).
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResourceEstimates {
    execution_time: Option<AirDuration>,
    cpu_time: Option<AirDuration>,
    peak_memory: Option<DataSize>,
}

type Props = BTreeMap<String, String>;

/// `SessionRepresentation`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionRepresentation<'a> {
    query_id: &'a str,
    transaction_id: Option<String>,
    client_transaction_support: bool,
    user: &'a str,
    principal: Option<String>,
    source: Option<&'a str>,
    catalog: Option<&'a str>,
    schema: Option<&'a str>,
    trace_token: Option<String>,
    time_zone_key: i16,
    locale: &'static str,
    remote_user_address: Option<&'a str>,
    user_agent: Option<&'a str>,
    client_info: Option<&'a str>,
    client_tags: &'a [String],
    resource_estimates: ResourceEstimates,
    start_time: i64,
    system_properties: Props,
    catalog_properties: BTreeMap<String, Props>,
    unprocessed_catalog_properties: BTreeMap<String, Props>,
    roles: Props,
    prepared_statements: Props,
    session_functions: Props,
}

/// `BasicQueryStats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BasicQueryStats {
    create_time: DateTime,
    end_time: DateTime,
    queued_time: AirDuration,
    elapsed_time: AirDuration,
    execution_time: AirDuration,
    analysis_time: AirDuration,
    waiting_for_prerequisites_time: AirDuration,
    total_cpu_time: AirDuration,
    total_scheduled_time: AirDuration,
    total_drivers: u32,
    queued_drivers: u32,
    running_drivers: u32,
    completed_drivers: u32,
    running_tasks: u32,
    raw_input_data_size: DataSize,
    raw_input_positions: u64,
    cumulative_user_memory: f64,
    cumulative_total_memory: f64,
    user_memory_reservation: DataSize,
    total_memory_reservation: DataSize,
    peak_user_memory_reservation: DataSize,
    peak_total_memory_reservation: DataSize,
    peak_task_total_memory_reservation: DataSize,
    peak_node_total_memory_reservation: DataSize,
    total_allocation: DataSize,
    fully_blocked: bool,
    blocked_reasons: Vec<&'static str>,
    progress_percentage: Option<f64>,
}

/// `BasicQueryInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BasicQueryInfo<'a> {
    query_id: &'a str,
    session: SessionRepresentation<'a>,
    resource_group_id: Option<[&'static str; 1]>,
    state: &'static str,
    memory_pool: &'static str,
    scheduled: bool,
    #[serde(rename = "self")]
    self_uri: String,
    query: &'a str,
    query_hash: &'a str,
    query_stats: BasicQueryStats,
    error_type: Option<&'static str>,
    error_code: Option<ErrorCode>,
    failure_info: Option<&'a ExecutionFailureInfo>,
    query_type: Option<&'static str>,
    warnings: Vec<Value>,
    prepared_query: Option<String>,
}

fn session(q: &Query) -> SessionRepresentation<'_> {
    let s = &q.session;
    SessionRepresentation {
        query_id: &q.id,
        transaction_id: None,
        client_transaction_support: false,
        user: &s.user,
        principal: None,
        source: s.source.as_deref(),
        catalog: s.catalog.as_deref(),
        schema: s.schema.as_deref(),
        trace_token: None,
        time_zone_key: 0,
        locale: "en_US",
        remote_user_address: s.remote_address.as_deref(),
        user_agent: s.user_agent.as_deref(),
        client_info: s.client_info.as_deref(),
        client_tags: &s.client_tags,
        resource_estimates: ResourceEstimates::default(),
        start_time: epoch_millis(q.created),
        system_properties: Props::new(),
        catalog_properties: BTreeMap::new(),
        unprocessed_catalog_properties: BTreeMap::new(),
        roles: Props::new(),
        prepared_statements: Props::new(),
        session_functions: Props::new(),
    }
}

fn basic_stats(q: &Query, s: &Snapshot) -> BasicQueryStats {
    let d = AirDuration;
    BasicQueryStats {
        create_time: DateTime(q.created),
        end_time: q.end_time().map_or(DateTime::EPOCH, DateTime),
        queued_time: d(s.queued_time),
        elapsed_time: d(s.elapsed_time),
        execution_time: d(s.execution_time),
        analysis_time: d(s.execution_time.min(Duration::from_millis(12))),
        waiting_for_prerequisites_time: d(Duration::ZERO),
        total_cpu_time: d(s.cpu_time),
        total_scheduled_time: d(s.cpu_time.mul_f64(1.15)),
        total_drivers: s.total_drivers,
        queued_drivers: s.queued_drivers,
        running_drivers: s.running_drivers,
        completed_drivers: s.completed_drivers,
        running_tasks: s.running_tasks,
        raw_input_data_size: DataSize(s.input_bytes),
        raw_input_positions: s.input_rows,
        cumulative_user_memory: s.cumulative_user_memory,
        cumulative_total_memory: s.cumulative_user_memory * 1.125,
        user_memory_reservation: DataSize(s.user_memory),
        total_memory_reservation: DataSize(s.total_memory),
        peak_user_memory_reservation: DataSize(s.peak_user_memory),
        peak_total_memory_reservation: DataSize(s.peak_total_memory),
        peak_task_total_memory_reservation: DataSize(
            s.peak_total_memory / u64::from(s.total_tasks.max(1)),
        ),
        peak_node_total_memory_reservation: DataSize(s.peak_total_memory / 2),
        total_allocation: DataSize(s.peak_total_memory.saturating_mul(3)),
        fully_blocked: s.fully_blocked,
        blocked_reasons: if s.fully_blocked {
            vec!["WAITING_FOR_MEMORY"]
        } else {
            Vec::new()
        },
        progress_percentage: s.progress_percentage,
    }
}

fn basic<'a>(q: &'a Query, s: &Snapshot, base: &str) -> BasicQueryInfo<'a> {
    let failure = q.failure.as_ref();
    BasicQueryInfo {
        query_id: &q.id,
        session: session(q),
        resource_group_id: Some(["global"]),
        state: q.state.name(),
        memory_pool: "general",
        scheduled: s.scheduled,
        self_uri: format!("{base}/v1/query/{}", q.id),
        query: &q.text,
        query_hash: &q.hash,
        query_stats: basic_stats(q, s),
        error_type: failure.map(|f| f.code.kind),
        error_code: failure.map(|f| f.code),
        failure_info: failure.map(|f| &f.info),
        query_type: Some("SELECT"),
        warnings: Vec::new(),
        prepared_query: None,
    }
}

/// A `BasicQueryInfo` row of `GET /v1/query`; `base` is the coordinator's own URI.
pub(crate) fn basic_query_info(q: &Query, now: Instant, base: &str) -> Value {
    serde_json::to_value(basic(q, &q.snapshot(now), base)).unwrap_or(Value::Null)
}

/// `GET /v1/query/{id}`: the BasicQueryInfo fields plus the `QueryInfo` fields a scraper may
/// touch (no plan: `outputStage` is null as for a query whose analysis failed).
pub(crate) fn query_info(q: &Query, now: Instant, base: &str) -> Value {
    let s = q.snapshot(now);
    let mut v = serde_json::to_value(basic(q, &s, base)).unwrap_or(Value::Null);
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    if let Some(Value::Object(stats)) = obj.get_mut("queryStats") {
        let started = (s.scheduled).then(|| q.created + s.queued_time);
        let extra = json!({
            "executionStartTime": started.map(DateTime),
            "lastHeartbeat": DateTime(SystemTime::now()),
            "totalPlanningTime": AirDuration(s.execution_time.min(Duration::from_millis(20))),
            "finishingTime": AirDuration(Duration::ZERO),
            "totalBlockedTime": AirDuration(Duration::ZERO),
            "totalTasks": s.total_tasks,
            "runningTasks": s.running_tasks,
            "completedTasks": s.completed_tasks,
            "peakRunningTasks": s.total_tasks,
            "blockedDrivers": 0,
            "scheduled": s.scheduled,
            "processedInputDataSize": DataSize(s.input_bytes),
            "processedInputPositions": s.input_rows,
            "outputDataSize": DataSize(s.input_bytes / 1000),
            "outputPositions": s.input_rows / 1000,
            "spilledDataSize": DataSize(0),
        });
        if let Value::Object(extra) = extra {
            stats.extend(extra);
        }
    }
    let finished = q.state.is_done();
    let extra = json!({
        "fieldNames": ["_col0", "label", "day"],
        "expandedQuery": null,
        "setCatalog": null,
        "setSchema": null,
        "setSessionProperties": {},
        "resetSessionProperties": [],
        "setRoles": {},
        "addedPreparedStatements": {},
        "deallocatedPreparedStatements": [],
        "startedTransactionId": null,
        "clearTransactionId": false,
        "updateType": null,
        "outputStage": null,
        "finalQueryInfo": finished,
        "inputs": [],
        "output": null,
        "failedTasks": [],
        "runtimeOptimizedStages": [],
        "addedSessionFunctions": {},
        "removedSessionFunctions": [],
    });
    if let Value::Object(extra) = extra {
        obj.extend(extra);
    }
    v
}

/// `HeartbeatFailureDetector.Stats` for `workers` healthy fake workers (`GET /v1/node`).
pub(crate) fn node_stats(workers: u32, uptime: Duration) -> Value {
    let now = SystemTime::now();
    let requests = (uptime.as_secs_f64() * 2.0).min(120.0);
    let nodes: Vec<Value> = (0..workers)
        .map(|i| {
            json!({
                "uri": format!("http://10.244.0.{}:8080", 10 + i),
                "age": AirDuration(uptime),
                "recentRequests": requests,
                "recentFailures": 0.0,
                "recentSuccesses": requests,
                "recentFailureRatio": 0.0,
                "lastRequestTime": DateTime(now - Duration::from_millis(480)),
                "lastResponseTime": DateTime(now - Duration::from_millis(470)),
                "lastFailureInfo": null,
                "recentFailuresByType": {},
            })
        })
        .collect();
    Value::Array(nodes)
}

/// `QueryResource`'s ordering when `limit` is below the number of queries: RUNNING, then
/// QUEUED, then other states that are not done, then FAILED, then FINISHED; each by
/// creation time.
pub(crate) fn list_order(state: QueryState) -> u8 {
    match state {
        QueryState::Running => 0,
        QueryState::Queued => 1,
        QueryState::Failed => 3,
        QueryState::Finished => 4,
    }
}
