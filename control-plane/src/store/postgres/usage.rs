//! PostgreSQL: usage metering, accrued inside telemetry ingest.

use async_trait::async_trait;

use super::{PgStore, Tx};
use crate::store::{StoreError, UsageRow, UsageStore};

/// Adds the node time a new sample closes to `usage_hourly` and moves the series'
/// cursor (see [`crate::store::usage::accrue`]).
pub(super) async fn accrue(
    tx: &mut Tx<'_>,
    cp: &str,
    cluster: &str,
    name: &str,
    ts_ms: i64,
    value: f64,
) -> Result<(), sqlx::Error> {
    let last: Option<(i64, f64)> = sqlx::query_as(
        "SELECT last_ms, last_value FROM usage_cursor \
         WHERE compute_plane_id = $1 AND cluster = $2 AND name = $3 FOR UPDATE",
    )
    .bind(cp)
    .bind(cluster)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    let now = tether_shared::timestamps::now_unix_ms();
    let Some(hours) = crate::store::usage::accrue(last, ts_ms, value, now) else {
        return Ok(());
    };
    for (hour, node_ms) in hours {
        sqlx::query(
            "INSERT INTO usage_hourly (compute_plane_id, cluster, hour_ms, node_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (compute_plane_id, cluster, hour_ms) DO UPDATE SET node_ms = usage_hourly.node_ms + excluded.node_ms",
        )
        .bind(cp)
        .bind(cluster)
        .bind(hour)
        .bind(node_ms)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO usage_cursor (compute_plane_id, cluster, name, last_ms, last_value) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (compute_plane_id, cluster, name) DO UPDATE SET last_ms = excluded.last_ms, last_value = excluded.last_value",
    )
    .bind(cp)
    .bind(cluster)
    .bind(name)
    .bind(ts_ms)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl UsageStore for PgStore {
    async fn usage(
        &self,
        tenant_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT u.compute_plane_id, u.cluster, u.hour_ms, u.node_ms FROM usage_hourly u \
             JOIN compute_planes c ON c.id = u.compute_plane_id \
             WHERE c.tenant_id = $1 AND u.hour_ms >= $2 AND u.hour_ms < $3 \
             ORDER BY u.compute_plane_id, u.cluster, u.hour_ms",
        )
        .bind(tenant_id)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(compute_plane_id, cluster, hour_ms, node_ms)| UsageRow {
                compute_plane_id,
                cluster,
                hour_ms,
                node_ms,
            })
            .collect())
    }
}
