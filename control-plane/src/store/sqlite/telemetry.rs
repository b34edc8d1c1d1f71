//! SQLite: telemetry storage, one transaction per batch (the batch is the
//! unit the agent gets acked for), dedup by sequence number and by query id.

use async_trait::async_trait;
use sqlx::Row;

use super::{SqliteStore, Tx};
use crate::store::rows;
use crate::store::{
    DroppedRecords, QueryFilter, QueryRow, StoreError, TelemetryItem, TelemetryStore, page_of,
};

/// Query records per `INSERT` statement: each statement is one round trip to SQLite's
/// worker thread, so many rows per statement make ingest several times faster than one row
/// per statement. 500 (the agent's largest batch) × 22 parameters is 11,000, under
/// SQLite's limit of 32,766. (Measured alternatives: 64 rows per statement gave about
/// 75,000 records/s against 85,000–89,000 for 500; one JSON array read with `json_each`
/// gave 29,000, as `->>` parses each row's JSON again for every column.)
const QUERY_ROWS_PER_INSERT: usize = 500;

const QUERY_COLUMNS: &str = "compute_plane_id, query_id, cluster, user, source, catalog, schema, \
     state, error_type, error_code, error_message, create_time_ms, end_time_ms, queued_time_ms, \
     elapsed_time_ms, cpu_time_ms, peak_memory_bytes, input_rows, input_bytes, output_rows, query, fingerprint";

