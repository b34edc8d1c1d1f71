//! PostgreSQL: agent presence, one statement per kind of change for a whole batch
//! (`UPDATE … FROM UNNEST(…)`): a round trip to PostgreSQL costs far more than one to
//! SQLite's thread, and a flush carries up to a thousand compute planes.

use async_trait::async_trait;

use super::PgStore;
use crate::store::{PresenceStore, PresenceUpdate, SessionStart, StoreError, Superseded, to_json};

#[async_trait]
impl PresenceStore for PgStore {
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // Lock the rows in id order first, like every transaction that locks many compute
        // planes, so that two never deadlock.
        let mut ids: Vec<&str> = updates
            .iter()
            .map(|u| u.compute_plane_id.as_str())
            .collect();
        ids.sort_unstable();
        sqlx::query("SELECT id FROM compute_planes WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;

        let started: Vec<_> = updates
            .iter()
            .filter_map(|u| {
                u.connected
                    .as_ref()
                    .map(|s| (u.compute_plane_id.as_str(), s))
            })
            .collect();
        if !started.is_empty() {
            sqlx::query(
                "UPDATE compute_planes p SET agent_connected = TRUE, agent_session_id = u.session, \
                 agent_connected_since = u.at, agent_version = u.version, agent_last_heartbeat = u.at, \
                 agent_remote_addr = u.addr, agent_replica = u.replica \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]) \
                 AS u(cp, session, at, version, addr, replica) WHERE p.id = u.cp",
            )
            .bind(started.iter().map(|(cp, _)| *cp).collect::<Vec<_>>())
            .bind(started.iter().map(|(_, s)| s.session_id.as_str()).collect::<Vec<_>>())
            .bind(started.iter().map(|(_, s)| s.at).collect::<Vec<_>>())
            .bind(started.iter().map(|(_, s)| s.version.as_str()).collect::<Vec<_>>())
            .bind(started.iter().map(|(_, s)| s.remote_addr.as_str()).collect::<Vec<_>>())
            .bind(started.iter().map(|(_, s)| s.replica.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }

        let beats: Vec<_> = updates
            .iter()
            .filter_map(|u| {
                u.heartbeat
                    .as_ref()
                    .map(|h| (u.compute_plane_id.as_str(), h))
            })
            .collect();
        if !beats.is_empty() {
            sqlx::query(
                "UPDATE compute_planes p SET agent_last_heartbeat = u.at \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(cp, session, at) \
                 WHERE p.id = u.cp AND p.agent_session_id = u.session",
            )
            .bind(beats.iter().map(|(cp, _)| *cp).collect::<Vec<_>>())
            .bind(
                beats
                    .iter()
                    .map(|(_, (s, _))| s.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(beats.iter().map(|(_, (_, at))| *at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }

        let applied: Vec<_> = updates
            .iter()
            .filter_map(|u| u.applied.as_ref().map(|a| (u.compute_plane_id.as_str(), a)))
            .collect();
        if !applied.is_empty() {
            let cps: Vec<&str> = applied.iter().map(|(cp, _)| *cp).collect();
            sqlx::query(
                "UPDATE compute_planes p SET \
                 applied_generation = GREATEST(p.applied_generation, LEAST(u.generation, p.generation)), \
                 applied_conditions = CASE WHEN u.generation >= p.applied_generation \
                 THEN u.conditions::jsonb ELSE p.applied_conditions END \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[]) \
                 AS u(cp, session, generation, conditions) \
                 WHERE p.id = u.cp AND p.agent_session_id = u.session",
            )
            .bind(&cps)
            .bind(applied.iter().map(|(_, (s, _, _))| s.as_str()).collect::<Vec<_>>())
            .bind(applied.iter().map(|(_, (_, g, _))| *g).collect::<Vec<_>>())
            .bind(applied.iter().map(|(_, (_, _, c))| to_json(c)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            // Deletions the agent has now applied are done.
            sqlx::query(
                "DELETE FROM clusters c USING compute_planes p WHERE p.id = ANY($1) \
                 AND c.compute_plane_id = p.id AND c.deleted_generation <= p.applied_generation",
            )
            .bind(&cps)
            .execute(&mut *tx)
            .await?;
        }

        let ended: Vec<_> = updates
            .iter()
            .filter_map(|u| {
                u.disconnected
                    .as_ref()
                    .map(|s| (u.compute_plane_id.as_str(), s.as_str()))
            })
            .collect();
        if !ended.is_empty() {
            sqlx::query(
                "UPDATE compute_planes p SET agent_connected = FALSE \
                 FROM UNNEST($1::text[], $2::text[]) AS u(cp, session) \
                 WHERE p.id = u.cp AND p.agent_session_id = u.session",
            )
            .bind(ended.iter().map(|(cp, _)| *cp).collect::<Vec<_>>())
            .bind(ended.iter().map(|(_, s)| *s).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_session(
        &self,
        cp: &str,
        start: &SessionStart,
    ) -> Result<Option<Superseded>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row lock orders concurrent claims of one compute plane: the later one sees
        // (and supersedes) the earlier.
        let before: Option<(bool, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT agent_connected, agent_session_id, agent_replica FROM compute_planes \
             WHERE id = $1 FOR UPDATE",
        )
        .bind(cp)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((connected, old_session, old_replica)) = before else {
            return Err(StoreError::NotFound("compute plane"));
        };
        sqlx::query(
            "UPDATE compute_planes SET agent_connected = TRUE, agent_session_id = $1, \
             agent_connected_since = $2, agent_version = $3, agent_last_heartbeat = $2, \
             agent_remote_addr = $4, agent_replica = $5 WHERE id = $6",
        )
        .bind(&start.session_id)
        .bind(start.at)
        .bind(&start.version)
        .bind(&start.remote_addr)
        .bind(&start.replica)
        .bind(cp)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match old_session {
            Some(session_id) if connected && session_id != start.session_id => Some(Superseded {
                session_id,
                replica: old_replica,
            }),
            _ => None,
        })
    }

    async fn mark_all_disconnected(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE compute_planes SET agent_connected = FALSE WHERE agent_connected")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
