//! SQLite: agent presence.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::{PresenceStore, PresenceUpdate, StoreError};

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
                     agent_remote_addr = ? WHERE id = ?",
                )
                .bind(&s.session_id)
                .bind(s.at)
                .bind(&s.version)
                .bind(s.at)
                .bind(&s.remote_addr)
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
            if let Some((generation, conditions)) = &u.applied {
                super::desired::record_applied(&mut tx, cp, *generation, conditions).await?;
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

    async fn mark_all_disconnected(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE compute_planes SET agent_connected = 0")
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }
}
