//! The simulated Deployment controller and kubelet in one.
//!
//! For each Deployment it keeps `spec.replicas` Pods named `<deploy>-<hash>-<5 chars>` (hash:
//! the pod template's), Running on 127.0.0.1 and Ready `ready_delay` after their creation.
//! A changed template replaces the Pods by the Deployment's strategy, as the Kubernetes
//! documentation ("Deployments") describes it: `Recreate` ends every old Pod before it
//! creates new ones; `RollingUpdate` creates up to `maxSurge` Pods beyond `replicas` and
//! removes old Pods only while `replicas - maxUnavailable` stay Ready. Removed Pods
//! terminate gracefully ([`super::termination`]): `preStop`, Presto's own shutdown, the
//! grace period. `.status` counts the Pods as the Deployment controller does (terminating
//! Pods not at all). Pod churn counts as writes to the Pods; status reports and termination
//! marks are not counted as writes. Each pass runs the HPA controller ([`super::hpa`]) first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::drain::DrainEvent;
use super::hpa;
use super::key::ObjectKey;
use super::meta::{self, meta_str};
use super::server::Shared;
use super::status::ApiError;
use super::store::Mode;
use super::termination::{self, Termination};

/// A Pod the simulated controller created or deleted.
#[derive(Clone, Debug)]
pub struct PodEvent {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Name of the owning Deployment.
    pub owner: String,
    /// Created (true) or deleted (false).
    pub created: bool,
    /// When.
    pub at: Instant,
}

const TEMPLATE_HASH: &str = "pod-template-hash";

/// The controller's memory: when each Pod it created becomes Ready, and the Pods on their
/// way out.
struct Controller {
    shared: Arc<Shared>,
    ready_delay: Duration,
    ready_at: HashMap<ObjectKey, Instant>,
    terminating: HashMap<ObjectKey, Termination>,
    /// The `config.properties` each Pod's Presto read when it started.
    started_with: HashMap<ObjectKey, Option<String>>,
}

/// Runs the controller until the stand-in shuts down.
pub(crate) async fn run(shared: Arc<Shared>, ready_delay: Duration) {
    let mut latest = shared.store.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let mut c = Controller {
        shared,
        ready_delay,
        ready_at: HashMap::new(),
        terminating: HashMap::new(),
        started_with: HashMap::new(),
    };
    loop {
        latest.borrow_and_update();
        let wake = c.reconcile_all();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { return },
            () = sleep => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The first 10 hex digits of the SHA-256 of the template's JSON (keys sorted, since
/// `serde_json` maps are ordered here).
fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(template.to_string().as_bytes());
    hex::encode(digest).chars().take(10).collect()
}

fn owner_uid(pod: &Value) -> Option<&str> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Deployment" && r["controller"] == true)?["uid"]
        .as_str()
}

fn pod_key(p: &Value) -> ObjectKey {
    ObjectKey::new("v1", "pods", meta_str(p, "namespace"), meta::name(p))
}

/// `maxSurge` / `maxUnavailable`: an integer, or a percentage of `replicas` rounded up for
/// the surge and down for unavailability (Kubernetes documentation, "Deployments —
/// Rolling Update Deployment"); 25 % each when absent.
fn int_or_percent(v: &Value, replicas: usize, round_up: bool) -> usize {
    if let Some(n) = v.as_u64() {
        return usize::try_from(n).unwrap_or(usize::MAX);
    }
    let pct = v
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(25);
    let scaled = replicas * pct;
    if round_up {
        scaled.div_ceil(100)
    } else {
        scaled / 100
    }
}

/// How a Deployment replaces its Pods.
enum Strategy {
    Recreate,
    Rolling { surge: usize, unavailable: usize },
}

fn strategy(d: &Value, replicas: usize) -> Strategy {
    let s = &d["spec"]["strategy"];
    if s["type"] == "Recreate" {
        return Strategy::Recreate;
    }
    let r = &s["rollingUpdate"];
    Strategy::Rolling {
        surge: int_or_percent(&r["maxSurge"], replicas, true),
        unavailable: int_or_percent(&r["maxUnavailable"], replicas, false),
    }
}

