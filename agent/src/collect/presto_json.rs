//! Reading Presto's JSON conventions (airlift): Duration strings (`"129.34ms"`), DataSize
//! strings (`"370MB"`), ISO-8601 DateTimes, and BasicQueryInfo into a `QueryRecord`.

use serde_json::Value;
use tether_proto::v1::QueryRecord;
use tether_shared::redact::{RedactionMode, apply, fingerprint, redact_message};

/// Milliseconds of an airlift Duration string such as `"1.50s"` or `"3.29m"`.
pub fn duration_ms(v: &Value) -> i64 {
    let Some(s) = v.as_str() else { return 0 };
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let Ok(n) = num.trim().parse::<f64>() else {
        return 0;
    };
    let ms = match unit {
        "ns" => n / 1e6,
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        "h" => n * 3600e3,
        "d" => n * 86400e3,
        _ => return 0,
    };
    ms.round() as i64
}

/// Bytes of an airlift DataSize string such as `"370MB"` or `"6442450944B"` (1024-based).
pub fn data_size_bytes(v: &Value) -> i64 {
    if let Some(n) = v.as_i64() {
        return n;
    }
    let Some(s) = v.as_str() else { return 0 };
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let Ok(n) = num.trim().parse::<f64>() else {
        return 0;
    };
    let mult: f64 = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1024.0,
        "MB" => 1024f64.powi(2),
        "GB" => 1024f64.powi(3),
        "TB" => 1024f64.powi(4),
        "PB" => 1024f64.powi(5),
        _ => return 0,
    };
    (n * mult).round() as i64
}

/// Unix ms of an ISO-8601 DateTime; 0 for "not ended" (`1970-01-01…` or null).
pub fn time_ms(v: &Value) -> i64 {
    v.as_str()
        .and_then(tether_shared::timestamps::ms_from_rfc3339)
        .unwrap_or(0)
}

/// Whether a query state is terminal (FINISHED, FAILED; CANCELED in old versions).
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "FINISHED" | "FAILED" | "CANCELED")
}

/// The fields of a BasicQueryInfo the agent keeps; everything else in Presto's (large)
/// answer is skipped while parsing instead of being materialised.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicQueryInfo {
    /// Query id.
    #[serde(default)]
    pub query_id: String,
    /// State.
    #[serde(default)]
    pub state: String,
    /// Raw text (literals included: redacted before it leaves this module).
    #[serde(default)]
    query: String,
    #[serde(default)]
    session: Session,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error_code: Option<ErrorCode>,
    #[serde(default)]
    failure_info: Option<FailureInfo>,
    #[serde(default)]
    query_stats: serde_json::Map<String, Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Session {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    catalog: Option<String>,
    #[serde(default)]
    schema: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct ErrorCode {
    #[serde(default)]
    name: String,
}

#[derive(Debug, serde::Deserialize)]
struct FailureInfo {
    #[serde(default)]
    message: Option<String>,
}

/// The metadata of one query, with text and error message treated per `mode`. Presto's
/// own `queryHash` is never used: it hashes the literals.
pub fn query_record(cluster: &str, q: &BasicQueryInfo, mode: RedactionMode) -> QueryRecord {
    let raw = q.query.as_str();
    let query = apply(mode, raw).unwrap_or_default();
    let fp = if mode == RedactionMode::None {
        String::new()
    } else {
        fingerprint(raw)
    };
    let message = q
        .failure_info
        .as_ref()
        .and_then(|f| f.message.as_deref())
        .unwrap_or_default();
    let error_message = match mode {
        RedactionMode::Full => message.to_owned(),
        RedactionMode::Redacted => redact_message(message),
        RedactionMode::None => String::new(),
    };
    let stat = |k: &str| q.query_stats.get(k).cloned().unwrap_or(Value::Null);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    QueryRecord {
        query_id: q.query_id.clone(),
        cluster: cluster.to_owned(),
        user: opt(&q.session.user),
        source: opt(&q.session.source),
        catalog: opt(&q.session.catalog),
        schema: opt(&q.session.schema),
        state: q.state.clone(),
        error_type: opt(&q.error_type),
        error_code: q
            .error_code
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        error_message,
        create_time_unix_ms: time_ms(&stat("createTime")),
        end_time_unix_ms: time_ms(&stat("endTime")),
        queued_time_ms: duration_ms(&stat("queuedTime")),
        elapsed_time_ms: duration_ms(&stat("elapsedTime")),
        cpu_time_ms: duration_ms(&stat("totalCpuTime")),
        peak_memory_bytes: data_size_bytes(&stat("peakTotalMemoryReservation")),
        input_rows: stat("rawInputPositions").as_i64().unwrap_or(0),
        input_bytes: data_size_bytes(&stat("rawInputDataSize")),
        output_rows: stat("outputPositions").as_i64().unwrap_or(0),
        query,
        fingerprint: fp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_airlift_units() {
        assert_eq!(duration_ms(&json!("129.34ms")), 129);
        assert_eq!(duration_ms(&json!("1.50s")), 1500);
        assert_eq!(duration_ms(&json!("3.29m")), 197_400);
        assert_eq!(duration_ms(&json!("0.00ns")), 0);
        assert_eq!(data_size_bytes(&json!("370MB")), 370 << 20);
        assert_eq!(data_size_bytes(&json!("0B")), 0);
        assert_eq!(data_size_bytes(&json!("6442450944B")), 6_442_450_944);
        assert_eq!(time_ms(&json!("1970-01-01T00:00:00.000Z")), 0);
        assert_eq!(
            time_ms(&json!("2025-01-14T09:40:15.902Z")),
            1_736_847_615_902
        );
    }

    #[test]
    fn redacts_text_and_error_message() {
        let q = json!({"queryId": "q1", "state": "FAILED", "query": "SELECT * FROM t WHERE email = 'alice@example.com' AND n = 4111111111111111",
            "session": {"user": "alice"}, "errorCode": {"name": "INVALID_CAST_ARGUMENT"},
            "failureInfo": {"message": "Cannot cast 'alice@example.com' to INT"}, "queryStats": {}});
        let q: BasicQueryInfo = serde_json::from_value(q).expect("parses");
        let r = query_record("c", &q, RedactionMode::Redacted);
        let all = format!("{r:?}");
        assert!(
            !all.contains("alice@example.com") && !all.contains("4111111111111111"),
            "{all}"
        );
        assert_eq!(r.error_code, "INVALID_CAST_ARGUMENT");
        assert!(!r.fingerprint.is_empty());
        let none = query_record("c", &q, RedactionMode::None);
        assert!(none.query.is_empty() && none.error_message.is_empty());
        let full = query_record("c", &q, RedactionMode::Full);
        assert!(full.query.contains("alice@example.com"));
    }
}
