//! The desired state of a compute plane, read from the store and pushed to its agent.
//! The agent always gets the whole document: on every session start and after every
//! change. A change written while no session is live simply waits for the next one.

use std::time::Duration;

use tether_proto::v1::{ControlMessage, control_message};
use tether_shared::spec::DesiredState;

use crate::state::AppState;
use crate::store::{Store, StoreError, StoredDesiredState};
use tokio::sync::mpsc;

/// How long a push may wait for a slow session's queue.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the desired state (every stored spec parses, or the store says it is corrupt:
/// sending the document without that spec would make the agent delete the cluster, so
/// nothing is sent).
pub async fn load(store: &dyn Store, cp: &str) -> Result<DesiredState, StoreError> {
    Ok(build(store.desired_state(cp).await?))
}

/// The document from its stored parts: the compute plane's own settings override its
/// tenant's, key by key.
fn build(stored: StoredDesiredState) -> DesiredState {
    let mut settings = stored.tenant_settings;
    settings.extend(stored.settings);
    DesiredState {
        generation: stored.generation,
        clusters: stored.clusters,
        catalogs: stored.catalogs,
        settings,
        presto_access: stored.presto_access,
    }
}

/// After a change: sends the current desired state to the compute plane's live session
/// if this replica holds it, and tells the other replicas.
pub async fn push(state: &AppState, cp: &str) {
    let generation = push_local(state, cp).await;
    state
        .fleet
        .publish(crate::fleet::Event::DesiredChanged {
            cp: cp.to_owned(),
            generation: generation.unwrap_or_default(),
        })
        .await;
}

/// Sends the current desired state to the compute plane's live session, if it has one
/// on this replica; returns the generation sent.
pub async fn push_local(state: &AppState, cp: &str) -> Option<i64> {
    let tx = state.sessions.sender(cp)?;
    let desired = match load(state.store.as_ref(), cp).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(compute_plane = cp, error = %e, "cannot load desired state; not pushing");
            return None;
        }
    };
    deliver(state, cp, &tx, &desired).await;
    Some(desired.generation)
}

/// After a change that concerns every compute plane of `tenant`: pushes to the sessions
/// this replica holds and tells the other replicas to push to theirs. Returns how many
/// sessions this replica sent to at once.
pub async fn push_tenant(state: &AppState, tenant: &str) -> Result<usize, StoreError> {
    let sent = push_tenant_local(state, tenant).await?;
    state
        .fleet
        .publish(crate::fleet::Event::TenantChanged {
            tenant: tenant.to_owned(),
        })
        .await;
    Ok(sent)
}

/// Sends every compute plane of `tenant` that has a live session here its current
/// desired state. The documents are read in one go; a session whose queue is full is
/// waited for on its own task, so one slow agent does not hold up the others. Returns how
/// many sessions were sent to at once.
pub async fn push_tenant_local(state: &AppState, tenant: &str) -> Result<usize, StoreError> {
    // Only the documents of the sessions this replica holds (with SQLite: all of them).
    let held: Vec<String> = state
        .sessions
        .held()
        .into_iter()
        .map(|(cp, _)| cp)
        .collect();
    let all = state.store.tenant_desired_states_of(tenant, &held).await?;
    let mut sent = 0;
    for (cp, stored) in all {
        let Some(tx) = state.sessions.sender(&cp) else {
            continue;
        };
        let desired = build(stored);
        match tx.try_send(message(state, &cp, &desired)) {
            Ok(()) => {
                pushed(&cp, desired.generation);
                sent += 1;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let state = state.clone();
                tokio::spawn(async move { deliver(&state, &cp, &tx, &desired).await });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
    Ok(sent)
}

/// The signed wire form of `desired` for compute plane `cp`.
fn message(state: &AppState, cp: &str, desired: &DesiredState) -> Box<ControlMessage> {
    let mut doc = desired.to_proto();
    state.signer.sign(cp, &mut doc);
    Box::new(ControlMessage {
        kind: Some(control_message::Kind::DesiredState(doc)),
    })
}

fn pushed(cp: &str, generation: i64) {
    crate::metrics::METRICS
        .desired_state_pushes_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(compute_plane = cp, generation, "desired state pushed");
}

/// Sends `desired` on a session's queue, waiting up to [`PUSH_TIMEOUT`] for room.
async fn deliver(state: &AppState, cp: &str, tx: &crate::sessions::Outbox, desired: &DesiredState) {
    let generation = desired.generation;
    match tokio::time::timeout(PUSH_TIMEOUT, tx.send(message(state, cp, desired))).await {
        Ok(Ok(())) => pushed(cp, generation),
        // The session ended meanwhile; the next one gets the state on start.
        Ok(Err(_)) => {}
        Err(_) => {
            // Never leave an agent on stale state silently: end the session; the agent
            // reconnects and gets the whole document on start.
            tracing::warn!(
                compute_plane = cp,
                generation,
                "session too slow to take desired state; ending it"
            );
            state.sessions.end(
                cp,
                "resync",
                "desired state could not be delivered in time; reconnect",
            );
        }
    }
}
