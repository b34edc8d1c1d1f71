//! The agent's copy of its desired state: the last document it accepted, kept in
//! `STATE_DIR/desired-state.json` so that a restart without the control plane reconciles
//! exactly what was last asked for (static stability), and published on a `watch`
//! channel that the reconciler follows.
//!
//! Only signed documents are accepted (see `tether_shared::signing`): signed for this
//! compute plane by the key pinned in `STATE_DIR/signing-key.pem` at enrollment (or a key
//! a rotation statement from it introduced), and of a generation no lower than the highest
//! ever accepted, which `STATE_DIR/desired-generation` remembers apart from the document.
//! The file keeps the document exactly as signed and is verified again when the agent
//! starts: a document edited in the state dir, or an older one put back, is refused, the
//! clusters stay as they are, and the refusal is reported once a session is up.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tether_proto::v1 as pb;
use tether_shared::files;
use tether_shared::signing::{SignatureError, VerifyingKey};
use tether_shared::spec::{DesiredState, InvalidDesiredState};
use tokio::sync::watch;

/// File name inside the state dir.
pub const DESIRED_STATE_FILE: &str = "desired-state.json";
/// The pinned public key that signs desired state.
pub const SIGNING_KEY_FILE: &str = "signing-key.pem";
/// The highest generation ever accepted.
pub const GENERATION_FILE: &str = "desired-generation";

/// The latest accepted desired state, `None` until one ever arrived.
pub type Desired = Option<Arc<DesiredState>>;

/// Keeper of the desired state.
#[derive(Debug)]
pub struct DesiredStore {
    dir: PathBuf,
    compute_plane_id: String,
    key: Mutex<Option<VerifyingKey>>,
    /// Serialises [`Self::accept`].
    accepting: Mutex<()>,
    /// The key that signed the document held (and persisted).
    held_key_id: Mutex<Option<String>>,
    /// The highest generation ever accepted (what the clusters were last set to).
    highest: std::sync::atomic::AtomicI64,
    tx: watch::Sender<Desired>,
    /// Why the persisted document was not loaded, if it was refused.
    load_refusal: Option<Refusal>,
}

/// The file's form: the compute plane and the document exactly as signed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Persisted {
    compute_plane_id: String,
    /// Absent in files written before documents were signed.
    #[serde(default)]
    document: Option<SignedDocument>,
}

/// A `pb::DesiredState` as JSON, every field as it came over the wire.
#[derive(serde::Serialize, serde::Deserialize)]
struct SignedDocument {
    generation: i64,
    clusters: Vec<Named>,
    catalogs: Vec<Named>,
    settings: std::collections::BTreeMap<String, String>,
    presto_access_json: String,
    signature_key_id: String,
    /// Base64.
    signature: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Named {
    name: String,
    spec_json: String,
}

impl SignedDocument {
    fn from_proto(d: &pb::DesiredState) -> Self {
        let named = |v: &[pb::NamedSpec]| {
            v.iter()
                .map(|s| Named {
                    name: s.name.clone(),
                    spec_json: s.spec_json.clone(),
                })
                .collect()
        };
        Self {
            generation: d.generation,
            clusters: named(&d.clusters),
            catalogs: named(&d.catalogs),
            settings: d.settings.clone().into_iter().collect(),
            presto_access_json: d.presto_access_json.clone(),
            signature_key_id: d.signature_key_id.clone(),
            signature: STANDARD.encode(&d.signature),
        }
    }

