//! The Kubernetes operations of the reconciler, over the real `kube` client: server-side
//! apply under one field manager, listing and pruning what Tether owns, and reading
//! Deployment status. Workers drain themselves (their `preStop` hook, see
//! `render::workloads`); the reconciler never waits for a drain.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::render::MANAGED_KINDS;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "tether";

/// A Kubernetes call that failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server refused or failed the call.
    #[error("{action} {kind} {name}: {source}")]
    Call {
        /// What was tried.
        action: &'static str,
        /// Object kind.
        kind: String,
        /// Object name (or selector).
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A rendered object of a kind Tether does not manage (a bug, not an API failure).
    #[error("unmanaged kind {0}")]
    UnknownKind(String),
    /// A request could not be built.
    #[error("building request for {0}: {1}")]
    Request(String, String),
}

impl KubeError {
    fn call(action: &'static str, kind: &str, name: &str, source: kube::Error) -> Self {
        KubeError::Call {
            action,
            kind: kind.to_owned(),
            name: name.to_owned(),
            source,
        }
    }

    /// A short, stable label for logs and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            KubeError::Call {
                source: kube::Error::Api(s),
                ..
            } if s.code == 409 => "Conflict",
            KubeError::Call {
                source: kube::Error::Api(s),
                ..
            } if s.code >= 500 => "ApiServerError",
            KubeError::Call {
                source: kube::Error::Api(s),
                ..
            } if s.code == 422 => "Invalid",
            KubeError::Call {
                source: kube::Error::Api(_),
                ..
            } => "ApiError",
            KubeError::Call { .. } => "ApiUnreachable",
            KubeError::UnknownKind(_) | KubeError::Request(..) => "InternalError",
        }
    }
}

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

fn plural_of(api_version: &str, kind: &str) -> Option<(&'static str, bool)> {
    MANAGED_KINDS
        .iter()
        .find(|(av, k, _, _)| *av == api_version && *k == kind)
        .map(|(_, _, plural, namespaced)| (*plural, *namespaced))
        .or(match kind {
            "Namespace" => Some(("namespaces", false)),
            // Written (synced catalog credentials) and deleted by name, never listed: a
            // list would read every Secret of the namespace.
            "Secret" => Some(("secrets", true)),
            _ => None,
        })
}

/// The identity of an object: (apiVersion, kind, name).
pub type ObjectId = (String, String, String);

/// The id of a rendered object.
pub fn object_id(obj: &Value) -> ObjectId {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&obj["apiVersion"]),
        s(&obj["kind"]),
        s(&obj["metadata"]["name"]),
    )
}

/// Kubernetes access for one namespace.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    namespace: String,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Kube {
    /// Wraps a client.
    pub fn new(client: Client, namespace: String) -> Self {
        Self { client, namespace }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api(&self, api_version: &str, kind: &str) -> Option<Api<DynamicObject>> {
        let (plural, namespaced) = plural_of(api_version, kind)?;
        let ar = resource(api_version, kind, plural);
        Some(if namespaced {
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    /// Server-side applies `obj` (force: Tether owns these fields).
    pub async fn apply(&self, obj: &Value) -> Result<(), KubeError> {
        self.apply_as(obj, FIELD_MANAGER).await
    }

    /// Server-side applies `obj` as field manager `manager`.
    pub async fn apply_as(&self, obj: &Value, manager: &str) -> Result<(), KubeError> {
        let (api_version, kind, name) = object_id(obj);
        let api = self
            .api(&api_version, &kind)
            .ok_or_else(|| KubeError::UnknownKind(kind.clone()))?;
        api.patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(obj),
        )
        .await
        .map(|_| ())
        .map_err(|source| KubeError::call("apply", &kind, &name, source))
    }

    /// Deletes one object by name; gone already is fine.
    pub async fn delete(&self, api_version: &str, kind: &str, name: &str) -> Result<(), KubeError> {
        let api = self
            .api(api_version, kind)
            .ok_or_else(|| KubeError::UnknownKind(kind.to_owned()))?;
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(KubeError::call("delete", kind, name, source)),
        }
    }

    /// The objects of a managed kind that carry `selector`.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
    ) -> Result<Vec<DynamicObject>, KubeError> {
        let api = self
            .api(api_version, kind)
            .ok_or_else(|| KubeError::UnknownKind(kind.to_owned()))?;
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|source| KubeError::call("list", kind, selector, source))
    }

    /// Reads one object.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, KubeError> {
        let Some(api) = self.api(api_version, kind) else {
            return Ok(None);
        };
        api.get_opt(name)
            .await
            .map_err(|source| KubeError::call("get", kind, name, source))
    }

    /// Deletes what carries `selector` but is not in `keep`, kind by kind. Returns what
    /// it deleted.
    pub async fn prune(
        &self,
        selector: &str,
        keep: &BTreeSet<ObjectId>,
    ) -> Result<Vec<ObjectId>, KubeError> {
        let mut deleted = Vec::new();
        for (api_version, kind, _, _) in MANAGED_KINDS {
            let Some(api) = self.api(api_version, kind) else {
                continue;
            };
            let list = match api.list(&ListParams::default().labels(selector)).await {
                Ok(list) => list,
                // A kind the agent may not list (an install from before it managed that
                // kind: NetworkPolicies came with Presto's LDAP authentication) holds
                // nothing of the agent's to prune; applying one would say so.
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    tracing::warn!(kind, "may not list this kind: nothing of it pruned");
                    continue;
                }
                Err(source) => return Err(KubeError::call("list", kind, selector, source)),
            };
            for item in list.items {
                let name = item.metadata.name.clone().unwrap_or_default();
                let id = ((*api_version).to_owned(), (*kind).to_owned(), name.clone());
                if keep.contains(&id) {
                    continue;
                }
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => deleted.push(id),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(source) => return Err(KubeError::call("delete", kind, &name, source)),
                }
            }
        }
        Ok(deleted)
    }
}

/// How far a Deployment's roll is: Pods of the current template and all its Pods, as its
/// status counts them (`None` while the status is of an older generation).
pub fn deployment_rollout(d: &DynamicObject) -> Option<(u32, u32)> {
    let n = |v: &Value| v.as_u64().map(|x| x as u32).unwrap_or(0);
    let observed = d.data["status"]["observedGeneration"].as_i64().unwrap_or(0);
    if observed < d.metadata.generation.unwrap_or(0) {
        return None;
    }
    Some((
        n(&d.data["status"]["updatedReplicas"]),
        n(&d.data["status"]["replicas"]),
    ))
}

/// Ready and desired replicas of a Deployment object.
pub fn deployment_replicas(d: &DynamicObject) -> (u32, Option<u32>) {
    let n = |v: &Value| v.as_u64().map(|x| x as u32);
    let ready = n(&d.data["status"]["readyReplicas"]).unwrap_or(0);
    let observed = d.data["status"]["observedGeneration"].as_i64().unwrap_or(0);
    let current = d.metadata.generation.unwrap_or(0);
    // Status of an older generation says nothing about the current spec.
    let ready = if observed >= current { ready } else { 0 };
    (ready, n(&d.data["spec"]["replicas"]))
}