/// One multi-row `INSERT OR IGNORE` of query records (a repeated query id is skipped).
async fn insert_queries(tx: &mut Tx<'_>, cp: &str, rows: Vec<QueryRow>) -> Result<(), sqlx::Error> {
    let one = format!("({})", vec!["?"; 22].join(", "));
    let sql = format!(
        "INSERT OR IGNORE INTO query_records ({QUERY_COLUMNS}) VALUES {}",
        vec![one.as_str(); rows.len()].join(", ")
    );
    // Built from placeholders only; every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    // By value: sqlx takes the strings as they are instead of copying each one.
    for q in rows {
        query = query
            .bind(cp)
            .bind(q.query_id)
            .bind(q.cluster)
            .bind(q.user)
            .bind(q.source)
            .bind(q.catalog)
            .bind(q.schema)
            .bind(q.state)
            .bind(q.error_type)
            .bind(q.error_code)
            .bind(q.error_message)
            .bind(q.create_time_ms)
            .bind(q.end_time_ms)
            .bind(q.queued_time_ms)
            .bind(q.elapsed_time_ms)
            .bind(q.cpu_time_ms)
            .bind(q.peak_memory_bytes)
            .bind(q.input_rows)
            .bind(q.input_bytes)
            .bind(q.output_rows)
            .bind(q.query)
            .bind(q.fingerprint);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// One batch of one compute plane, inside the caller's write transaction.
async fn ingest_in(
    tx: &mut Tx<'_>,
    cp: &str,
    items: Vec<(u64, TelemetryItem)>,
    dropped: DroppedRecords,
) -> Result<(u64, u64), StoreError> {
    let acked: i64 = sqlx::query("SELECT telemetry_acked_seq FROM compute_planes WHERE id = ?")
        .bind(cp)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("compute plane"))?
        .try_get("telemetry_acked_seq")?;
    let mut high = acked as u64;
    let mut new = 0u64;
    let mut queries = Vec::new();
    for (seq, item) in items.into_iter().filter(|(seq, _)| *seq > acked as u64) {
        high = high.max(seq);
        new += 1;
        match item {
            TelemetryItem::Metric {
                cluster,
                name,
                ts_ms,
                value,
            } => {
                sqlx::query("INSERT INTO metric_samples (compute_plane_id, cluster, name, ts_ms, value) VALUES (?, ?, ?, ?, ?)")
                    .bind(cp)
                    .bind(&cluster)
                    .bind(&name)
                    .bind(ts_ms)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                if crate::store::usage::NODE_SERIES.contains(&name.as_str()) {
                    super::usage::accrue(tx, cp, &cluster, &name, ts_ms, value).await?;
                }
            }
            TelemetryItem::Query(q) => queries.push(*q),
            TelemetryItem::Event {
                cluster,
                kind,
                reason,
                message,
                ts_ms,
            } => {
                sqlx::query("INSERT INTO events (compute_plane_id, cluster, type, reason, message, ts_ms) VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(cp)
                    .bind(cluster)
                    .bind(kind)
                    .bind(reason)
                    .bind(message)
                    .bind(ts_ms)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    while !queries.is_empty() {
        let rest = queries.split_off(queries.len().min(QUERY_ROWS_PER_INSERT));
        insert_queries(tx, cp, std::mem::replace(&mut queries, rest)).await?;
    }
    sqlx::query(
        "UPDATE compute_planes SET telemetry_acked_seq = ?, telemetry_dropped = MAX(telemetry_dropped, ?), \
         telemetry_dropped_events = MAX(telemetry_dropped_events, ?), \
         telemetry_dropped_metrics = MAX(telemetry_dropped_metrics, ?), \
         telemetry_dropped_query_records = MAX(telemetry_dropped_query_records, ?) WHERE id = ?",
    )
    .bind(high as i64)
    .bind(i64::try_from(dropped.total).unwrap_or(i64::MAX))
    .bind(i64::try_from(dropped.events).unwrap_or(i64::MAX))
    .bind(i64::try_from(dropped.metrics).unwrap_or(i64::MAX))
    .bind(i64::try_from(dropped.query_records).unwrap_or(i64::MAX))
    .bind(cp)
    .execute(&mut **tx)
    .await?;
    Ok((high, new))
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn ingest(
        &self,
        cp: &str,
        items: Vec<(u64, TelemetryItem)>,
        dropped: DroppedRecords,
    ) -> Result<(u64, u64), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let r = ingest_in(&mut tx, cp, items, dropped).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn telemetry_state(&self, cp: &str) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT telemetry_acked_seq, telemetry_dropped FROM compute_planes WHERE id = ?",
        )
        .bind(cp)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("compute plane"))?;
        Ok((
            row.try_get::<i64, _>("telemetry_acked_seq")? as u64,
            row.try_get::<i64, _>("telemetry_dropped")? as u64,
        ))
    }

    async fn query_log(
        &self,
        cp: &str,
        f: &QueryFilter,
    ) -> Result<(Vec<QueryRow>, Option<i64>), StoreError> {
        let limit = i64::from(f.limit.clamp(1, 1000));
        let rows = sqlx::query(
            "SELECT * FROM query_records WHERE compute_plane_id = ? \
             AND (? IS NULL OR cluster = ?) AND (? IS NULL OR user = ?) AND (? IS NULL OR state = ?) \
             AND (? IS NULL OR end_time_ms >= ?) AND (? IS NULL OR end_time_ms < ?) \
             AND (? IS NULL OR instr(query, ?) > 0) AND (? IS NULL OR id < ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(cp)
        .bind(&f.cluster)
        .bind(&f.cluster)
        .bind(&f.user)
        .bind(&f.user)
        .bind(&f.state)
        .bind(&f.state)
        .bind(f.since_ms)
        .bind(f.since_ms)
        .bind(f.until_ms)
        .bind(f.until_ms)
        .bind(&f.text)
        .bind(&f.text)
        .bind(f.cursor)
        .bind(f.cursor)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let (page, more) = page_of(rows, limit);
        let next = if more {
            page.last().map(|r| r.try_get::<i64, _>("id")).transpose()?
        } else {
            None
        };
        Ok((
            page.iter().map(rows::query).collect::<Result<_, _>>()?,
            next,
        ))
    }

    async fn metric_samples(
        &self,
        cp: &str,
        name: Option<&str>,
        cluster: Option<&str>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(String, String, i64, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT cluster, name, ts_ms, value FROM metric_samples WHERE compute_plane_id = ? \
             AND (? IS NULL OR name = ?) AND (? IS NULL OR cluster = ?) AND ts_ms >= ? AND ts_ms < ? \
             ORDER BY name, cluster, ts_ms LIMIT 100000",
        )
        .bind(cp)
        .bind(name)
        .bind(name)
        .bind(cluster)
        .bind(cluster)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("cluster")?,
                    r.try_get("name")?,
                    r.try_get("ts_ms")?,
                    r.try_get("value")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn purge_telemetry(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for sql in [
            "DELETE FROM query_records WHERE end_time_ms < ?",
            "DELETE FROM metric_samples WHERE ts_ms < ?",
            "DELETE FROM events WHERE ts_ms < ?",
        ] {
            n += sqlx::query(sql)
                .bind(before_ms)
                .execute(&mut *self.writer().await?)
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}
