//! SQLite: tenants and API tokens.

use async_trait::async_trait;

use super::SqliteStore;
use crate::authz::Role;
use crate::store::rows;
use crate::store::{ApiToken, Settings, StoreError, Tenant, TenantStore, conflict_or, new_id};

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(
        &self,
        name: &str,
        aws_account_id: Option<&str>,
        account_binding: bool,
        now: i64,
    ) -> Result<Tenant, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO tenants (id, name, aws_account_id, account_binding, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(name)
        .bind(aws_account_id)
        .bind(account_binding)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| conflict_or(e, format!("tenant {name:?} already exists")))?;
        Ok(Tenant {
            id,
            name: name.to_owned(),
            aws_account_id: aws_account_id.map(str::to_owned),
            account_binding,
            created_at: now,
            settings: Settings::new(),
        })
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::tenant).collect()
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::tenant).transpose()
    }

    async fn create_api_token(
        &self,
        tenant_id: Option<&str>,
        role: Role,
        token_hash: &str,
        now: i64,
    ) -> Result<ApiToken, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| match crate::store::missing_or(e, "tenant") {
            StoreError::Database(e) => {
                conflict_or(e, "this API token is already stored".to_owned())
            }
            other => other,
        })?;
        Ok(ApiToken {
            id,
            tenant_id: tenant_id.map(str::to_owned),
            role,
            user: None,
            user_id: None,
            expires_at: None,
        })
    }

    async fn find_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} WHERE t.token_hash = ?",
            rows::TOKEN_COLUMNS,
            rows::TOKEN_FROM
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(rows::api_token).transpose()?.flatten())
    }

    async fn api_token_by_id(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} WHERE t.id = ?",
            rows::TOKEN_COLUMNS,
            rows::TOKEN_FROM
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(rows::api_token).transpose()?.flatten())
    }

    async fn bootstrap_platform_admin(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let first = sqlx::query(
            "INSERT INTO bootstrap (what, at) VALUES ('platform-admin', ?) ON CONFLICT (what) DO NOTHING",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if first {
            sqlx::query(
                "INSERT INTO api_tokens (id, tenant_id, role, token_hash, created_at) VALUES (?, NULL, ?, ?, ?)",
            )
            .bind(new_id())
            .bind(Role::PlatformAdmin.as_str())
            .bind(token_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "this API token is already stored".to_owned()))?;
        }
        tx.commit().await?;
        Ok(first)
    }
}
