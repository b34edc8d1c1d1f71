//! PostgreSQL: sealed secrets.

use async_trait::async_trait;

use super::PgStore;
use crate::store::{SecretStore, StoreError};

#[async_trait]
impl SecretStore for PgStore {
    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT sealed FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(s,)| s))
    }

    async fn put_secret_if_absent(
        &self,
        name: &str,
        sealed: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO secrets (name, sealed, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let (stored,): (Vec<u8>,) = sqlx::query_as("SELECT sealed FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn put_secret(&self, name: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, sealed, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_secret(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
