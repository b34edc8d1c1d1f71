//! The desired state of a compute plane, read from the store and pushed to its agent.
//! The agent always gets the whole document: on every session start and after every
//! change. A change written while no session is live simply waits for the next one.

use std::collections::BTreeMap;
use std::time::Duration;

use tether_proto::v1::{ControlMessage, control_message};
use tether_shared::spec::{CatalogSpec, ClusterSpec, DesiredState};

use crate::state::AppState;
use crate::store::{Store, StoreError};

/// How long a push may wait for a slow session's queue.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the desired state. Specs were validated when stored; one that no longer parses
/// (e.g. written by a newer version) is left out and logged rather than blocking the rest.
pub async fn load(store: &dyn Store, cp: &str) -> Result<DesiredState, StoreError> {
    let stored = store.desired_state(cp).await?;
    let mut clusters = BTreeMap::new();
    for (name, json) in stored.clusters {
        match serde_json::from_str::<ClusterSpec>(&json) {
            Ok(spec) => {
                clusters.insert(name, spec);
            }
            Err(e) => {
                tracing::error!(compute_plane = cp, cluster = %name, error = %e, "stored cluster spec unreadable")
            }
        }
    }
    let mut catalogs = BTreeMap::new();
    for (name, json) in stored.catalogs {
        match serde_json::from_str::<CatalogSpec>(&json) {
            Ok(spec) => {
                catalogs.insert(name, spec);
            }
            Err(e) => {
                tracing::error!(compute_plane = cp, catalog = %name, error = %e, "stored catalog spec unreadable")
            }
        }
    }
    Ok(DesiredState {
        generation: stored.generation,
        clusters,
        catalogs,
        settings: BTreeMap::new(),
    })
}

/// Sends the current desired state to the compute plane's live session, if it has one
/// on this control plane.
pub async fn push(state: &AppState, cp: &str) {
    let Some(tx) = state.sessions.sender(cp) else {
        return;
    };
    let desired = match load(state.store.as_ref(), cp).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(compute_plane = cp, error = %e, "cannot load desired state to push");
            return;
        }
    };
    let generation = desired.generation;
    let msg = ControlMessage {
        kind: Some(control_message::Kind::DesiredState(desired.to_proto())),
    };
    match tokio::time::timeout(PUSH_TIMEOUT, tx.send(msg)).await {
        Ok(Ok(())) => tracing::debug!(compute_plane = cp, generation, "desired state pushed"),
        // The session ended meanwhile; the next one gets the state on start.
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!(
            compute_plane = cp,
            generation,
            "session too slow to take desired state; it gets it on reconnect"
        ),
    }
}
