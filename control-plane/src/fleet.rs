//! The control plane as a fleet of replicas. Any replica serves the API, the dashboard
//! and any agent's session; what must reach another replica at once travels as a
//! PostgreSQL notification ([`Event`] on channel [`CHANNEL`]): desired state changed,
//! tenant-wide settings changed, end this session (revocation, supersede). Notifications
//! are not stored, so a replica whose listening connection was lost catches up on
//! reconnect by reading the state of every session it holds ([`resync`]).
//!
//! Each replica renews a lease in the store; when one dies, the others mark its sessions
//! disconnected once its lease ran out, and its agents reconnect elsewhere. A session
//! start claims the compute plane's session in the store at once (not written behind),
//! so the newest session wins whichever replica each is on, and the superseded replica
//! is told to end its own.
//!
//! With SQLite there is one process: no notifications, session starts written behind
//! (see [`crate::presence`]), and the same lease, so `GET /replicas` shows it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;

use crate::sessions::reason;
use crate::state::AppState;
use crate::store::{Replica, SessionStart, StoreError};

/// The notification channel of the fleet.
pub const CHANNEL: &str = "tether_events";
/// How often a replica re-reads the state of its held sessions even without a lost
/// notification connection.
pub const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// Tunables of the fleet.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// This replica's name (`--replica-name`).
    pub replica_name: String,
    /// How long a lease renewal holds; renewed every third of it.
    pub lease: Duration,
    /// Sessions older than this (± 20 %) are ended with `Goodbye{rebalance}` so that agents
    /// spread over the replicas again; `None`: never.
    pub max_session_age: Option<Duration>,
    /// On SIGTERM, agents are handed `Goodbye{draining}` over this long.
    pub drain_spread: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            replica_name: "control-plane".into(),
            lease: Duration::from_secs(15),
            max_session_age: None,
            drain_spread: Duration::from_secs(5),
        }
    }
}

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The compute plane's desired state changed: its session's holder pushes it.
    DesiredChanged {
        /// Compute plane.
        cp: String,
        /// The new generation.
        generation: i64,
    },
    /// A tenant's settings changed: every replica pushes to the tenant's sessions it holds.
    TenantChanged {
        /// Tenant.
        tenant: String,
    },
    /// A support request was made: its session's holder sends the open requests.
    SupportRequested {
        /// Compute plane.
        cp: String,
    },
    /// End the compute plane's session (all of them, or only `session_id`).
    EndSession {
        /// Compute plane.
        cp: String,
        /// Only this session; `None`: whichever is live.
        session_id: Option<String>,
        /// `Goodbye` reason.
        reason: String,
        /// `Goodbye` message.
        message: String,
    },
}

/// A notification as sent: the event and who sent it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: Event,
}

/// This replica's place in the fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    settings: FleetSettings,
    /// The database carrying notifications; `None` with SQLite (one process).
    pg: Option<PgPool>,
    draining: Arc<AtomicBool>,
    started_ms: i64,
}

impl Fleet {
    /// A fleet member; `pg` is the PostgreSQL pool when there can be other replicas.
    pub fn new(settings: FleetSettings, pg: Option<PgPool>) -> Self {
        Self {
            settings,
            pg,
            draining: Arc::default(),
            started_ms: tether_shared::timestamps::now_unix_ms(),
        }
    }

    /// A fleet of one, for tests and the sandbox.
    pub fn single() -> Self {
        Self::new(FleetSettings::default(), None)
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.settings.replica_name
    }

