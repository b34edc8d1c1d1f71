//! SQLite: sealed secrets.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::{SecretStore, StoreError};

#[async_trait]
impl SecretStore for SqliteStore {
    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT sealed FROM secrets WHERE name = ?")
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
        let (_turn, mut tx) = self.write_tx().await?;
        sqlx::query("INSERT INTO secrets (name, sealed, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let (stored,): (Vec<u8>,) = sqlx::query_as("SELECT sealed FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn put_secret(&self, name: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, sealed, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(sealed)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    async fn delete_secret(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }
}