impl Controller {
    /// One pass over every Deployment; returns when it next needs to run without a change.
    fn reconcile_all(&mut self) -> Option<Instant> {
        hpa::reconcile_all(&self.shared);
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        // Pods whose container is gone leave first.
        let done: Vec<ObjectKey> = self
            .terminating
            .iter()
            .filter(|(_, t)| t.gone_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            self.terminating.remove(&k);
            if let Some(p) = self.shared.store.get(&k) {
                self.remove_pod(&p);
            }
        }
        for t in self.terminating.values() {
            at(t.gone_at);
        }
        self.mark_ready(now);
        let (deployments, _) = self.shared.store.list("apps/v1", "deployments", None);
        let (pods, _) = self.shared.store.list("v1", "pods", None);
        let mut live = HashSet::new();
        for d in &deployments {
            let Some(uid) = meta_str(d, "uid") else {
                continue;
            };
            live.insert(uid.to_owned());
            let owned: Vec<&Value> = pods.iter().filter(|p| owner_uid(p) == Some(uid)).collect();
            if let Some(t) = self.reconcile(d, &owned, now) {
                at(t);
            }
        }
        for p in &pods {
            if let Some(uid) = owner_uid(p)
                && !live.contains(uid)
            {
                self.terminate(p);
            }
        }
        // Forget only Pods that are gone now (not those created during this pass).
        let (now_pods, _) = self.shared.store.list("v1", "pods", None);
        let keys: HashSet<ObjectKey> = now_pods.iter().map(pod_key).collect();
        self.ready_at.retain(|k, _| keys.contains(k));
        self.started_with.retain(|k, _| keys.contains(k));
        self.terminating.retain(|k, _| keys.contains(k));
        for t in self.terminating.values() {
            at(t.gone_at);
        }
        wake
    }