    fn into_proto(self) -> pb::DesiredState {
        let named = |v: Vec<Named>| {
            v.into_iter()
                .map(|s| pb::NamedSpec {
                    name: s.name,
                    spec_json: s.spec_json,
                })
                .collect()
        };
        pb::DesiredState {
            generation: self.generation,
            clusters: named(self.clusters),
            catalogs: named(self.catalogs),
            settings: self.settings.into_iter().collect(),
            // A signature that is not base64 is no signature.
            signature: STANDARD.decode(&self.signature).unwrap_or_default(),
            signature_key_id: self.signature_key_id,
            presto_access_json: self.presto_access_json,
        }
    }
}

/// Why a document was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// No key is pinned yet (an agent enrolled before documents were signed, before its
    /// first session).
    #[error("no signing key is pinned yet")]
    NoKey,
    /// The file was written by an agent before documents were signed (an upgrade).
    #[error(
        "the file was written by an agent version before documents were signed; the control plane's next document replaces it"
    )]
    Legacy,
    /// The signature does not verify.
    #[error("{0}")]
    Signature(SignatureError),
    /// Older than one already accepted: a replay.
    #[error("generation {got} is older than generation {applied}, which this agent has applied")]
    Rollback {
        /// The document's generation.
        got: i64,
        /// The highest accepted.
        applied: i64,
    },
    /// Signed, but not a valid document.
    #[error("{0}")]
    Invalid(String),
    /// Could not be saved.
    #[error("could not be saved in the agent's state directory: {0}")]
    NotPersisted(String),
}

impl Refusal {
    /// The condition reason that names this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoKey | Self::Signature(_) => "BadSignature",
            Self::Legacy => "Unsigned",
            Self::Rollback { .. } => "Rollback",
            Self::Invalid(_) => "Invalid",
            Self::NotPersisted(_) => "NotPersisted",
        }
    }
}

/// What became of an accepted document.
#[derive(Debug, PartialEq)]
pub enum Accepted {
    /// Newer: persisted and published.
    Newer,
    /// The generation held now: nothing to do.
    Same,
}

