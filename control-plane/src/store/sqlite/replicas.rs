//! SQLite: the one process's lease (the same shape as a fleet's) and health.

use async_trait::async_trait;
use sqlx::Row;

use super::SqliteStore;
use crate::store::rows;
use crate::store::{HeldSession, Replica, ReplicaStore, StoreError};

#[async_trait]
impl ReplicaStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn renew_replica(&self, r: &Replica) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let existed = sqlx::query("SELECT 1 FROM replicas WHERE name = ?")
            .bind(&r.name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO replicas (name, started_ms, last_seen_ms, lease_ms, sessions, draining) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
             last_seen_ms = excluded.last_seen_ms, lease_ms = excluded.lease_ms, \
             sessions = excluded.sessions, draining = excluded.draining",
        )
        .bind(&r.name)
        .bind(r.started_ms)
        .bind(r.last_seen_ms)
        .bind(r.lease_ms)
        .bind(i64::try_from(r.sessions).unwrap_or(i64::MAX))
        .bind(r.draining)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(!existed)
    }

    async fn reclaim_sessions(
        &self,
        replica: &str,
        sessions: &[(String, String)],
    ) -> Result<u64, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let mut n = 0;
        for (cp, session) in sessions {
            n += sqlx::query(
                "UPDATE compute_planes SET agent_connected = 1, agent_replica = ? \
                 WHERE id = ? AND agent_session_id = ?",
            )
            .bind(replica)
            .bind(cp)
            .bind(session)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn list_replicas(&self, now_ms: i64) -> Result<Vec<Replica>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM replicas WHERE last_seen_ms + lease_ms >= ? ORDER BY name")
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(rows::replica).collect::<Result<_, _>>()?)
    }

    async fn expire_replicas(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let gone: Vec<(String,)> =
            sqlx::query_as("DELETE FROM replicas WHERE last_seen_ms + lease_ms < ? RETURNING name")
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?;
        for (name,) in &gone {
            sqlx::query(
                "UPDATE compute_planes SET agent_connected = 0 WHERE agent_connected = 1 AND agent_replica = ?",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(gone.into_iter().map(|(n,)| n).collect())
    }

    async fn remove_replica(&self, name: &str) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        sqlx::query("DELETE FROM replicas WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE compute_planes SET agent_connected = 0 WHERE agent_connected = 1 AND agent_replica = ?",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn held_sessions(&self, cps: &[String]) -> Result<Vec<HeldSession>, StoreError> {
        let mut out = Vec::with_capacity(cps.len());
        for cp in cps {
            let row = sqlx::query(
                "SELECT id, generation, applied_generation, agent_revoked, agent_session_id, agent_replica \
                 FROM compute_planes WHERE id = ?",
            )
            .bind(cp)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                out.push(HeldSession {
                    compute_plane_id: r.try_get("id")?,
                    generation: r.try_get("generation")?,
                    applied_generation: r.try_get("applied_generation")?,
                    revoked: r.try_get::<i64, _>("agent_revoked")? != 0,
                    session_id: r.try_get("agent_session_id")?,
                    replica: r.try_get("agent_replica")?,
                });
            }
        }
        Ok(out)
    }
}