    /// The tunables.
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    /// Whether this replica is stopping (admits no new sessions).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tells the other replicas `event`. A failure is logged: the receiver catches up by
    /// reading the store when its notifications resume.
    pub async fn publish(&self, event: Event) {
        let Some(pg) = &self.pg else { return };
        let envelope = Envelope {
            from: self.settings.replica_name.clone(),
            event,
        };
        let payload = match serde_json::to_string(&envelope) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode fleet event");
                return;
            }
        };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(pg)
            .await
        {
            tracing::warn!(error = %e, event = %payload, "telling the other replicas failed");
        }
    }

    /// Records a session start: with PostgreSQL a claim in the store at once, ending the
    /// superseded session on whichever replica holds it; with SQLite written behind.
    pub async fn session_started(
        &self,
        state: &AppState,
        cp: &str,
        start: SessionStart,
    ) -> Result<(), StoreError> {
        if self.pg.is_none() {
            state.presence.connected(cp, start);
            return Ok(());
        }
        if let Some(old) = state.store.claim_session(cp, &start).await?
            && old.replica.as_deref() != Some(self.replica())
        {
            self.publish(Event::EndSession {
                cp: cp.to_owned(),
                session_id: Some(old.session_id),
                reason: reason::SUPERSEDED.to_owned(),
                message: "a newer session with the same identity started".to_owned(),
            })
            .await;
        }
        Ok(())
    }

    /// The lease this replica holds now.
    fn lease(&self, sessions: usize) -> Replica {
        Replica {
            name: self.settings.replica_name.clone(),
            started_ms: self.started_ms,
            last_seen_ms: tether_shared::timestamps::now_unix_ms(),
            lease_ms: self.settings.lease.as_millis() as i64,
            sessions: sessions as u64,
            draining: self.is_draining(),
        }
    }

    /// Renews this replica's lease and expires the leases of replicas that stopped
    /// renewing, every third of the lease, until the task is stopped. With other replicas
    /// about, it also catches up on its held sessions every [`RESYNC_EVERY`]: a
    /// notification that another replica failed to send (its database connection broke
    /// just then) delays a change by that much at most.
    pub async fn run_lease(self, state: AppState) {
        let mut every = tokio::time::interval(self.settings.lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_resync = tokio::time::Instant::now();
        loop {
            every.tick().await;
            if self.pg.is_some() && last_resync.elapsed() >= RESYNC_EVERY {
                last_resync = tokio::time::Instant::now();
                resync(&state).await;
            }
            match state
                .store
                .renew_replica(&self.lease(state.sessions.len()))
                .await
            {
                Ok(created) => {
                    let held = state.sessions.held();
                    if created && !held.is_empty() {
                        // The lease ran out while this replica could not reach the
                        // database, and another one marked its sessions disconnected.
                        match state.store.reclaim_sessions(self.replica(), &held).await {
                            Ok(n) => tracing::warn!(
                                sessions = n,
                                "this replica's lease had run out; its live sessions are recorded again"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "recording this replica's sessions again failed")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing this replica's lease failed");
                    continue;
                }
            }
            match state
                .store
                .expire_replicas(tether_shared::timestamps::now_unix_ms())
                .await
            {
                Ok(gone) if gone.is_empty() => {}
                Ok(gone) => {
                    tracing::warn!(replicas = ?gone, "replicas stopped renewing their leases; their sessions are marked disconnected")
                }
                Err(e) => tracing::warn!(error = %e, "expiring replica leases failed"),
            }
        }
    }

    /// Listens for the other replicas' events until the task is stopped; after the
    /// listening connection is lost (and found again), catches up from the store.
    pub async fn run_listener(self, state: AppState) {
        let Some(pg) = self.pg.clone() else { return };
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pg).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for fleet events; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "cannot listen for fleet events; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            // Whatever was sent while this replica was not listening is lost: read it.
            backoff = Duration::from_millis(250);
            resync(&state).await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => self.handle(&state, n.payload()).await,
                    // The connection was lost; try_recv reconnects on the next call, but
                    // a fresh listener makes the catch-up explicit.
                    Ok(None) => {
                        tracing::warn!("fleet notifications interrupted; catching up");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet notifications failed; reconnecting");
                        tokio::time::sleep(backoff).await;
                        break;
                    }
                }
            }
        }
    }

    async fn handle(&self, state: &AppState, payload: &str) {
        let envelope: Envelope = match serde_json::from_str(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable fleet event");
                return;
            }
        };
        if envelope.from == self.settings.replica_name {
            return;
        }
        crate::metrics::METRICS
            .fleet_events_received_total
            .fetch_add(1, Ordering::Relaxed);
        match envelope.event {
            Event::DesiredChanged { cp, generation } => {
                tracing::debug!(compute_plane = %cp, generation, from = %envelope.from, "desired state changed elsewhere");
                crate::desired::push_local(state, &cp).await;
            }
            Event::SupportRequested { cp } => crate::support::push_local(state, &cp).await,
            Event::TenantChanged { tenant } => {
                if let Err(e) = crate::desired::push_tenant_local(state, &tenant).await {
                    tracing::warn!(%tenant, error = %e, "pushing tenant settings failed");
                }
            }
            Event::EndSession {
                cp,
                session_id,
                reason,
                message,
            } => {
                let ended = match session_id {
                    Some(id) => state
                        .sessions
                        .end_if_current(&cp, &id, &reason, &message)
                        .then_some(id),
                    None => state.sessions.end(&cp, &reason, &message),
                };
                if let Some(id) = ended {
                    tracing::info!(compute_plane = %cp, session = %id, %reason, from = %envelope.from, "session ended by another replica");
                }
            }
        }
    }

    /// Stops admitting sessions (and says so in the lease and at `/readyz`, so load
    /// balancers stop sending agents here) and hands every agent `Goodbye{draining}` with a
    /// `retry_after` spread over [`FleetSettings::drain_spread`], so they come back to the
    /// other replicas (or this one restarted) a few at a time.
    pub async fn drain(&self, state: &AppState) {
        self.draining.store(true, Ordering::Relaxed);
        if let Err(e) = state
            .store
            .renew_replica(&self.lease(state.sessions.len()))
            .await
        {
            tracing::warn!(error = %e, "marking this replica draining failed");
        }
        tracing::info!(sessions = state.sessions.len(), spread = ?self.settings.drain_spread, "draining: handing agents to other replicas");
        state.sessions.end_all(
            reason::DRAINING,
            "this control-plane replica is stopping; reconnect",
            self.settings.drain_spread.as_millis() as u64,
        );
    }

    /// How long a session start refused while draining is told to wait: past the drain
    /// (and a second of jitter), so an agent behind a load balancer that still routes here
    /// does not bounce.
    pub fn draining_retry_after_ms(&self) -> u64 {
        let spread = self.settings.drain_spread.as_millis() as u64;
        spread + 1 + rand::random::<u64>() % 1000
    }

    /// How long a draining replica keeps serving the API (with `/readyz` saying
    /// "draining") after its Goodbyes, so a load balancer takes it out of service before
    /// its ports close: the drain spread with other replicas about, nothing alone.
    pub fn linger(&self) -> std::time::Duration {
        if self.pg.is_some() {
            self.settings.drain_spread
        } else {
            std::time::Duration::ZERO
        }
    }

    /// A clean exit: the lease goes, and sessions still recorded as held here are marked
    /// disconnected (the agents have reconnected elsewhere, or will).
    pub async fn leave(&self, state: &AppState) {
        if let Err(e) = state.store.remove_replica(self.replica()).await {
            tracing::warn!(error = %e, "removing this replica's lease failed; it expires by itself");
        }
    }
}

