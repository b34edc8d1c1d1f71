//! Heartbeats, coalesced: every session's latest heartbeat is kept in memory and written to
//! the store once per [`FLUSH_EVERY`] in one transaction. One write per heartbeat would be
//! 10,000 sessions / 15 s = 667 write transactions per second — about what SQLite commits
//! here in total — so the heartbeats alone would starve every other write at that scale.
//! The cost: `last_heartbeat` in the API lags by up to [`FLUSH_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::store::Store;

/// How often pending heartbeats are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The latest heartbeat of each session not yet written: compute plane → (session, at).
#[derive(Debug, Default)]
pub struct Heartbeats {
    pending: Mutex<HashMap<String, (String, i64)>>,
}

impl Heartbeats {
    /// Notes a heartbeat of `session_id` (compute plane `cp`) at `at` (Unix seconds).
    pub fn record(&self, cp: &str, session_id: &str, at: i64) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cp.to_owned(), (session_id.to_owned(), at));
    }

    /// Writes what is pending (one transaction); on failure it is kept for the next flush.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(String, String, i64)> = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            p.drain().map(|(cp, (s, at))| (cp, s, at)).collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.agent_heartbeats(&batch).await {
            tracing::warn!(error = %e, sessions = batch.len(), "recording heartbeats failed; retrying");
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (cp, s, at) in batch {
                p.entry(cp).or_insert((s, at));
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the task is stopped.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut every = tokio::time::interval(FLUSH_EVERY);
        loop {
            every.tick().await;
            self.flush(store.as_ref()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionStart;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn the_latest_heartbeat_of_the_current_session_is_written() {
        let (_dir, store, cp) = crate::store::sqlite::test_store().await;
        let start = |id: &str| SessionStart {
            session_id: id.into(),
            at: 100,
            version: "test".into(),
            remote_addr: "127.0.0.1:1".into(),
        };
        store
            .agent_connected(&cp.id, &start("s2"))
            .await
            .expect("connected");
        let hb = Heartbeats::default();
        hb.record(&cp.id, "s2", 110);
        hb.record(&cp.id, "s2", 125);
        hb.flush(&store).await;
        let seen = |s: &SqliteStore| {
            let s = s.clone();
            let id = cp.id.clone();
            async move {
                s.get_compute_plane(&id)
                    .await
                    .expect("get")
                    .and_then(|c| c.agent.last_heartbeat)
            }
        };
        assert_eq!(seen(&store).await, Some(125), "the latest one, once");
        // A heartbeat of a superseded session changes nothing.
        hb.record(&cp.id, "s1", 200);
        hb.flush(&store).await;
        assert_eq!(seen(&store).await, Some(125));
        // Nothing pending: nothing written.
        hb.flush(&store).await;
        assert_eq!(seen(&store).await, Some(125));
    }
}