/// Reading or writing the state dir failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct DesiredStoreError {
    path: String,
    detail: String,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DesiredStoreError {
    DesiredStoreError {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

impl DesiredStore {
    /// Loads the pinned key and the persisted document of `compute_plane_id` from
    /// `state_dir`, verified and validated again. A document that does not verify is not
    /// loaded ([`Self::load_refusal`] says why); an unreadable state dir is an error.
    pub fn open(state_dir: &Path, compute_plane_id: &str) -> Result<Self, DesiredStoreError> {
        let key_path = state_dir.join(SIGNING_KEY_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => Some(VerifyingKey::from_pem(&pem).map_err(|e| io_err(&key_path, e))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&key_path, e)),
        };
        let floor = read_generation(&state_dir.join(GENERATION_FILE), compute_plane_id)?;
        let path = state_dir.join(DESIRED_STATE_FILE);
        let mut load_refusal = None;
        let initial = match std::fs::read(&path) {
            Ok(bytes) => match verify_file(&bytes, key.as_ref(), compute_plane_id, floor) {
                Ok(Some(state)) => {
                    tracing::info!(
                        generation = state.generation,
                        clusters = state.clusters.len(),
                        "loaded persisted desired state"
                    );
                    Some(Arc::new(state))
                }
                Ok(None) => {
                    tracing::warn!(file = %path.display(), "ignoring the desired state of another compute plane");
                    None
                }
                Err(refusal) => {
                    tracing::error!(file = %path.display(), "refusing the persisted desired state ({refusal}); the clusters stay as they are until the control plane sends a valid one");
                    crate::audit::record(
                        "desired_state.refused",
                        serde_json::json!({"source": path.display().to_string(), "reason": refusal.reason(), "message": refusal.to_string()}),
                    );
                    load_refusal = Some(refusal);
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path, e)),
        };
        let held_key_id = initial
            .as_ref()
            .and(key.as_ref())
            .map(|k| k.key_id().to_owned());
        let (tx, _) = watch::channel(initial);
        Ok(Self {
            dir: state_dir.to_owned(),
            compute_plane_id: compute_plane_id.to_owned(),
            key: Mutex::new(key),
            highest: std::sync::atomic::AtomicI64::new(floor),
            held_key_id: Mutex::new(held_key_id),
            accepting: Mutex::new(()),
            tx,
            load_refusal,
        })
    }

    /// Why the persisted document was refused at start, if it was.
    pub fn load_refusal(&self) -> Option<&Refusal> {
        self.load_refusal.as_ref()
    }

    /// Follows the desired state.
    pub fn subscribe(&self) -> watch::Receiver<Desired> {
        self.tx.subscribe()
    }

    /// The generation held now (0 if none).
    pub fn generation(&self) -> i64 {
        self.tx.borrow().as_ref().map_or(0, |d| d.generation)
    }

    /// The highest generation this agent ever accepted, also when the document it holds
    /// was refused at start: the generation its clusters were last set to.
    pub fn highest_accepted(&self) -> i64 {
        self.highest
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(self.generation())
    }

    /// The pinned key, if any.
    pub fn pinned_key(&self) -> Option<VerifyingKey> {
        self.key.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Pins `key` (at enrollment).
    pub fn pin(&self, key: VerifyingKey) -> Result<(), DesiredStoreError> {
        pin_key(&self.dir, &key)?;
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
        Ok(())
    }

    /// The control plane's current key, as its Welcome names it with the rotation
    /// statements that lead to it. With no key pinned (an agent enrolled before documents
    /// were signed) it is pinned as it is; otherwise only if the statements lead to it from
    /// the pinned key. Returns whether the pinned key changed.
    pub fn follow(
        &self,
        current_pem: &str,
        chain: &[pb::SigningKeyStatement],
    ) -> Result<bool, DesiredStoreError> {
        if current_pem.is_empty() {
            return Ok(false);
        }
        let current = match VerifyingKey::from_pem(current_pem) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("the control plane names an unreadable signing key: {e}");
                return Ok(false);
            }
        };
        let pinned = self.pinned_key();
        match pinned {
            None => {
                tracing::warn!(
                    key_id = current.key_id(),
                    "no desired-state signing key was pinned at enrollment; pinning the one this session names"
                );
                crate::audit::record(
                    "signing_key.pinned",
                    serde_json::json!({"key_id": current.key_id(), "how": "first session (no key pinned at enrollment)"}),
                );
                self.pin(current)?;
                Ok(true)
            }
            Some(p) if p == current => Ok(false),
            Some(p) => {
                if p.leads_to(chain, &current) {
                    tracing::info!(
                        old = p.key_id(),
                        new = current.key_id(),
                        "following a signing key rotation"
                    );
                    crate::audit::record(
                        "signing_key.rotated",
                        serde_json::json!({"old_key_id": p.key_id(), "new_key_id": current.key_id()}),
                    );
                    self.pin(current)?;
                    Ok(true)
                } else {
                    tracing::error!(
                        pinned = p.key_id(),
                        named = current.key_id(),
                        "the control plane signs with a key no statement from the pinned key introduces; its documents will be refused"
                    );
                    crate::audit::record(
                        "signing_key.untrusted",
                        serde_json::json!({"pinned_key_id": p.key_id(), "named_key_id": current.key_id()}),
                    );
                    Ok(false)
                }
            }
        }
    }

    /// Verifies, validates and keeps a document: persisted first, then published. The
    /// document held now, sent again, is verified too and, signed by a new key after a
    /// rotation, written again so that the file verifies under the key now pinned.
    pub fn accept(&self, doc: pb::DesiredState) -> Result<Accepted, Refusal> {
        let _one_at_a_time = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.generation();
        let floor = read_generation(&self.dir.join(GENERATION_FILE), &self.compute_plane_id)
            .map_err(|e| Refusal::NotPersisted(e.to_string()))?;
        let key = self.pinned_key();
        let persisted = Persisted {
            compute_plane_id: self.compute_plane_id.clone(),
            document: Some(SignedDocument::from_proto(&doc)),
        };
        let same = held > 0 && doc.generation == held;
        let state = check(key.as_ref(), &self.compute_plane_id, floor, held, doc)?;
        let bytes = serde_json::to_vec_pretty(&persisted)
            .map_err(|e| Refusal::NotPersisted(e.to_string()))?;
        if same {
            if self.held_key_id() != key.as_ref().map(|k| k.key_id().to_owned()) {
                let path = self.dir.join(DESIRED_STATE_FILE);
                files::write_private(&path, &bytes)
                    .map_err(|e| Refusal::NotPersisted(e.to_string()))?;
                self.set_held_key_id(key.as_ref());
            }
            return Ok(Accepted::Same);
        }
        // The generation first: a crash between the writes leaves an older document that
        // is refused at start (the clusters stay) rather than a replayable one.
        files::write_private(
            &self.dir.join(GENERATION_FILE),
            format!("{} {}\n", self.compute_plane_id, state.generation).as_bytes(),
        )
        .map_err(|e| Refusal::NotPersisted(e.to_string()))?;
        files::write_private(&self.dir.join(DESIRED_STATE_FILE), &bytes)
            .map_err(|e| Refusal::NotPersisted(e.to_string()))?;
        self.set_held_key_id(key.as_ref());
        self.highest
            .fetch_max(state.generation, std::sync::atomic::Ordering::Relaxed);
        self.tx.send_replace(Some(Arc::new(state)));
        Ok(Accepted::Newer)
    }

    fn held_key_id(&self) -> Option<String> {
        self.held_key_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_held_key_id(&self, key: Option<&VerifyingKey>) {
        *self.held_key_id.lock().unwrap_or_else(|p| p.into_inner()) =
            key.map(|k| k.key_id().to_owned());
    }
}

/// Writes the pinned key.
pub fn pin_key(state_dir: &Path, key: &VerifyingKey) -> Result<(), DesiredStoreError> {
    let path = state_dir.join(SIGNING_KEY_FILE);
    files::write_private(&path, key.to_pem().as_bytes()).map_err(|e| io_err(&path, e))
}

/// The highest generation accepted for compute plane `cp` (0 when the file is missing or
/// names another compute plane: the state dir enrolled again elsewhere).
fn read_generation(path: &Path, cp: &str) -> Result<i64, DesiredStoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.split_whitespace().collect::<Vec<_>>().as_slice() {
            [of, generation] if *of == cp => Ok(generation.parse().unwrap_or_else(|e| {
                tracing::error!(file = %path.display(), "damaged ({e}); ignoring it");
                0
            })),
            [_, _] => Ok(0),
            _ => {
                tracing::error!(file = %path.display(), "damaged (expected `<compute plane id> <generation>`); ignoring it");
                Ok(0)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path, e)),
    }
}

