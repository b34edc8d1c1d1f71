//! SQLite: agent presence.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::{PresenceStore, PresenceUpdate, SessionStart, StoreError, Superseded};

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError> {
        // One prepared statement per change, all in one transaction. (Tried: one statement
        // per kind of change for the whole batch with `UPDATE … FROM json_each(?)`; without
        // table statistics SQLite may scan compute_planes for every JSON row, which with
        // 10,000 compute planes made each flush cost more than all the rows it saved.)
        let (_turn, mut tx) = self.write_tx().await?;
        for u in updates {
            let cp = &u.compute_plane_id;
            if let Some(s) = &u.connected {
                sqlx::query(
                    "UPDATE compute_planes SET agent_connected = 1, agent_session_id = ?, \
                     agent_connected_since = ?, agent_version = ?, agent_last_heartbeat = ?, \
                     agent_remote_addr = ?, agent_replica = ? WHERE id = ?",
                )
                .bind(&s.session_id)
                .bind(s.at)
                .bind(&s.version)
                .bind(s.at)
                .bind(&s.remote_addr)
                .bind(&s.replica)
                .bind(cp)
                .execute(&mut *tx)
                .await?;
            }
            if let Some((session, at)) = &u.heartbeat {
                sqlx::query(
                    "UPDATE compute_planes SET agent_last_heartbeat = ? WHERE id = ? AND agent_session_id = ?",
                )
                .bind(at)
                .bind(cp)
                .bind(session)
                .execute(&mut *tx)
                .await?;
            }
            if let Some((session, generation, conditions)) = &u.applied {
                super::desired::record_applied(&mut tx, cp, Some(session), *generation, conditions)
                    .await?;
            }
            if let Some(session) = &u.disconnected {
                sqlx::query(
                    "UPDATE compute_planes SET agent_connected = 0 WHERE id = ? AND agent_session_id = ?",
                )
                .bind(cp)
                .bind(session)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_session(
        &self,
        cp: &str,
        start: &SessionStart,
    ) -> Result<Option<Superseded>, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let before: Option<(i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT agent_connected, agent_session_id, agent_replica FROM compute_planes WHERE id = ?",
        )
        .bind(cp)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((connected, old_session, old_replica)) = before else {
            return Err(StoreError::NotFound("compute plane"));
        };
        sqlx::query(
            "UPDATE compute_planes SET agent_connected = 1, agent_session_id = ?, \
             agent_connected_since = ?, agent_version = ?, agent_last_heartbeat = ?, \
             agent_remote_addr = ?, agent_replica = ? WHERE id = ?",
        )
        .bind(&start.session_id)
        .bind(start.at)
        .bind(&start.version)
        .bind(start.at)
        .bind(&start.remote_addr)
        .bind(&start.replica)
        .bind(cp)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match old_session {
            Some(session_id) if connected != 0 && session_id != start.session_id => {
                Some(Superseded {
                    session_id,
                    replica: old_replica,
                })
            }
            _ => None,
        })
    }

    async fn mark_all_disconnected(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE compute_planes SET agent_connected = 0")
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }
}
