//! Telemetry: query records (metadata only), metric samples, events, and each compute
//! plane's high-water mark of what it acked.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// A stored query record: metadata only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryRow {
    /// Presto query id.
    pub query_id: String,
    /// Cluster name.
    pub cluster: String,
    /// User.
    pub user: String,
    /// Client source.
    pub source: String,
    /// Session catalog.
    pub catalog: String,
    /// Session schema.
    pub schema: String,
    /// FINISHED or FAILED.
    pub state: String,
    /// Error type, if failed.
    pub error_type: String,
    /// Error code name, if failed.
    pub error_code: String,
    /// Redacted error message.
    pub error_message: String,
    /// Unix ms.
    pub create_time_ms: i64,
    /// Unix ms.
    pub end_time_ms: i64,
    /// Queued ms.
    pub queued_time_ms: i64,
    /// Elapsed ms.
    pub elapsed_time_ms: i64,
    /// CPU ms.
    pub cpu_time_ms: i64,
    /// Peak memory.
    pub peak_memory_bytes: i64,
    /// Input rows.
    pub input_rows: i64,
    /// Input bytes.
    pub input_bytes: i64,
    /// Output rows.
    pub output_rows: i64,
    /// Query text as the agent sent it (redacted by default).
    pub query: String,
    /// Fingerprint of the redacted text.
    pub fingerprint: String,
}

/// One telemetry item to store.
#[derive(Debug, Clone)]
pub enum TelemetryItem {
    /// A metric sample.
    Metric {
        /// Cluster.
        cluster: String,
        /// Metric name.
        name: String,
        /// Unix ms.
        ts_ms: i64,
        /// Value.
        value: f64,
    },
    /// A finished query.
    Query(Box<QueryRow>),
    /// An event.
    Event {
        /// Cluster.
        cluster: String,
        /// Type.
        kind: String,
        /// Reason.
        reason: String,
        /// Message.
        message: String,
        /// Unix ms.
        ts_ms: i64,
    },
}

/// Filters of `GET /query-log`.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    /// Cluster.
    pub cluster: Option<String>,
    /// User.
    pub user: Option<String>,
    /// State.
    pub state: Option<String>,
    /// Ended at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Ended before (Unix ms).
    pub until_ms: Option<i64>,
    /// Substring of the (redacted) text.
    pub text: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Continue after this cursor (exclusive).
    pub cursor: Option<i64>,
}

/// Telemetry records an agent dropped (its spool was full): running totals, in all and
/// per class (a full spool drops query records first, then metrics, then events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DroppedRecords {
    /// All of them (also those an agent that did not count per class dropped).
    pub total: u64,
    /// Events.
    pub events: u64,
    /// Metric samples.
    pub metrics: u64,
    /// Query records.
    pub query_records: u64,
}

impl From<u64> for DroppedRecords {
    /// A total without classes (an agent that did not count per class).
    fn from(total: u64) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }
}

/// Telemetry storage.
#[async_trait]
pub trait TelemetryStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a batch in one transaction, skipping sequence numbers at or below the
    /// compute plane's high-water mark and query ids it already has. Returns the new
    /// high-water mark and how many records were new (above the old mark).
    async fn ingest(
        &self,
        cp: &str,
        items: Vec<(u64, TelemetryItem)>,
        dropped: DroppedRecords,
    ) -> Result<(u64, u64), StoreError>;
    /// (high-water mark, records the agent reported dropped).
    async fn telemetry_state(&self, cp: &str) -> Result<(u64, u64), StoreError>;
    /// A page of query records, newest first, and the cursor of the next page.
    async fn query_log(
        &self,
        cp: &str,
        f: &QueryFilter,
    ) -> Result<(Vec<QueryRow>, Option<i64>), StoreError>;
    /// Samples of metric `name` (all clusters or one) between `since` and `until` (ms).
    async fn metric_samples(
        &self,
        cp: &str,
        name: Option<&str>,
        cluster: Option<&str>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(String, String, i64, f64)>, StoreError>;
    /// Deletes telemetry older than `before_ms`; returns rows deleted. With several
    /// replicas one purges at a time; the others return 0 at once.
    async fn purge_telemetry(&self, before_ms: i64) -> Result<u64, StoreError>;
}
