//! PostgreSQL: telemetry storage. One transaction per batch (the batch is the unit the
//! agent gets acked for); each kind of record goes in with one multi-row
//! `INSERT … SELECT FROM UNNEST(…)` (one round trip, one plan, any number of rows);
//! dedup by sequence number (the compute plane's high-water mark, read `FOR UPDATE` so two
//! sessions of one agent cannot interleave) and by query id (the unique constraint).

use async_trait::async_trait;
use sqlx::Row;

use super::{PgStore, Tx};
use crate::store::rows;
use crate::store::{
    DroppedRecords, QueryFilter, QueryRow, StoreError, TelemetryItem, TelemetryStore, page_of,
};

/// Rows per retention `DELETE`, so no delete holds its locks for long or bloats one
/// transaction; between batches other writers go on.
const PURGE_BATCH: i64 = 5_000;

/// The columns [`rows::query`] reads (PostgreSQL reserves `user`; the table says `user_name`).
const QUERY_COLUMNS: &str = "id, query_id, cluster, user_name AS \"user\", source, catalog, schema_name AS \"schema\", \
     state, error_type, error_code, error_message, create_time_ms, end_time_ms, queued_time_ms, \
     elapsed_time_ms, cpu_time_ms, peak_memory_bytes, input_rows, input_bytes, output_rows, query, fingerprint";

/// Query records column by column, as `UNNEST` takes them.
#[derive(Default)]
struct QueryColumns {
    text: [Vec<String>; 12],
    num: [Vec<i64>; 9],
}

impl QueryColumns {
    fn push(&mut self, q: QueryRow) {
        let texts = [
            q.query_id,
            q.cluster,
            q.user,
            q.source,
            q.catalog,
            q.schema,
            q.state,
            q.error_type,
            q.error_code,
            q.error_message,
            q.query,
            q.fingerprint,
        ];
        for (col, v) in self.text.iter_mut().zip(texts) {
            col.push(v);
        }
        let nums = [
            q.create_time_ms,
            q.end_time_ms,
            q.queued_time_ms,
            q.elapsed_time_ms,
            q.cpu_time_ms,
            q.peak_memory_bytes,
            q.input_rows,
            q.input_bytes,
            q.output_rows,
        ];
        for (col, v) in self.num.iter_mut().zip(nums) {
            col.push(v);
        }
    }

    fn is_empty(&self) -> bool {
        self.text[0].is_empty()
    }

    async fn insert(self, tx: &mut Tx<'_>, cp: &str) -> Result<(), sqlx::Error> {
        // A query id repeated within the batch, or already stored, is skipped.
        let mut q = sqlx::query(
            "INSERT INTO query_records (compute_plane_id, query_id, cluster, user_name, source, \
             catalog, schema_name, state, error_type, error_code, error_message, query, fingerprint, \
             create_time_ms, end_time_ms, queued_time_ms, elapsed_time_ms, cpu_time_ms, \
             peak_memory_bytes, input_rows, input_bytes, output_rows) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
             $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], \
             $20::bigint[], $21::bigint[], $22::bigint[]) \
             ON CONFLICT (compute_plane_id, query_id) DO NOTHING",
        )
        .bind(cp);
        for col in self.text {
            q = q.bind(col);
        }
        for col in self.num {
            q = q.bind(col);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }
}