    /// Pods whose readiness delay has passed report Ready in their status, as the kubelet
    /// does once the readiness probe succeeds (a status write, not counted).
    fn mark_ready(&self, now: Instant) {
        let due: Vec<ObjectKey> = self
            .ready_at
            .iter()
            .filter(|(k, t)| **t <= now && !self.terminating.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let _ = self.shared.store.upsert(&key, Mode::Uncounted, |cur| {
                let mut new = cur
                    .ok_or_else(|| ApiError::new(404, "NotFound", "gone"))?
                    .clone();
                if let Some(conds) = new["status"]["conditions"].as_array_mut() {
                    for c in conds {
                        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                            c["status"] = json!("True");
                        }
                    }
                }
                if let Some(cs) = new["status"]["containerStatuses"].as_array_mut() {
                    for c in cs {
                        c["ready"] = json!(true);
                    }
                }
                Ok(new)
            });
        }
    }

    fn is_ready(&self, p: &Value, now: Instant) -> bool {
        self.ready_at.get(&pod_key(p)).is_none_or(|t| *t <= now)
    }

    fn reconcile(&mut self, d: &Value, owned: &[&Value], now: Instant) -> Option<Instant> {
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas =
            usize::try_from(d["spec"]["replicas"].as_i64().unwrap_or(1).max(0)).unwrap_or(0);
        let template = d["spec"]
            .get("template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = template_hash(&template);
        let alive: Vec<&Value> = owned
            .iter()
            .copied()
            .filter(|p| !self.terminating.contains_key(&pod_key(p)))
            .collect();
        let (mut new, mut old): (Vec<&Value>, Vec<&Value>) = alive
            .iter()
            .partition(|p| p["metadata"]["labels"][TEMPLATE_HASH] == hash.as_str());
        // Removal order, as the ReplicaSet controller ranks Pods: not ready before ready,
        // then the lowest `pod-deletion-cost`, then the newest.
        let rank = |p: &&Value| {
            (
                self.is_ready(p, now),
                deletion_cost(p),
                std::cmp::Reverse(age_rank(p)),
            )
        };
        new.sort_by_key(rank);
        old.sort_by_key(rank);
        match strategy(d, replicas) {
            Strategy::Recreate => {
                for p in &old {
                    self.terminate(p);
                }
                // New Pods only once every old one is gone.
                let waiting = owned.len() > new.len();
                if !waiting {
                    self.scale(d, &template, &hash, &new, replicas);
                }
            }
            Strategy::Rolling { surge, unavailable } if !old.is_empty() => {
                let mut total = new.len() + old.len();
                let mut fresh = new.len();
                while total < replicas + surge && fresh < replicas {
                    self.create_pod(d, &template, &hash);
                    total += 1;
                    fresh += 1;
                }
                let ready = alive.iter().filter(|p| self.is_ready(p, now)).count();
                let min_available = replicas.saturating_sub(unavailable);
                let mut removable = ready.saturating_sub(min_available);
                for p in &old {
                    if !self.is_ready(p, now) {
                        self.terminate(p);
                    } else if removable > 0 {
                        removable -= 1;
                        self.terminate(p);
                    }
                }
            }
            Strategy::Rolling { .. } => self.scale(d, &template, &hash, &new, replicas),
        }
        let pending = self.ready_at.values().filter(|t| **t > now).min().copied();
        self.report(d, generation, owned, &hash, now);
        pending
    }

    /// Brings the Pods of the current template to `replicas`.
    fn scale(&mut self, d: &Value, template: &Value, hash: &str, new: &[&Value], replicas: usize) {
        for p in new.iter().take(new.len().saturating_sub(replicas)) {
            self.terminate(p);
        }
        for _ in new.len()..replicas {
            self.create_pod(d, template, hash);
        }
    }

    /// Writes `.status` as the Deployment controller computes it, when it changed.
    fn report(&self, d: &Value, generation: i64, owned: &[&Value], hash: &str, now: Instant) {
        let alive: Vec<&&Value> = owned
            .iter()
            .filter(|p| !self.terminating.contains_key(&pod_key(p)))
            .collect();
        let updated = alive
            .iter()
            .filter(|p| p["metadata"]["labels"][TEMPLATE_HASH] == hash)
            .count();
        let ready = alive.iter().filter(|p| self.is_ready(p, now)).count();
        let want = json!({
            "observedGeneration": generation,
            "replicas": alive.len(), "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": ready,
        });
        let status = &d["status"];
        let reported = want
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| &status[k] == v);
        if reported {
            return;
        }
        let mut status = want;
        let stamp = meta::now_rfc3339();
        status["conditions"] = json!([
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": stamp, "lastTransitionTime": stamp},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": stamp, "lastTransitionTime": stamp},
        ]);
        let key = deployment_key(d);
        // Status reports are the controller's, not a client's: not counted. A Deployment
        // changed since this pass read it is left alone; the next pass reports it.
        let _ = self.shared.store.upsert(&key, Mode::Uncounted, |cur| {
            let cur = cur.ok_or_else(|| ApiError::new(404, "NotFound", "gone"))?;
            let mut new = cur.clone();
            if cur["metadata"]["generation"].as_i64().unwrap_or(1) == generation {
                new["status"] = status;
            }
            Ok(new)
        });
    }

    /// The `config.properties` in the Pod's `config` ConfigMap volume, as it is now.
    fn config_properties(&self, p: &Value) -> Option<String> {
        let ns = meta_str(p, "namespace").unwrap_or("default");
        let cm = p["spec"]["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == "config")?["configMap"]["name"]
            .as_str()?;
        let obj = self
            .shared
            .store
            .get(&ObjectKey::new("v1", "configmaps", Some(ns), cm))?;
        obj["data"]["config.properties"].as_str().map(str::to_owned)
    }

    /// Starts the graceful termination of `p` ([`super::termination`]).
    fn terminate(&mut self, p: &Value) {
        let key = pod_key(p);
        if self.terminating.contains_key(&key) {
            return;
        }
        let ns = meta_str(p, "namespace").unwrap_or("default").to_owned();
        let name = meta::name(p).to_owned();
        let id = (ns.clone(), name.clone());
        // Presto read its configuration at start; a ConfigMap changed or deleted since
        // does not change the running server.
        let properties = match self.started_with.get(&key) {
            Some(p) => p.clone(),
            None => self.config_properties(p),
        };
        let properties = properties.as_deref();
        let shared = self.shared.clone();
        let t = termination::begin(p, &id, &self.shared.tasks, properties, || {
            shared.drains().push(DrainEvent {
                namespace: ns.clone(),
                pod: name.clone(),
                body: "\"SHUTTING_DOWN\"".into(),
                at: Instant::now(),
            });
            shared.drained().insert(id.clone());
        });
        let grace = p["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        // What the API server writes on a graceful delete.
        let _ = self.shared.store.upsert(&key, Mode::Uncounted, |cur| {
            let mut new = cur
                .ok_or_else(|| ApiError::new(404, "NotFound", "gone"))?
                .clone();
            new["metadata"]["deletionTimestamp"] = json!(meta::now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            if let Some(conds) = new["status"]["conditions"].as_array_mut() {
                for c in conds {
                    if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                        c["status"] = json!("False");
                    }
                }
            }
            Ok(new)
        });
        self.terminating.insert(key, t);
    }

    fn create_pod(&mut self, d: &Value, template: &Value, hash: &str) {
        let (ns, owner) = (meta_str(d, "namespace").unwrap_or("default"), meta::name(d));
        let name = format!("{owner}-{hash}-{}", meta::random_suffix());
        let mut labels = template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert(TEMPLATE_HASH.into(), json!(hash));
        let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
        if let Some(s) = spec.as_object_mut() {
            s.insert("nodeName".into(), json!("standin-node"));
        }
        let now = meta::now_rfc3339();
        let containers: Vec<Value> = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": true,
                       "restartCount": 0, "state": {"running": {"startedAt": now}}})
            })
            .collect();
        // Ready only once its readiness delay has passed ([`Controller::mark_ready`]).
        let condition = |t: &str| {
            let status = if matches!(t, "Ready" | "ContainersReady") {
                "False"
            } else {
                "True"
            };
            json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": now})
        };
        let conditions = ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map(condition);
        let mut metadata = json!({
            "name": name, "namespace": ns, "generateName": format!("{owner}-{hash}-"), "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner,
                                 "uid": meta_str(d, "uid"), "controller": true, "blockOwnerDeletion": true}],
        });
        if let Some(a) = template["metadata"].get("annotations") {
            metadata["annotations"] = a.clone();
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": {
                "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": now, "qosClass": "BestEffort", "containerStatuses": containers,
                "conditions": conditions,
            },
        });
        let key = ObjectKey::new("v1", "pods", Some(ns), &name);
        let created = self
            .shared
            .store
            .upsert(&key, Mode::Counted, |old| match old {
                Some(_) => Err(ApiError::new(409, "AlreadyExists", "pod exists")),
                None => Ok(pod),
            });
        if created.is_ok() {
            if let Some(pod) = self.shared.store.get(&key) {
                let config = self.config_properties(&pod);
                self.started_with.insert(key.clone(), config);
            }
            self.ready_at.insert(key, Instant::now() + self.ready_delay);
            self.record(ns, &name, owner, true);
            for c in spec["containers"].as_array().into_iter().flatten() {
                let container = c["name"].as_str().unwrap_or("");
                for line in startup_log(&name) {
                    self.shared.logs.append(ns, &name, container, &line);
                }
            }
        }
    }

    /// The container is gone: the Pod object goes, its tasks end with it.
    fn remove_pod(&self, p: &Value) {
        let ns = meta_str(p, "namespace").unwrap_or("default");
        let name = meta::name(p);
        let key = ObjectKey::new("v1", "pods", Some(ns), name);
        let id = (ns.to_owned(), name.to_owned());
        self.shared.tasks.container_gone(&id);
        self.shared.drained().remove(&id);
        if let Ok(Some(_)) = self.shared.store.delete(&key, Mode::Counted, |_| Ok(())) {
            self.shared.logs.remove_pod(ns, name);
            let owner = p["metadata"]["ownerReferences"][0]["name"]
                .as_str()
                .unwrap_or("");
            self.record(ns, name, owner, false);
        }
    }

    fn record(&self, namespace: &str, pod: &str, owner: &str, created: bool) {
        self.shared.pod_events().push(PodEvent {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            owner: owner.to_owned(),
            created,
            at: Instant::now(),
        });
    }
}