/// The persisted document, verified: `None` when it belongs to another compute plane (a
/// state dir enrolled again elsewhere).
fn verify_file(
    bytes: &[u8],
    key: Option<&VerifyingKey>,
    cp: &str,
    floor: i64,
) -> Result<Option<DesiredState>, Refusal> {
    let p: Persisted =
        serde_json::from_slice(bytes).map_err(|e| Refusal::Invalid(format!("unreadable: {e}")))?;
    if p.compute_plane_id != cp {
        return Ok(None);
    }
    let doc = p.document.ok_or(Refusal::Legacy)?.into_proto();
    check(key, cp, floor, 0, doc).map(Some)
}

/// Signature, generation, then content.
fn check(
    key: Option<&VerifyingKey>,
    cp: &str,
    floor: i64,
    held: i64,
    doc: pb::DesiredState,
) -> Result<DesiredState, Refusal> {
    let key = key.ok_or(Refusal::NoKey)?;
    key.verify_desired_state(cp, &doc)
        .map_err(Refusal::Signature)?;
    let applied = floor.max(held);
    if doc.generation < applied {
        return Err(Refusal::Rollback {
            got: doc.generation,
            applied,
        });
    }
    DesiredState::try_from(doc).map_err(|e: InvalidDesiredState| Refusal::Invalid(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tether_shared::signing::SigningKey;

    pub(crate) fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).expect("key")
    }

    pub(crate) fn signed(key: &SigningKey, cp: &str, generation: i64) -> pb::DesiredState {
        let mut d = pb::DesiredState {
            generation,
            ..Default::default()
        };
        key.sign_desired_state(cp, &mut d);
        d
    }

    #[test]
    fn keeps_newer_signed_generations_and_verifies_them_again_on_start() {
        let k = key();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert_eq!(
            store.accept(signed(&k, "cp-a", 1)),
            Err(Refusal::NoKey),
            "nothing is taken before a key is pinned"
        );
        store.pin(k.public().clone()).expect("pin");
        assert_eq!(store.accept(signed(&k, "cp-a", 3)), Ok(Accepted::Newer));
        assert_eq!(store.accept(signed(&k, "cp-a", 3)), Ok(Accepted::Same));
        assert!(matches!(
            store.accept(signed(&k, "cp-a", 2)),
            Err(Refusal::Rollback { got: 2, applied: 3 })
        ));
        assert!(matches!(
            store.accept(signed(&k, "cp-b", 4)),
            Err(Refusal::Signature(SignatureError::Mismatch))
        ));
        let again = DesiredStore::open(dir.path(), "cp-a").expect("reopen");
        assert_eq!(again.generation(), 3);
        assert!(again.load_refusal().is_none());
        let other = DesiredStore::open(dir.path(), "cp-b").expect("other compute plane");
        assert_eq!(
            other.generation(),
            0,
            "another compute plane's state is never applied"
        );

        // A tampered file is refused at start.
        let path = dir.path().join(DESIRED_STATE_FILE);
        let good = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            good.replace("\"generation\": 3", "\"generation\": 9"),
        )
        .expect("write");
        let tampered = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert_eq!(tampered.generation(), 0);
        assert_eq!(
            tampered.load_refusal().map(Refusal::reason),
            Some("BadSignature")
        );
        // An older, well-signed file put back is refused too.
        let old = serde_json::to_vec(&Persisted {
            compute_plane_id: "cp-a".into(),
            document: Some(SignedDocument::from_proto(&signed(&k, "cp-a", 2))),
        })
        .expect("json");
        std::fs::write(&path, old).expect("write");
        let replayed = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert_eq!(replayed.generation(), 0);
        assert_eq!(
            replayed.load_refusal().map(Refusal::reason),
            Some("Rollback")
        );
        // A damaged file is refused too; the agent still starts.
        std::fs::write(&path, b"{not json").expect("write");
        let damaged = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert_eq!(damaged.load_refusal().map(Refusal::reason), Some("Invalid"));
        // A file of an agent before signing says so.
        std::fs::write(
            &path,
            br#"{"compute_plane_id": "cp-a", "state": {"generation": 3}}"#,
        )
        .expect("write");
        let legacy = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert_eq!(legacy.load_refusal().map(Refusal::reason), Some("Unsigned"));
    }

    #[test]
    fn a_rotation_is_followed_only_from_the_pinned_key() {
        let (k1, k2, stranger) = (key(), key(), key());
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DesiredStore::open(dir.path(), "cp-a").expect("open");
        store.pin(k1.public().clone()).expect("pin");
        assert_eq!(store.accept(signed(&k1, "cp-a", 1)), Ok(Accepted::Newer));
        assert!(
            !store
                .follow(
                    &stranger.public().to_pem(),
                    &[stranger.introduce(stranger.public())]
                )
                .expect("follow")
        );
        assert_eq!(store.pinned_key().as_ref(), Some(k1.public()));
        assert!(
            store
                .follow(&k2.public().to_pem(), &[k1.introduce(k2.public())])
                .expect("follow")
        );
        // The same generation, signed again by the new key, is written again: the file
        // verifies under the key now pinned, also at the next start without the control
        // plane.
        assert_eq!(store.accept(signed(&k2, "cp-a", 1)), Ok(Accepted::Same));
        assert!(matches!(
            store.accept(signed(&k1, "cp-a", 1)),
            Err(Refusal::Signature(SignatureError::UnknownKey { .. }))
        ));
        let reopened = DesiredStore::open(dir.path(), "cp-a").expect("open");
        assert!(
            reopened.load_refusal().is_none(),
            "{:?}",
            reopened.load_refusal()
        );
        assert_eq!(
            reopened.pinned_key().as_ref(),
            Some(k2.public()),
            "the new key is kept"
        );
        assert_eq!(reopened.generation(), 1);
    }
}