/// One batch of one compute plane, inside the caller's transaction.
async fn ingest_in(
    tx: &mut Tx<'_>,
    cp: &str,
    items: Vec<(u64, TelemetryItem)>,
    dropped: DroppedRecords,
) -> Result<(u64, u64), StoreError> {
    let acked: Option<(i64,)> =
        sqlx::query_as("SELECT telemetry_acked_seq FROM compute_planes WHERE id = $1 FOR UPDATE")
            .bind(cp)
            .fetch_optional(&mut **tx)
            .await?;
    let (acked,) = acked.ok_or(StoreError::NotFound("compute plane"))?;
    let acked = acked.max(0) as u64;
    let mut high = acked;
    let mut new = 0u64;
    let mut queries = QueryColumns::default();
    let (mut m_cluster, mut m_name, mut m_ts, mut m_value) = (vec![], vec![], vec![], vec![]);
    let mut node_samples = Vec::new();
    let (mut e_cluster, mut e_kind, mut e_reason, mut e_message, mut e_ts) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (seq, item) in items.into_iter().filter(|(seq, _)| *seq > acked) {
        high = high.max(seq);
        new += 1;
        match item {
            TelemetryItem::Metric {
                cluster,
                name,
                ts_ms,
                value,
            } => {
                if crate::store::usage::NODE_SERIES.contains(&name.as_str()) {
                    node_samples.push((cluster.clone(), name.clone(), ts_ms, value));
                }
                m_cluster.push(cluster);
                m_name.push(name);
                m_ts.push(ts_ms);
                m_value.push(value);
            }
            TelemetryItem::Query(q) => queries.push(*q),
            TelemetryItem::Event {
                cluster,
                kind,
                reason,
                message,
                ts_ms,
            } => {
                e_cluster.push(cluster);
                e_kind.push(kind);
                e_reason.push(reason);
                e_message.push(message);
                e_ts.push(ts_ms);
            }
        }
    }
    if !m_ts.is_empty() {
        sqlx::query(
            "INSERT INTO metric_samples (compute_plane_id, cluster, name, ts_ms, value) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::float8[])",
        )
        .bind(cp)
        .bind(m_cluster)
        .bind(m_name)
        .bind(m_ts)
        .bind(m_value)
        .execute(&mut **tx)
        .await?;
    }
    for (cluster, name, ts_ms, value) in node_samples {
        super::usage::accrue(tx, cp, &cluster, &name, ts_ms, value).await?;
    }
    if !queries.is_empty() {
        queries.insert(tx, cp).await?;
    }
    if !e_ts.is_empty() {
        sqlx::query(
            "INSERT INTO events (compute_plane_id, cluster, type, reason, message, ts_ms) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])",
        )
        .bind(cp)
        .bind(e_cluster)
        .bind(e_kind)
        .bind(e_reason)
        .bind(e_message)
        .bind(e_ts)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "UPDATE compute_planes SET telemetry_acked_seq = $1, \
         telemetry_dropped = GREATEST(telemetry_dropped, $2), \
         telemetry_dropped_events = GREATEST(telemetry_dropped_events, $3), \
         telemetry_dropped_metrics = GREATEST(telemetry_dropped_metrics, $4), \
         telemetry_dropped_query_records = GREATEST(telemetry_dropped_query_records, $5) \
         WHERE id = $6",
    )
    .bind(i64::try_from(high).unwrap_or(i64::MAX))
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
impl TelemetryStore for PgStore {
    async fn ingest(
        &self,
        cp: &str,
        items: Vec<(u64, TelemetryItem)>,
        dropped: DroppedRecords,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = ingest_in(&mut tx, cp, items, dropped).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn telemetry_state(&self, cp: &str) -> Result<(u64, u64), StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT telemetry_acked_seq, telemetry_dropped FROM compute_planes WHERE id = $1",
        )
        .bind(cp)
        .fetch_optional(&self.pool)
        .await?;
        let (acked, dropped) = row.ok_or(StoreError::NotFound("compute plane"))?;
        Ok((acked.max(0) as u64, dropped.max(0) as u64))
    }

    async fn query_log(
        &self,
        cp: &str,
        f: &QueryFilter,
    ) -> Result<(Vec<QueryRow>, Option<i64>), StoreError> {
        let limit = i64::from(f.limit.clamp(1, 1000));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {QUERY_COLUMNS} FROM query_records WHERE compute_plane_id = $1 \
             AND ($2::text IS NULL OR cluster = $2) AND ($3::text IS NULL OR user_name = $3) \
             AND ($4::text IS NULL OR state = $4) \
             AND ($5::bigint IS NULL OR end_time_ms >= $5) AND ($6::bigint IS NULL OR end_time_ms < $6) \
             AND ($7::text IS NULL OR strpos(query, $7) > 0) AND ($8::bigint IS NULL OR id < $8) \
             ORDER BY id DESC LIMIT $9"
        )))
        .bind(cp)
        .bind(&f.cluster)
        .bind(&f.user)
        .bind(&f.state)
        .bind(f.since_ms)
        .bind(f.until_ms)
        .bind(&f.text)
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
        let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
            "SELECT cluster, name, ts_ms, value FROM metric_samples WHERE compute_plane_id = $1 \
             AND ($2::text IS NULL OR name = $2) AND ($3::text IS NULL OR cluster = $3) \
             AND ts_ms >= $4 AND ts_ms < $5 ORDER BY name COLLATE \"C\", cluster COLLATE \"C\", ts_ms LIMIT 100000",
        )
        .bind(cp)
        .bind(name)
        .bind(cluster)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn purge_telemetry(&self, before_ms: i64) -> Result<u64, StoreError> {
        // A singleton job: one replica at a time purges, under a session-level advisory
        // lock held on one connection; the others find it taken and skip this round.
        let mut lock = self.pool.acquire().await?;
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(RETENTION_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !got {
            tracing::debug!("another replica is purging telemetry");
            return Ok(0);
        }
        let purged = self.purge_batches(before_ms).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(RETENTION_LOCK)
            .execute(&mut *lock)
            .await;
        if unlocked.is_err() {
            // The lock goes with the session: do not return this connection to the pool.
            drop(lock.detach());
        }
        purged
    }
}

/// The advisory lock key of telemetry retention ("tether retention" as an integer).
const RETENTION_LOCK: i64 = 0x7465_7468_6572_7265;

impl PgStore {
    /// Deletes what is older than `before_ms`, table by table, in short transactions.
    async fn purge_batches(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for sql in [
            "DELETE FROM query_records WHERE id IN \
             (SELECT id FROM query_records WHERE end_time_ms < $1 LIMIT $2)",
            "DELETE FROM metric_samples WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM metric_samples WHERE ts_ms < $1 LIMIT $2))",
            "DELETE FROM events WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM events WHERE ts_ms < $1 LIMIT $2))",
        ] {
            loop {
                // Each batch its own short transaction.
                let deleted = sqlx::query(sql)
                    .bind(before_ms)
                    .bind(PURGE_BATCH)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                n += deleted;
                if deleted < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(n)
    }
}
