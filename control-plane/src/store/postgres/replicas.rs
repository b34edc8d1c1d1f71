//! PostgreSQL: replica leases and health.

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::store::rows;
use crate::store::{HeldSession, Replica, ReplicaStore, StoreError};

#[async_trait]
impl ReplicaStore for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn renew_replica(&self, r: &Replica) -> Result<bool, StoreError> {
        // xmax is 0 for a row this statement inserted (PostgreSQL's MVCC bookkeeping).
        let (created,): (bool,) = sqlx::query_as(
            "INSERT INTO replicas (name, started_ms, last_seen_ms, lease_ms, sessions, draining) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
             last_seen_ms = excluded.last_seen_ms, lease_ms = excluded.lease_ms, \
             sessions = excluded.sessions, draining = excluded.draining \
             RETURNING (xmax = 0)",
        )
        .bind(&r.name)
        .bind(r.started_ms)
        .bind(r.last_seen_ms)
        .bind(r.lease_ms)
        .bind(i64::try_from(r.sessions).unwrap_or(i64::MAX))
        .bind(r.draining)
        .fetch_one(&self.pool)
        .await?;
        Ok(created)
    }

    async fn reclaim_sessions(
        &self,
        replica: &str,
        sessions: &[(String, String)],
    ) -> Result<u64, StoreError> {
        let cps: Vec<&str> = sessions.iter().map(|(cp, _)| cp.as_str()).collect();
        let ids: Vec<&str> = sessions.iter().map(|(_, s)| s.as_str()).collect();
        let done = sqlx::query(
            "UPDATE compute_planes p SET agent_connected = TRUE, agent_replica = $1 \
             FROM UNNEST($2::text[], $3::text[]) AS u(cp, session) \
             WHERE p.id = u.cp AND p.agent_session_id = u.session",
        )
        .bind(replica)
        .bind(&cps)
        .bind(&ids)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_replicas(&self, now_ms: i64) -> Result<Vec<Replica>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM replicas WHERE last_seen_ms + lease_ms >= $1 ORDER BY name COLLATE \"C\"")
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(rows::replica).collect::<Result<_, _>>()?)
    }

    async fn expire_replicas(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        // Every live replica runs this; the row locks of the DELETE make one of them do it.
        let mut tx = self.pool.begin().await?;
        let gone: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM replicas WHERE last_seen_ms + lease_ms < $1 RETURNING name",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let names: Vec<String> = gone.into_iter().map(|(n,)| n).collect();
        if !names.is_empty() {
            sqlx::query(
                "UPDATE compute_planes SET agent_connected = FALSE WHERE id IN ( \
                 SELECT id FROM compute_planes WHERE agent_connected AND agent_replica = ANY($1) \
                 ORDER BY id FOR UPDATE)",
            )
            .bind(&names)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(names)
    }

    async fn remove_replica(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM replicas WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE compute_planes SET agent_connected = FALSE WHERE id IN ( \
             SELECT id FROM compute_planes WHERE agent_connected AND agent_replica = $1 \
             ORDER BY id FOR UPDATE)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn held_sessions(&self, cps: &[String]) -> Result<Vec<HeldSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, generation, applied_generation, agent_revoked, agent_session_id, agent_replica \
             FROM compute_planes WHERE id = ANY($1)",
        )
        .bind(cps)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HeldSession {
                    compute_plane_id: r.try_get("id")?,
                    generation: r.try_get("generation")?,
                    applied_generation: r.try_get("applied_generation")?,
                    revoked: r.try_get("agent_revoked")?,
                    session_id: r.try_get("agent_session_id")?,
                    replica: r.try_get("agent_replica")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
