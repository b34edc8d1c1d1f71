//! Live agent sessions: at most one per compute plane. A new session for the same
//! identity supersedes the old one; revocation and shutdown end sessions from outside.
//! Ending a session sends `Goodbye` and then closes the response stream, so the agent
//! learns why within one round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_proto::v1::{ControlMessage, Goodbye, control_message};
use tokio::sync::{mpsc, watch};

/// Machine-readable `Goodbye` reasons.
pub mod reason {
    /// Revoked through the API.
    pub const REVOKED: &str = "revoked";
    /// Another session with the same identity started.
    pub const SUPERSEDED: &str = "superseded";
    /// A desired-state push could not be delivered in time; reconnect for the whole state.
    pub const RESYNC: &str = "resync";
    /// The agent sent nothing for the idle timeout.
    pub const IDLE: &str = "idle";
    /// The certificate that opened the session expired without renewal.
    pub const CERTIFICATE_EXPIRED: &str = "certificate-expired";
    /// Too many session starts at once: come back after `retry_after`.
    pub const OVERLOADED: &str = "overloaded";
    /// This replica is stopping: reconnect (to another replica) after `retry_after`.
    pub const DRAINING: &str = "draining";
    /// The session reached its maximum age: reconnect, so agents spread over replicas.
    pub const REBALANCE: &str = "rebalance";
    /// A doctor's probe was answered (`Hello.probe`).
    pub const PROBE: &str = "probe";
}

/// The queue of messages to one session's agent. Boxed: the queue's first block of 32
/// slots is allocated with the channel and lives as long as the session, and 32 inline
/// `ControlMessage`s (152 bytes each) would be about 5 KiB per idle agent.
pub type Outbox = mpsc::Sender<Box<ControlMessage>>;

/// The control side of one live session, held by the registry.
#[derive(Debug)]
struct Entry {
    session_id: String,
    tx: Outbox,
    /// Tells the session's reader task to stop.
    stop: watch::Sender<bool>,
    /// The expiry (Unix seconds) of the newest certificate of this session.
    cert_expiry: watch::Sender<i64>,
}

/// What a session task gets when it registers.
#[derive(Debug)]
pub struct Registration {
    /// Fires when the session is ended from outside.
    pub stop: watch::Receiver<bool>,
    /// The current certificate expiry; renewals move it.
    pub cert_expiry: watch::Receiver<i64>,
}

/// All live sessions of this control plane.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

/// A `Goodbye` message.
pub fn goodbye(reason: &str, message: &str, retry_after_ms: u64) -> ControlMessage {
    ControlMessage {
        kind: Some(control_message::Kind::Goodbye(Goodbye {
            reason: reason.to_owned(),
            message: message.to_owned(),
            retry_after_ms,
        })),
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // operation is a single insert/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new session for `compute_plane_id`, superseding any existing one.
    pub fn register(
        &self,
        compute_plane_id: &str,
        session_id: &str,
        tx: Outbox,
        cert_expiry: i64,
    ) -> Registration {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (exp_tx, exp_rx) = watch::channel(cert_expiry);
        let old = self.lock().insert(
            compute_plane_id.to_owned(),
            Entry {
                session_id: session_id.to_owned(),
                tx,
                stop: stop_tx,
                cert_expiry: exp_tx,
            },
        );
        if let Some(old) = old {
            tracing::info!(compute_plane_id, old_session = %old.session_id, new_session = session_id, "session superseded");
            finish(
                old,
                reason::SUPERSEDED,
                "a newer session with the same identity started",
                0,
            );
        }
        Registration {
            stop: stop_rx,
            cert_expiry: exp_rx,
        }
    }

    /// Removes the session if it is still the current one for the compute plane.
    pub fn deregister(&self, compute_plane_id: &str, session_id: &str) {
        let mut map = self.lock();
        if map
            .get(compute_plane_id)
            .is_some_and(|e| e.session_id == session_id)
        {
            map.remove(compute_plane_id);
        }
    }

    /// Ends the compute plane's session, if any, with `Goodbye{reason}`. Returns the id of
    /// the ended session.
    pub fn end(&self, compute_plane_id: &str, reason: &str, message: &str) -> Option<String> {
        let entry = self.lock().remove(compute_plane_id)?;
        let id = entry.session_id.clone();
        finish(entry, reason, message, 0);
        Some(id)
    }

    /// Ends session `session_id` of the compute plane, but only if it is still the current
    /// one: a session ending itself (idle, expired) must never end its successor. Returns
    /// whether it ended one.
    pub fn end_if_current(
        &self,
        compute_plane_id: &str,
        session_id: &str,
        reason: &str,
        message: &str,
    ) -> bool {
        let entry = {
            let mut map = self.lock();
            if map
                .get(compute_plane_id)
                .is_some_and(|e| e.session_id == session_id)
            {
                map.remove(compute_plane_id)
            } else {
                None
            }
        };
        match entry {
            Some(e) => {
                finish(e, reason, message, 0);
                true
            }
            None => false,
        }
    }

    /// Every live session: (compute plane, session id).
    pub fn held(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(cp, e)| (cp.clone(), e.session_id.clone()))
            .collect()
    }

    /// Ends every session (shutdown), each with its own random `retry_after` within
    /// `spread_ms` so the agents do not all come back at once.
    pub fn end_all(&self, reason: &str, message: &str, spread_ms: u64) {
        let entries: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in entries {
            let retry = if spread_ms == 0 {
                0
            } else {
                rand::random::<u64>() % spread_ms
            };
            finish(e, reason, message, retry);
        }
    }

    /// The control-message sender of the compute plane's live session.
    pub fn sender(&self, compute_plane_id: &str) -> Option<Outbox> {
        self.lock().get(compute_plane_id).map(|e| e.tx.clone())
    }

    /// Moves the live session's certificate expiry after a renewal.
    pub fn certificate_renewed(&self, compute_plane_id: &str, expires_at: i64) {
        if let Some(e) = self.lock().get(compute_plane_id) {
            e.cert_expiry.send_replace(expires_at);
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn finish(entry: Entry, reason: &str, message: &str, retry_after_ms: u64) {
    // try_send: a session whose agent stopped reading must not block the caller (e.g. the
    // revoke API); its stream is closed below either way.
    let _ = entry
        .tx
        .try_send(Box::new(goodbye(reason, message, retry_after_ms)));
    entry.stop.send_replace(true);
    drop(entry.tx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_session_supersedes_first() {
        let reg = Registry::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let r1 = reg.register("cp", "s1", tx1, 0);
        let (tx2, _rx2) = mpsc::channel(4);
        let _r2 = reg.register("cp", "s2", tx2, 0);
        let msg = rx1.recv().await.expect("goodbye");
        assert!(
            matches!(msg.kind, Some(control_message::Kind::Goodbye(g)) if g.reason == reason::SUPERSEDED)
        );
        assert!(rx1.recv().await.is_none(), "old stream closed");
        assert!(*r1.stop.borrow());
        // The old session's cleanup must not remove or end the new one.
        reg.deregister("cp", "s1");
        reg.end_if_current("cp", "s1", reason::CERTIFICATE_EXPIRED, "x");
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.end("cp", reason::REVOKED, "x"), Some("s2".to_owned()));
        assert!(reg.is_empty());
    }
}