/// What a Presto server prints as it starts, in Presto's log layout (tab-separated time,
/// level, thread, logger, message).
fn startup_log(pod: &str) -> [String; 3] {
    let now = meta::now_rfc3339();
    [
        format!("{now}\tINFO\tmain\tio.airlift.log.Logging\tLogging to stderr"),
        format!("{now}\tINFO\tmain\tcom.facebook.presto.server.PrestoServer\tnode {pod} starting"),
        format!(
            "{now}\tINFO\tmain\tcom.facebook.presto.server.PrestoServer\t======== SERVER STARTED ========"
        ),
    ]
}

/// The `controller.kubernetes.io/pod-deletion-cost` annotation; 0 when absent or invalid.
fn deletion_cost(pod: &Value) -> i64 {
    pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Creation order: the creation timestamp (whole seconds, UTC, so it sorts as text), then the
/// resourceVersion within a second.
fn age_rank(pod: &Value) -> (String, u64) {
    let created = meta_str(pod, "creationTimestamp").unwrap_or("").to_owned();
    let rv = meta_str(pod, "resourceVersion").and_then(|rv| rv.parse().ok());
    (created, rv.unwrap_or(0))
}

fn deployment_key(d: &Value) -> ObjectKey {
    ObjectKey::new(
        "apps/v1",
        "deployments",
        meta_str(d, "namespace"),
        meta::name(d),
    )
}
