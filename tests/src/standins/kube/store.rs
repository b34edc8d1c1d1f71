//! The object store: JSON objects by [`ObjectKey`], one global `resourceVersion` counter, the
//! server-owned metadata, a bounded history of changes for watches, and write counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::key::ObjectKey;
use super::meta::{self, comparable, set_meta};
use super::status::ApiError;

/// How many changes watches can resume from; older resourceVersions get 410 Expired.
const HISTORY: usize = 10_000;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventKind {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept for watches.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The `resourceVersion` this change produced.
    pub rv: u64,
    /// What happened.
    pub kind: EventKind,
    /// Which object.
    pub key: ObjectKey,
    /// The object after the change (for deletes: its last state).
    pub object: Value,
    /// The object before the change, for label-selector transitions.
    pub prev: Option<Value>,
}

/// The result of a write.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The object as stored now.
    pub object: Value,
    /// It did not exist before.
    pub created: bool,
}

/// How a write is done: counted in [`Store::writes`] (client writes, the controller's pod
/// churn), not counted (the controller's status reports), or only previewed (`dryRun=All`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stored and counted.
    Counted,
    /// Stored, not counted.
    Uncounted,
    /// Checked and answered as if stored; nothing changes.
    DryRun,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<ObjectKey, Value>,
    rv: u64,
    history: VecDeque<Event>,
    /// Highest resourceVersion dropped from `history`.
    floor: u64,
    writes: HashMap<ObjectKey, u64>,
    total_writes: u64,
}

