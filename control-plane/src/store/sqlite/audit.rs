//! SQLite: the audit log (append-only, enforced by triggers) and dashboard sessions.

use async_trait::async_trait;
use sqlx::Row;

use super::SqliteStore;
use crate::store::rows;
use crate::store::{
    AuditEntry, AuditFilter, AuditResult, AuditStore, DashboardSession, StoreError, page_of,
};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEntry) -> Result<i64, StoreError> {
        let id = sqlx::query(
            "INSERT INTO audit_log (at_ms, token_id, role, tenant_id, action, target, result, status, client_addr, via, user_name) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(&e.user)
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
        let (page, more) = page_of(rows, limit);
        let entries = page
            .iter()
            .map(rows::audit_entry)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok((entries, next))
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
        .await
        .map_err(|e| match crate::store::missing_or(e, "API token") {
            StoreError::Database(e) => {
                crate::store::conflict_or(e, "this dashboard session exists".to_owned())
            }
            other => other,
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn dashboard_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<DashboardSession>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.csrf, s.expires_ms, {} FROM dashboard_sessions s \
             JOIN api_tokens t ON t.id = s.token_id LEFT JOIN users u ON u.id = t.user_id WHERE s.id_hash = ? AND s.expires_ms > ?",
            rows::TOKEN_COLUMNS
        )))
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(token) = rows::api_token(&row)? else {
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
}
