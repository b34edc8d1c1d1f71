//! The simulated Deployment controller and kubelet in one.
//!
//! For each Deployment it keeps `spec.replicas` Pods named `<deploy>-<hash>-<5 chars>` (hash:
//! the pod template's), Running and Ready at once on 127.0.0.1; a changed template replaces
//! every Pod; Pods of deleted Deployments are deleted. `ready_delay` after the last change
//! of a Deployment's generation it reports the Deployment ready in `.status`. Pod churn counts
//! as writes to the Pods; status reports are not counted as writes. Each pass runs the
//! HPA controller ([`super::hpa`]) first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::hpa;
use super::key::ObjectKey;
use super::meta::{self, meta_str};
use super::server::Shared;
use super::status::ApiError;
use super::store::Mode;

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

struct Tracked {
    generation: i64,
    changed_at: Instant,
}

/// The controller's memory: when each Deployment last changed.
struct Controller {
    shared: Arc<Shared>,
    ready_delay: Duration,
    tracked: HashMap<ObjectKey, Tracked>,
}

/// Runs the controller until the stand-in shuts down.
pub(crate) async fn run(shared: Arc<Shared>, ready_delay: Duration) {
    let mut latest = shared.store.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let mut c = Controller {
        shared,
        ready_delay,
        tracked: HashMap::new(),
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

impl Controller {
    /// One pass over every Deployment; returns when it next needs to run without a change.
    fn reconcile_all(&mut self) -> Option<Instant> {
        hpa::reconcile_all(&self.shared);
        let now = Instant::now();
        let (deployments, _) = self.shared.store.list("apps/v1", "deployments", None);
        let (pods, _) = self.shared.store.list("v1", "pods", None);
        let mut wake: Option<Instant> = None;
        let mut live = HashSet::new();
        for d in &deployments {
            let Some(uid) = meta_str(d, "uid") else {
                continue;
            };
            live.insert(uid.to_owned());
            let owned: Vec<&Value> = pods.iter().filter(|p| owner_uid(p) == Some(uid)).collect();
            if let Some(at) = self.reconcile(d, &owned, now) {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        for p in &pods {
            if let Some(uid) = owner_uid(p)
                && !live.contains(uid)
            {
                self.delete_pod(p);
            }
        }
        let keys: HashSet<ObjectKey> = deployments.iter().map(deployment_key).collect();
        self.tracked.retain(|k, _| keys.contains(k));
        wake
    }

    fn reconcile(&mut self, d: &Value, owned: &[&Value], now: Instant) -> Option<Instant> {
        let key = deployment_key(d);
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas =
            usize::try_from(d["spec"]["replicas"].as_i64().unwrap_or(1).max(0)).unwrap_or(0);
        let template = d["spec"]
            .get("template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = template_hash(&template);
        let t = self.tracked.entry(key.clone()).or_insert(Tracked {
            generation,
            changed_at: now,
        });
        if t.generation != generation {
            *t = Tracked {
                generation,
                changed_at: now,
            };
        }
        let ready_at = t.changed_at + self.ready_delay;

        let (mut current, old): (Vec<&Value>, Vec<&Value>) = owned
            .iter()
            .partition(|p| p["metadata"]["labels"][TEMPLATE_HASH] == hash.as_str());
        for p in old {
            self.delete_pod(p);
        }
        // Scaling down removes pods as the ReplicaSet controller ranks them (all here are
        // equally scheduled, running and ready): lowest `pod-deletion-cost` first, then the
        // newest.
        current.sort_by_key(|p| (deletion_cost(p), std::cmp::Reverse(age_rank(p))));
        for p in current.iter().take(current.len().saturating_sub(replicas)) {
            self.delete_pod(p);
        }
        for _ in current.len()..replicas {
            self.create_pod(d, &template, &hash);
        }

        if now < ready_at {
            return Some(ready_at);
        }
        let n = replicas;
        let want = json!({
            "observedGeneration": generation,
            "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
        });
        let status = &d["status"];
        let reported = want
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| &status[k] == v);
        if !reported {
            let mut status = want;
            let stamp = meta::now_rfc3339();
            status["conditions"] = json!([
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.", "lastUpdateTime": stamp, "lastTransitionTime": stamp},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": stamp, "lastTransitionTime": stamp},
            ]);
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
        None
    }

    fn create_pod(&self, d: &Value, template: &Value, hash: &str) {
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
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true,
                       "restartCount": 0, "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let condition = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
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
            self.record(ns, &name, owner, true);
            for c in spec["containers"].as_array().into_iter().flatten() {
                let container = c["name"].as_str().unwrap_or("");
                for line in startup_log(&name) {
                    self.shared.logs.append(ns, &name, container, &line);
                }
            }
        }
    }

    fn delete_pod(&self, p: &Value) {
        let ns = meta_str(p, "namespace").unwrap_or("default");
        let name = meta::name(p);
        let key = ObjectKey::new("v1", "pods", Some(ns), name);
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
