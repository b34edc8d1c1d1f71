//! What agents report about themselves — session started, heartbeat, applied generation,
//! session ended — written behind, coalesced per compute plane. Every change is kept in
//! memory at once and written within [`FLUSH_EVERY`] in one transaction per
//! [`MAX_BATCH`] compute planes.
//!
//! One write transaction per event does not scale: SQLite commits about 760 write
//! transactions per second here. At 10,000 sessions the heartbeats alone are 667 a second,
//! and a reconnect storm after a control-plane restart brings a session start and an
//! applied ack from every agent within seconds: about 20,000 single writes, a queue of
//! some 26 s that every session start had to wait in, and past SQLite's busy timeout a
//! failed start, whose agent then doubles its backoff.
//!
//! The cost: the API shows these fields up to [`FLUSH_EVERY`] late. The live session
//! registry, which desired-state pushes and revocations use, is updated at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tether_shared::status::Condition;
use tokio::sync::Notify;

use crate::store::{PresenceUpdate, SessionStart, Store};

/// Pending changes are written at most this long after they happen.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Compute planes per write transaction, so one flush never holds the write lock long.
pub const MAX_BATCH: usize = 1000;

/// What is pending for one compute plane.
#[derive(Debug, Default)]
struct Pending {
    connected: Option<SessionStart>,
    heartbeat: Option<(String, i64)>,
    applied: Option<(String, i64, Vec<Condition>)>,
    disconnected: Option<String>,
}

/// The write-behind buffer.
#[derive(Debug, Default)]
pub struct Presence {
    pending: Mutex<HashMap<String, Pending>>,
    wake: Notify,
    /// One flush at a time, so an older batch is never written after a newer one.
    flushing: tokio::sync::Mutex<()>,
}

impl Presence {
    fn update(&self, cp: &str, f: impl FnOnce(&mut Pending)) {
        {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            f(p.entry(cp.to_owned()).or_default());
        }
        self.wake.notify_one();
    }

    /// A session of `cp` started. What was pending for an earlier session is moot.
    pub fn connected(&self, cp: &str, start: SessionStart) {
        self.update(cp, |p| {
            p.connected = Some(start);
            p.heartbeat = None;
            p.disconnected = None;
        });
    }

    /// A heartbeat of `session_id` at `at` (Unix seconds).
    pub fn heartbeat(&self, cp: &str, session_id: &str, at: i64) {
        self.update(cp, |p| p.heartbeat = Some((session_id.to_owned(), at)));
    }

    /// The agent applied `generation` in session `session_id`, with `conditions`.
    pub fn applied(&self, cp: &str, session_id: &str, generation: i64, conditions: Vec<Condition>) {
        self.update(cp, |p| match &p.applied {
            Some((s, g, _)) if s == session_id && *g > generation => {}
            _ => p.applied = Some((session_id.to_owned(), generation, conditions)),
        });
    }

    /// The session `session_id` ended.
    pub fn disconnected(&self, cp: &str, session_id: &str) {
        self.update(cp, |p| p.disconnected = Some(session_id.to_owned()));
    }

