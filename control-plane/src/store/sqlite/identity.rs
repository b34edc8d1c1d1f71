//! SQLite: identity providers, users and their tokens, pending OIDC sign-ins.

use async_trait::async_trait;

use super::SqliteStore;
use crate::authz::Role;
use crate::identity::{ProviderConfig, Via};
use crate::store::{
    ApiToken, IdentityStore, PendingLogin, Scope, StoreError, User, conflict_or, from_json,
    missing_or, new_id, rows, to_json,
};

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn put_identity_provider(
        &self,
        tenant_id: &str,
        config: &ProviderConfig,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO identity_providers (tenant_id, kind, config, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET kind = excluded.kind, config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(config.via().as_str())
        .bind(to_json(config))
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| missing_or(e, "tenant"))?;
        Ok(())
    }

    async fn identity_provider(
        &self,
        tenant_id: &str,
    ) -> Result<Option<ProviderConfig>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT config FROM identity_providers WHERE tenant_id = ?")
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(c,)| from_json("identity provider", tenant_id, &c))
            .transpose()
    }

    async fn delete_identity_provider(
        &self,
        tenant_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM identity_providers WHERE tenant_id = ?")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        // Its people's sessions and personal tokens end with it.
        sqlx::query(
            "UPDATE api_tokens SET expires_at = ? WHERE (expires_at IS NULL OR expires_at > ?) \
             AND user_id IN (SELECT id FROM users WHERE tenant_id = ?)",
        )
        .bind(now)
        .bind(now)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn sign_in_user(
        &self,
        scope: Scope<'_>,
        via: Via,
        subject: &str,
        name: &str,
        role: Role,
        now: i64,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(
            "INSERT INTO users (id, scope, tenant_id, via, subject, name, role, created_at, last_sign_in_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (scope, via, subject) DO UPDATE SET name = excluded.name, role = excluded.role, \
             last_sign_in_at = excluded.last_sign_in_at RETURNING *",
        )
        .bind(new_id())
        .bind(scope.key())
        .bind(scope.tenant_id())
        .bind(via.as_str())
        .bind(subject)
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| missing_or(e, "tenant"))?;
        rows::user(&row)?.ok_or_else(|| StoreError::Corrupt {
            what: "user",
            name: name.to_owned(),
            message: "unknown role or provider kind".into(),
        })
    }

    async fn end_user_tokens(
        &self,
        scope: Scope<'_>,
        via: Via,
        subject: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET expires_at = ? WHERE (expires_at IS NULL OR expires_at > ?) \
             AND user_id IN (SELECT id FROM users WHERE scope = ? AND via = ? AND subject = ?)",
        )
        .bind(now)
        .bind(now)
        .bind(scope.key())
        .bind(via.as_str())
        .bind(subject)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_users(&self, tenant_id: &str) -> Result<Vec<User>, StoreError> {
        let found = sqlx::query("SELECT * FROM users WHERE tenant_id = ? ORDER BY name, id")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &found {
            out.extend(rows::user(r)?);
        }
        Ok(out)
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(rows::user).transpose()?.flatten())
    }

    async fn create_user_token(
        &self,
        user: &User,
        role: Role,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<ApiToken, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, role, token_hash, created_at, user_id, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&user.tenant_id)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(now)
        .bind(&user.id)
        .bind(expires_at)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| match missing_or(e, "user") {
            StoreError::Database(e) => {
                conflict_or(e, "this API token is already stored".to_owned())
            }
            other => other,
        })?;
        Ok(ApiToken {
            id,
            tenant_id: user.tenant_id.clone(),
            role,
            user: Some(format!("{} via {}", user.name, user.via.as_str())),
            user_id: Some(user.id.clone()),
            expires_at: Some(expires_at),
        })
    }

    async fn put_pending_login(
        &self,
        state_hash: &str,
        login: &PendingLogin,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM oidc_logins WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&mut *self.writer().await?)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, scope, nonce, pkce_verifier, expires_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(state_hash)
        .bind(&login.scope)
        .bind(&login.nonce)
        .bind(&login.pkce_verifier)
        .bind(expires_ms)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| conflict_or(e, "this sign-in state is already stored".to_owned()))?;
        Ok(())
    }

    async fn take_pending_login(
        &self,
        state_hash: &str,
        now_ms: i64,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM oidc_logins WHERE state_hash = ? RETURNING scope, nonce, pkce_verifier, expires_ms",
        )
        .bind(state_hash)
        .fetch_optional(&mut *self.writer().await?)
        .await?;
        Ok(row
            .filter(|r| r.3 > now_ms)
            .map(|(scope, nonce, pkce_verifier, _)| PendingLogin {
                scope,
                nonce,
                pkce_verifier,
            }))
    }
}