/// The store; every method is atomic.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    history: usize,
    latest: watch::Sender<u64>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::with_history(HISTORY)
    }

    /// An empty store that keeps the last `history` changes for watches.
    pub fn with_history(history: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            history,
            latest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the latest resourceVersion: changes whenever anything is written.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of one type (in one namespace, or all), ordered by namespace and name, with the
    /// resourceVersion of this snapshot.
    pub fn list(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| k.within(api_version, plural, namespace))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Keys of every object in `namespace`.
    pub fn keys_in(&self, namespace: &str) -> Vec<ObjectKey> {
        self.lock()
            .objects
            .keys()
            .filter(|k| k.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }

    /// Counted writes that changed `key`.
    pub fn writes(&self, key: &ObjectKey) -> u64 {
        self.lock().writes.get(key).copied().unwrap_or(0)
    }

    /// Counted writes that changed anything.
    pub fn total_writes(&self) -> u64 {
        self.lock().total_writes
    }

    /// Creates or changes `key` to what `f` makes of its current state, keeping the metadata the
    /// server owns (uid, creationTimestamp, resourceVersion, generation). A result equal to
    /// the current object (ignoring those) is a no-op: nothing is bumped or counted.
    pub fn upsert(
        &self,
        key: &ObjectKey,
        mode: Mode,
        f: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<Outcome, ApiError> {
        let mut inner = self.lock();
        let old = inner.objects.get(key).cloned();
        let mut new = f(old.as_ref())?;
        let Some(old) = old else {
            let rv = inner.rv + 1;
            set_meta(&mut new, "uid", json!(uuid::Uuid::new_v4().to_string()));
            set_meta(&mut new, "creationTimestamp", json!(meta::now_rfc3339()));
            set_meta(&mut new, "generation", json!(1));
            set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
            if mode != Mode::DryRun {
                inner.commit(key, EventKind::Added, new.clone(), None, mode, self.history);
                self.latest.send_replace(inner.rv);
            }
            return Ok(Outcome {
                object: new,
                created: true,
            });
        };
        for f in ["uid", "creationTimestamp"] {
            if let Some(v) = old.get("metadata").and_then(|m| m.get(f)) {
                set_meta(&mut new, f, v.clone());
            }
        }
        if comparable(&new) == comparable(&old) {
            // Field ownership moved (say, a first apply of what a create wrote): remember it,
            // but as no write, so that applying the same state stays a no-op.
            let mut kept = old;
            if ownership(&new) != ownership(&kept) && mode != Mode::DryRun {
                let fields = new["metadata"]["managedFields"].clone();
                set_meta(&mut kept, "managedFields", fields);
                inner.objects.insert(key.clone(), kept.clone());
            }
            return Ok(Outcome {
                object: kept,
                created: false,
            });
        }
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let generation = if new.get("spec") != old.get("spec") {
            generation + 1
        } else {
            generation
        };
        set_meta(&mut new, "generation", json!(generation));
        set_meta(
            &mut new,
            "resourceVersion",
            json!((inner.rv + 1).to_string()),
        );
        if mode != Mode::DryRun {
            inner.commit(
                key,
                EventKind::Modified,
                new.clone(),
                Some(old),
                mode,
                self.history,
            );
            self.latest.send_replace(inner.rv);
        }
        Ok(Outcome {
            object: new,
            created: false,
        })
    }

    /// Deletes `key` after `check` accepts its current state; returns its last state, or
    /// `None` if it did not exist.
    pub fn delete(
        &self,
        key: &ObjectKey,
        mode: Mode,
        check: impl FnOnce(&Value) -> Result<(), ApiError>,
    ) -> Result<Option<Value>, ApiError> {
        let mut inner = self.lock();
        let Some(old) = inner.objects.get(key) else {
            return Ok(None);
        };
        check(old)?;
        let mut gone = old.clone();
        set_meta(
            &mut gone,
            "resourceVersion",
            json!((inner.rv + 1).to_string()),
        );
        if mode != Mode::DryRun {
            inner.commit(
                key,
                EventKind::Deleted,
                gone.clone(),
                None,
                mode,
                self.history,
            );
            self.latest.send_replace(inner.rv);
        }
        Ok(Some(gone))
    }

    /// Changes of type `api_version`/`plural` after `rv`, and the resourceVersion they reach;
    /// `Err(oldest)` if changes after `rv` are no longer kept.
    pub fn events_since(
        &self,
        api_version: &str,
        plural: &str,
        rv: u64,
    ) -> Result<(Vec<Event>, u64), u64> {
        let inner = self.lock();
        if rv < inner.floor {
            return Err(inner.floor + 1);
        }
        let start = inner.history.partition_point(|e| e.rv <= rv);
        let events = inner
            .history
            .range(start..)
            .filter(|e| e.key.api_version == api_version && e.key.plural == plural)
            .cloned()
            .collect();
        Ok((events, inner.rv.max(rv)))
    }
}

/// `managedFields` without the timestamps.
fn ownership(obj: &Value) -> Value {
    let mut f = obj["metadata"]["managedFields"].clone();
    for e in f.as_array_mut().into_iter().flatten() {
        if let Some(m) = e.as_object_mut() {
            m.remove("time");
        }
    }
    f
}

impl Inner {
    fn commit(
        &mut self,
        key: &ObjectKey,
        kind: EventKind,
        object: Value,
        prev: Option<Value>,
        mode: Mode,
        keep: usize,
    ) {
        self.rv += 1;
        match kind {
            EventKind::Deleted => {
                self.objects.remove(key);
            }
            EventKind::Added | EventKind::Modified => {
                self.objects.insert(key.clone(), object.clone());
            }
        }
        if mode == Mode::Counted {
            *self.writes.entry(key.clone()).or_default() += 1;
            self.total_writes += 1;
        }
        self.history.push_back(Event {
            rv: self.rv,
            kind,
            key: key.clone(),
            object,
            prev,
        });
        while self.history.len() > keep {
            if let Some(e) = self.history.pop_front() {
                self.floor = e.rv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("v1", "configmaps", Some("ns"), name)
    }

    fn cm(name: &str, data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"k": data}})
    }

    #[test]
    fn no_op_writes_bump_nothing() {
        let s = Store::new();
        let a = s
            .upsert(&key("a"), Mode::Counted, |_| Ok(cm("a", "1")))
            .unwrap();
        assert!(a.created);
        let again = s
            .upsert(&key("a"), Mode::Counted, |_| Ok(cm("a", "1")))
            .unwrap();
        assert_eq!(
            again.object["metadata"]["resourceVersion"],
            a.object["metadata"]["resourceVersion"]
        );
        assert_eq!(s.writes(&key("a")), 1);
        let b = s
            .upsert(&key("a"), Mode::Counted, |_| Ok(cm("a", "2")))
            .unwrap();
        assert_eq!(b.object["metadata"]["uid"], a.object["metadata"]["uid"]);
        assert_eq!(b.object["metadata"]["generation"], 1);
        assert_eq!(s.writes(&key("a")), 2);
        let dry = s
            .upsert(&key("a"), Mode::DryRun, |_| Ok(cm("a", "3")))
            .unwrap();
        assert_eq!(dry.object["data"]["k"], "3");
        assert_eq!(s.get(&key("a")).unwrap()["data"]["k"], "2");
        let (events, rv) = s.events_since("v1", "configmaps", 1).unwrap();
        assert_eq!((events.len(), rv), (1, 2));
    }

    #[test]
    fn watches_from_before_the_history_expire() {
        let s = Store::with_history(2);
        for v in ["1", "2", "3"] {
            s.upsert(&key("a"), Mode::Counted, |_| Ok(cm("a", v)))
                .unwrap();
        }
        assert_eq!(s.events_since("v1", "configmaps", 0).err(), Some(2));
        assert_eq!(
            s.events_since("v1", "configmaps", 1).map(|(e, _)| e.len()),
            Ok(2)
        );
    }
}