    /// Writes what is pending; what fails is kept (under anything newer) for the next flush.
    pub async fn flush(&self, store: &dyn Store) {
        let _one = self.flushing.lock().await;
        let all: Vec<(String, Pending)> = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            p.drain().collect()
        };
        for chunk in all.chunks(MAX_BATCH) {
            let batch: Vec<PresenceUpdate> = chunk
                .iter()
                .map(|(cp, p)| PresenceUpdate {
                    compute_plane_id: cp.clone(),
                    connected: p.connected.clone(),
                    heartbeat: p.heartbeat.clone(),
                    applied: p.applied.clone(),
                    disconnected: p.disconnected.clone(),
                })
                .collect();
            if let Err(e) = store.record_presence(&batch).await {
                tracing::warn!(error = %e, compute_planes = batch.len(), "recording agent presence failed; retrying");
                self.keep(batch);
            }
        }
    }

    /// Puts a batch that failed back, under what arrived since.
    fn keep(&self, batch: Vec<PresenceUpdate>) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for u in batch {
            let now = p.entry(u.compute_plane_id).or_default();
            if now.applied.is_none() {
                now.applied = u.applied;
            }
            if now.connected.is_some() {
                // A newer session started: the old one's events are moot.
                continue;
            }
            now.connected = u.connected;
            if now.heartbeat.is_none() {
                now.heartbeat = u.heartbeat;
            }
            if now.disconnected.is_none() {
                now.disconnected = u.disconnected;
            }
        }
    }

    /// Flushes whenever something is pending, at most every [`FLUSH_EVERY`], until the
    /// task is stopped.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(FLUSH_EVERY).await;
            self.flush(store.as_ref()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ComputePlaneStore, DesiredStateStore};

    fn start(id: &str) -> SessionStart {
        SessionStart {
            session_id: id.into(),
            at: 100,
            version: "test".into(),
            remote_addr: "127.0.0.1:1".into(),
            replica: "r1".into(),
        }
    }

    async fn agent(s: &SqliteStore, cp: &str) -> crate::store::AgentState {
        s.get_compute_plane(cp)
            .await
            .expect("get")
            .expect("cp")
            .agent
    }

    #[tokio::test]
    async fn the_latest_heartbeat_of_the_current_session_is_written() {
        let (_dir, store, cp) = crate::store::sqlite::test_store().await;
        let p = Presence::default();
        p.connected(&cp.id, start("s2"));
        p.heartbeat(&cp.id, "s2", 110);
        p.heartbeat(&cp.id, "s2", 125);
        p.flush(&store).await;
        let a = agent(&store, &cp.id).await;
        assert!(a.connected);
        assert_eq!(a.last_heartbeat, Some(125), "the latest one, once");
        // A heartbeat of a superseded session changes nothing.
        p.heartbeat(&cp.id, "s1", 200);
        p.flush(&store).await;
        assert_eq!(agent(&store, &cp.id).await.last_heartbeat, Some(125));
        // Nothing pending: nothing written.
        p.flush(&store).await;
        assert_eq!(agent(&store, &cp.id).await.last_heartbeat, Some(125));
    }

    #[tokio::test]
    async fn a_session_that_came_and_went_within_one_flush_ends_disconnected() {
        let (_dir, store, cp) = crate::store::sqlite::test_store().await;
        let p = Presence::default();
        p.connected(&cp.id, start("s1"));
        p.disconnected(&cp.id, "s1");
        p.flush(&store).await;
        assert!(!agent(&store, &cp.id).await.connected);
        // An old session's end does not disconnect the newer one.
        p.connected(&cp.id, start("s2"));
        p.flush(&store).await;
        p.disconnected(&cp.id, "s1");
        p.flush(&store).await;
        assert!(agent(&store, &cp.id).await.connected);
        // A newer session supersedes a pending end of the older one.
        p.disconnected(&cp.id, "s2");
        p.connected(&cp.id, start("s3"));
        p.flush(&store).await;
        let a = agent(&store, &cp.id).await;
        assert!(a.connected);
        assert_eq!(a.session_id.as_deref(), Some("s3"));
    }

    #[tokio::test]
    async fn applied_acks_keep_the_highest_generation_and_finish_deletes() {
        let (_dir, store, cp) = crate::store::sqlite::test_store().await;
        let spec = serde_json::from_str(r#"{"presto_version": "0.293", "workers": {"count": 1}}"#)
            .expect("spec");
        let g1 = store
            .put_cluster(&cp.id, "etl", &spec, 1)
            .await
            .expect("put")
            .expect("no conflict");
        let g2 = store
            .delete_cluster(&cp.id, "etl", 2)
            .await
            .expect("delete")
            .expect("was there");
        let p = Presence::default();
        p.connected(&cp.id, start("s1"));
        let etl = Condition {
            cluster: "etl".into(),
            ..Condition::default()
        };
        p.applied(&cp.id, "s1", g1, vec![]);
        p.flush(&store).await;
        let etl_exists = |s: &SqliteStore| {
            let (s, id) = (s.clone(), cp.id.clone());
            async move { s.get_cluster(&id, "etl").await.expect("get").is_some() }
        };
        assert!(etl_exists(&store).await, "deletion not applied yet");
        p.applied(&cp.id, "s1", g2, vec![etl.clone()]);
        // A late ack of an older generation does not move it back.
        p.applied(&cp.id, "s1", g1, vec![]);
        p.flush(&store).await;
        let row = store
            .get_compute_plane(&cp.id)
            .await
            .expect("get")
            .expect("cp");
        assert_eq!(row.applied_generation, g2);
        assert_eq!(row.applied_conditions, vec![etl.clone()]);
        assert!(!etl_exists(&store).await, "deletion finished");
        // A superseded session's late ack changes nothing (fencing).
        p.connected(&cp.id, start("s2"));
        p.flush(&store).await;
        p.applied(&cp.id, "s1", g2, vec![]);
        p.flush(&store).await;
        let row = store
            .get_compute_plane(&cp.id)
            .await
            .expect("get")
            .expect("cp");
        assert_eq!(
            row.applied_conditions,
            vec![etl],
            "kept the current session's ack"
        );
    }
}
