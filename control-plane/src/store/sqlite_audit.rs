//! SQLite implementation of the audit log (append-only, enforced by triggers), dashboard
//! sessions and usage; and the usage integration that telemetry ingest calls.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::sqlite::SqliteStore;
use super::{
    ApiToken, AuditEntry, AuditFilter, AuditResult, AuditStore, DashboardSession, StoreError,
    UsageRow,
};

/// The metric samples whose sum is a cluster's ready nodes.
pub(super) const NODE_SERIES: [&str; 2] = ["ready_workers", "coordinator_ready"];
/// A gap between two samples longer than this is not billed beyond it: the agent was not
/// reporting, so the time is unknown.
const MAX_BILLED_GAP_MS: i64 = 5 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;
/// How far ahead of the control plane's clock a sample may be.
const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// More ready pods than any cluster has.
const MAX_NODES: f64 = 100_000.0;

fn audit_entry(r: &SqliteRow) -> Result<AuditEntry, sqlx::Error> {
    let result: String = r.try_get("result")?;
    let status: i64 = r.try_get("status")?;
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at_ms: r.try_get("at_ms")?,
        token_id: r.try_get("token_id")?,
        role: r.try_get("role")?,
        tenant_id: r.try_get("tenant_id")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        result: match result.as_str() {
            "ok" => AuditResult::Ok,
            "denied" => AuditResult::Denied,
            "rejected" => AuditResult::Rejected,
            _ => AuditResult::Error,
        },
        status: u16::try_from(status).unwrap_or(0),
        client_addr: r.try_get("client_addr")?,
        via: r.try_get("via")?,
    })
}

/// Adds the node time a new sample closes to `usage_hourly`: the previous sample's value
/// held from its time until this one (at most [`MAX_BILLED_GAP_MS`]), split at hour
/// boundaries. Samples at or before the series' last one (resends, reordering) add nothing.
pub(super) async fn accrue_usage(
    tx: &mut Transaction<'_, Sqlite>,
    cp: &str,
    cluster: &str,
    name: &str,
    ts_ms: i64,
    value: f64,
) -> Result<(), sqlx::Error> {
    // The agent runs in the customer's account: a sample from the future would freeze the
    // series (later samples are "older"), an absurd value would overflow. Neither counts.
    let now = tether_shared::timestamps::now_unix_ms();
    if ts_ms > now + MAX_CLOCK_SKEW_MS || !(0.0..=MAX_NODES).contains(&value) {
        return Ok(());
    }
    let last = sqlx::query(
        "SELECT last_ms, last_value FROM usage_cursor WHERE compute_plane_id = ? AND cluster = ? AND name = ?",
    )
    .bind(cp)
    .bind(cluster)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = &last {
        let last_ms: i64 = row.try_get("last_ms")?;
        let last_value: f64 = row.try_get("last_value")?;
        if ts_ms <= last_ms {
            return Ok(());
        }
        let nodes = last_value.max(0.0);
        let mut from = last_ms;
        let to = ts_ms.min(last_ms + MAX_BILLED_GAP_MS);
        while nodes > 0.0 && from < to {
            let hour = from - from.rem_euclid(HOUR_MS);
            let end = to.min(hour + HOUR_MS);
            let node_ms = ((end - from) as f64 * nodes).round() as i64;
            sqlx::query(
                "INSERT INTO usage_hourly (compute_plane_id, cluster, hour_ms, node_ms) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (compute_plane_id, cluster, hour_ms) DO UPDATE SET node_ms = node_ms + excluded.node_ms",
            )
            .bind(cp)
            .bind(cluster)
            .bind(hour)
            .bind(node_ms)
            .execute(&mut **tx)
            .await?;
            from = end;
        }
    }
    sqlx::query(
        "INSERT INTO usage_cursor (compute_plane_id, cluster, name, last_ms, last_value) VALUES (?, ?, ?, ?, ?) \
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
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEntry) -> Result<i64, StoreError> {
        let id = sqlx::query(
            "INSERT INTO audit_log (at_ms, token_id, role, tenant_id, action, target, result, status, client_addr, via) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at_ms)
        .bind(&e.token_id)
        .bind(&e.role)
        .bind(&e.tenant_id)
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.result.as_str())
        .bind(i64::from(e.status))
        .bind(&e.client_addr)
        .bind(&e.via)
        .execute(&mut *self.writer().await?)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    async fn audit_log(
        &self,
        f: &AuditFilter,
    ) -> Result<(Vec<AuditEntry>, Option<i64>), StoreError> {
        let limit = i64::from(f.limit.clamp(1, 1000));
        let result = f.result.map(AuditResult::as_str);
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE (? IS NULL OR tenant_id = ?) AND (? IS NULL OR token_id = ?) \
             AND (? IS NULL OR instr(action, ?) > 0) AND (? IS NULL OR result = ?) \
             AND (? IS NULL OR at_ms >= ?) AND (? IS NULL OR at_ms < ?) AND (? IS NULL OR id < ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(&f.tenant_id)
        .bind(&f.tenant_id)
        .bind(&f.token_id)
        .bind(&f.token_id)
        .bind(&f.action)
        .bind(&f.action)
        .bind(result)
        .bind(result)
        .bind(f.since_ms)
        .bind(f.since_ms)
        .bind(f.until_ms)
        .bind(f.until_ms)
        .bind(f.cursor)
        .bind(f.cursor)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let (page, more) = super::sqlite::page_of(rows, limit);
        let entries = page
            .iter()
            .map(audit_entry)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok((entries, next))
    }

    async fn api_token_by_id(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query("SELECT id, tenant_id, role FROM api_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .as_ref()
            .map(super::sqlite::api_token)
            .transpose()?
            .flatten())
    }

    async fn create_dashboard_session(
        &self,
        id_hash: &str,
        token_id: &str,
        csrf: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, token_id, csrf, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id_hash)
        .bind(token_id)
        .bind(csrf)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dashboard_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<DashboardSession>, StoreError> {
        let row = sqlx::query(
            "SELECT s.csrf, s.expires_ms, t.id, t.tenant_id, t.role FROM dashboard_sessions s \
             JOIN api_tokens t ON t.id = s.token_id WHERE s.id_hash = ? AND s.expires_ms > ?",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(token) = super::sqlite::api_token(&row)? else {
            return Ok(None);
        };
        Ok(Some(DashboardSession {
            token,
            csrf: row.try_get("csrf")?,
            expires_ms: row.try_get("expires_ms")?,
        }))
    }

    async fn delete_dashboard_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }

    async fn usage(
        &self,
        tenant_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.compute_plane_id, u.cluster, u.hour_ms, u.node_ms FROM usage_hourly u \
             JOIN compute_planes c ON c.id = u.compute_plane_id \
             WHERE c.tenant_id = ? AND u.hour_ms >= ? AND u.hour_ms < ? \
             ORDER BY u.compute_plane_id, u.cluster, u.hour_ms",
        )
        .bind(tenant_id)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    compute_plane_id: r.try_get("compute_plane_id")?,
                    cluster: r.try_get("cluster")?,
                    hour_ms: r.try_get("hour_ms")?,
                    node_ms: r.try_get("node_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
