//! The agent's copy of its desired state: the last document it accepted, kept in
//! `STATE_DIR/desired-state.json` so that a restart without the control plane reconciles
//! exactly what was last asked for (static stability), and published on a `watch`
//! channel that the reconciler follows.

use std::path::PathBuf;
use std::sync::Arc;

use tether_shared::files;
use tether_shared::spec::DesiredState;
use tokio::sync::watch;

/// File name inside the state dir.
pub const DESIRED_STATE_FILE: &str = "desired-state.json";

/// The latest accepted desired state, `None` until one ever arrived.
pub type Desired = Option<Arc<DesiredState>>;

/// Keeper of the desired state.
#[derive(Debug)]
pub struct DesiredStore {
    path: PathBuf,
    compute_plane_id: String,
    tx: watch::Sender<Desired>,
}

/// The file's form: the state and the compute plane it belongs to, so a state dir
/// re-enrolled elsewhere never applies another compute plane's clusters.
#[derive(serde::Serialize, serde::Deserialize)]
struct Persisted {
    compute_plane_id: String,
    state: DesiredState,
}

/// Reading or writing the persisted state failed.
#[derive(Debug, thiserror::Error)]
#[error("desired state file {path}: {detail}")]
pub struct DesiredStoreError {
    path: String,
    detail: String,
}

impl DesiredStore {
    /// Loads what was persisted in `state_dir` for `compute_plane_id` (validated again: a
    /// file edited by hand or written by another version must not be applied blindly).
    pub fn open(
        state_dir: &std::path::Path,
        compute_plane_id: &str,
    ) -> Result<Self, DesiredStoreError> {
        let path = state_dir.join(DESIRED_STATE_FILE);
        let err = |detail: String| DesiredStoreError {
            path: path.display().to_string(),
            detail,
        };
        let initial = match std::fs::read(&path) {
            Ok(bytes) => {
                let p: Persisted =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                p.state.validate().map_err(|e| err(e.to_string()))?;
                if p.compute_plane_id == compute_plane_id {
                    tracing::info!(
                        generation = p.state.generation,
                        clusters = p.state.clusters.len(),
                        "loaded persisted desired state"
                    );
                    Some(Arc::new(p.state))
                } else {
                    tracing::warn!(file = %path.display(), belongs_to = %p.compute_plane_id, "ignoring desired state of another compute plane");
                    None
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e.to_string())),
        };
        let (tx, _) = watch::channel(initial);
        Ok(Self {
            path,
            compute_plane_id: compute_plane_id.to_owned(),
            tx,
        })
    }

    /// Follows the desired state.
    pub fn subscribe(&self) -> watch::Receiver<Desired> {
        self.tx.subscribe()
    }

    /// The generation held now (0 if none).
    pub fn generation(&self) -> i64 {
        self.tx.borrow().as_ref().map_or(0, |d| d.generation)
    }

    /// Accepts a newer document: persisted first, then published. Older or equal
    /// generations are ignored (a push can overtake another), returning `false`.
    pub fn accept(&self, state: DesiredState) -> Result<bool, DesiredStoreError> {
        if state.generation <= self.generation() {
            return Ok(false);
        }
        let persisted = Persisted {
            compute_plane_id: self.compute_plane_id.clone(),
            state,
        };
        let bytes = serde_json::to_vec_pretty(&persisted).map_err(|e| DesiredStoreError {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        files::write_private(&self.path, &bytes).map_err(|e| DesiredStoreError {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        self.tx.send_replace(Some(Arc::new(persisted.state)));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_newer_generations_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert_eq!(store.generation(), 0);
        let s = DesiredState {
            generation: 3,
            ..Default::default()
        };
        assert!(store.accept(s.clone()).expect("accept"));
        assert!(
            !store
                .accept(DesiredState {
                    generation: 2,
                    ..Default::default()
                })
                .expect("older")
        );
        let again = DesiredStore::open(dir.path(), "cp-a").expect("reopen");
        assert_eq!(again.generation(), 3);
        let other = DesiredStore::open(dir.path(), "cp-b").expect("other compute plane");
        assert_eq!(
            other.generation(),
            0,
            "another compute plane's state is never applied"
        );
        std::fs::write(dir.path().join(DESIRED_STATE_FILE), b"{not json").expect("write");
        assert!(DesiredStore::open(dir.path(), "cp-a").is_err());
    }
}