/// Catches up after notifications may have been lost: for every session this replica
/// holds, ends it if its agent was revoked or a newer session started elsewhere, and
/// pushes the desired state if its agent has not acked the current generation.
pub async fn resync(state: &AppState) {
    let held = state.sessions.held();
    if held.is_empty() {
        return;
    }
    let cps: Vec<String> = held.iter().map(|(cp, _)| cp.clone()).collect();
    let rows = match state.store.held_sessions(&cps).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "catching up on held sessions failed");
            return;
        }
    };
    let mut pushed = 0;
    for row in rows {
        let Some((_, ours)) = held.iter().find(|(cp, _)| *cp == row.compute_plane_id) else {
            continue;
        };
        let cp = &row.compute_plane_id;
        if row.revoked {
            state.sessions.end_if_current(
                cp,
                ours,
                reason::REVOKED,
                "certificate revoked: create a new enrollment token and enroll this agent again",
            );
        } else if row.session_id.as_deref().is_some_and(|s| s != ours)
            && row.replica.as_deref() != Some(state.fleet.replica())
        {
            state.sessions.end_if_current(
                cp,
                ours,
                reason::SUPERSEDED,
                "a newer session with the same identity started",
            );
        } else if row.applied_generation < row.generation {
            crate::desired::push_local(state, cp).await;
            pushed += 1;
        }
    }
    tracing::debug!(sessions = held.len(), pushed, "caught up on held sessions");
}
