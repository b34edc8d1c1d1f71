//! PostgreSQL: support requests and their bundles.

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::store::{StoreError, SupportRequestRow, SupportStore};

fn row(r: &sqlx::postgres::PgRow) -> Result<SupportRequestRow, StoreError> {
    Ok(SupportRequestRow {
        id: r.try_get("id")?,
        compute_plane_id: r.try_get("compute_plane_id")?,
        reason: r.try_get("reason")?,
        requested_by: r.try_get("requested_by")?,
        requested_at_ms: r.try_get("requested_at_ms")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        received_at_ms: r.try_get("received_at_ms")?,
        bundle_bytes: r.try_get("bundle_bytes")?,
    })
}

const COLUMNS: &str = "id, compute_plane_id, reason, requested_by, requested_at_ms, \
     expires_at_ms, received_at_ms, octet_length(bundle)::bigint AS bundle_bytes";

#[async_trait]
impl SupportStore for PgStore {
    async fn create_support_request(&self, r: &SupportRequestRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO support_requests (id, compute_plane_id, reason, requested_by, \
             requested_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.id)
        .bind(&r.compute_plane_id)
        .bind(&r.reason)
        .bind(&r.requested_by)
        .bind(r.requested_at_ms)
        .bind(r.expires_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| crate::store::conflict_or(e, format!("support request {} exists", r.id)))?;
        Ok(())
    }

    async fn support_requests(&self, cp: &str) -> Result<Vec<SupportRequestRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM support_requests WHERE compute_plane_id = $1 \
             ORDER BY requested_at_ms DESC, id DESC"
        )))
        .bind(cp)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    async fn record_support_bundle(
        &self,
        cp: &str,
        id: &str,
        bundle: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT expires_at_ms, received_at_ms FROM support_requests \
             WHERE id = $1 AND compute_plane_id = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(cp)
        .fetch_optional(&mut *tx)
        .await?;
        crate::store::support::may_take_bundle(found, id, now_ms)?;
        sqlx::query("UPDATE support_requests SET bundle = $1, received_at_ms = $2 WHERE id = $3")
            .bind(bundle)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn support_bundle(&self, cp: &str, id: &str) -> Result<Option<String>, StoreError> {
        let found: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT bundle FROM support_requests WHERE id = $1 AND compute_plane_id = $2",
        )
        .bind(id)
        .bind(cp)
        .fetch_optional(&self.pool)
        .await?;
        found
            .map(|(b,)| b)
            .ok_or(StoreError::NotFound("support request"))
    }
}
