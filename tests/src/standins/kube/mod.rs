//! A Kubernetes API server stand-in, faithful on the wire so that the real `kube` client and
//! the real `kubectl` work against it unchanged.
//!
//! It serves discovery; GET, LIST (label and field selectors, paging), WATCH (from a
//! resourceVersion, with bookmarks and 410 Expired), create, replace, PATCH (server-side
//! apply, merge, strategic-merge-as-merge, JSON patch), DELETE; the `status` and `scale`
//! subresources; the service proxy (to registered backends) and the pod proxy (answering as
//! a Presto worker for graceful shutdown). A simulated controller runs Deployments' Pods by
//! their strategy (rolling or recreate), ready after a delay, and ends them gracefully
//! (`preStop`, Presto's shutdown, the grace period) with the tasks placed on them. Faults (errors, conflicts, latency) are
//! injected through [`Faults`]; permissions are denied through [`Rbac`] (403, and the
//! answer of a `SelfSubjectAccessReview`).
//!
//! Writes that change nothing (compared without `resourceVersion`, `generation` and
//! `managedFields`) bump nothing and are not counted, so tests can assert that reconciling
//! an unchanged state writes nothing ([`KubeStandIn::writes`]).
//!
//! Not served: OpenAPI (kubectl `create -f`/`apply -f` need `--validate=false`), protobuf
//! bodies (415; kubectl's `create namespace|configmap|secret` generators send protobuf),
//! apply conflicts between field managers (every apply acts as forced), ReplicaSets, and
//! controllers other than the Deployment one and a metrics-less HPA (min/max only).
//!
//! Module map: `server` routes each request (`route`) to discovery (`discovery`), the verbs
//! (`handlers`, `patch` with `apply`, `subresource`, `watch`, `table`) over the `store`, or
//! the proxies (`proxy`, `drain`); `controller` (with `hpa`) runs alongside; `faults` is consulted first.

mod apply;
mod authz;
mod controller;
mod discovery;
mod drain;
mod faults;
mod handlers;
mod hpa;
mod key;
mod kubeconfig;
mod logs;
mod meta;
mod params;
mod patch;
mod proxy;
mod resources;
mod route;
mod selector;
mod server;
mod status;
mod store;
mod subresource;
mod table;
mod termination;
mod watch;
mod write;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use authz::Rbac;
pub use controller::PodEvent;
pub use drain::DrainEvent;
pub use faults::Faults;
pub use key::ObjectKey;
pub use termination::{TaskHandle, TaskOutcome};

use server::Shared;

/// How the stand-in is started.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Where to listen; default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// The simulated controller reports a Deployment ready this long after its last spec
    /// change; default 300 ms.
    pub ready_delay: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_delay: Duration::from_millis(300),
        }
    }
}

/// A running stand-in. Dropping it stops it too; [`KubeStandIn::shutdown`] also waits.
pub struct KubeStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: signal::Sender<bool>,
    server: Option<JoinHandle<()>>,
    controller: Option<JoinHandle<()>>,
}

impl KubeStandIn {
    /// Binds `opts.listen` and serves on the current tokio runtime.
    pub async fn start(opts: KubeOptions) -> std::io::Result<KubeStandIn> {
        // Its HTTP clients (rustls) need the one crypto provider; a no-op once installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = signal::channel(false);
        let shared = Arc::new(Shared::new(addr.to_string(), stopped.clone()));
        let app = server::router(shared.clone());
        let mut until = stopped;
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "kube stand-in server failed");
            }
        });
        let controller = tokio::spawn(controller::run(shared.clone(), opts.ready_delay));
        Ok(KubeStandIn {
            shared,
            addr,
            stop,
            server: Some(server),
            controller: Some(controller),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server: one cluster, context and credential-less user, current
    /// context set, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::kubeconfig_yaml(&self.url())
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Writes that changed `key`: creates, updates and patches that changed something,
    /// deletes; by clients, and the controller's Pod creates and deletes (not its status
    /// reports).
    pub fn writes(&self, key: &ObjectKey) -> u64 {
        self.shared.store.writes(key)
    }

    /// Sum of [`Self::writes`] over every key.
    pub fn total_writes(&self) -> u64 {
        self.shared.store.total_writes()
    }

    /// The stored object, as a GET would return it.
    pub fn object(&self, key: &ObjectKey) -> Option<serde_json::Value> {
        self.shared.store.get(key)
    }

    /// Stored objects of type `api_version`/`plural` (`"apps/v1"`, `"deployments"`), in one
    /// namespace or all, ordered by namespace and name.
    pub fn list(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<serde_json::Value> {
        self.shared.store.list(api_version, plural, namespace).0
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// The permissions of the (one) user: everything until denied.
    pub fn rbac(&self) -> Rbac {
        self.shared.rbac.clone()
    }

    /// Every `PUT /v1/info/state` that reached a pod through the pod proxy, in order.
    pub fn drains(&self) -> Vec<DrainEvent> {
        self.shared.drains().clone()
    }

    /// Pods created and deleted by the simulated controller, in order.
    pub fn pod_events(&self) -> Vec<PodEvent> {
        self.shared.pod_events().clone()
    }

    /// A cheap handle for tasks that follow the stand-in's Services and register their
    /// backends (the sandbox gives every cluster's coordinator Service a Presto stand-in).
    pub fn services(&self) -> Services {
        Services {
            shared: self.shared.clone(),
        }
    }

    /// A cheap read handle on the stored objects, for stand-ins that read what a pod
    /// mounts (the Presto stand-in reads its configuration so).
    pub fn objects(&self) -> Objects {
        Objects {
            shared: self.shared.clone(),
        }
    }

    /// Creates (or replaces) Secret `namespace`/`name` with `data` (plain values, stored
    /// base64 as the API keeps them), as `kubectl create secret generic` would.
    pub fn create_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        use base64::Engine as _;
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    base64::engine::general_purpose::STANDARD
                        .encode(v.as_bytes())
                        .into(),
                )
            })
            .collect();
        let key = ObjectKey::new("v1", "secrets", Some(namespace), name);
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace}, "data": data});
        let _ = self
            .shared
            .store
            .upsert(&key, store::Mode::Counted, |_| Ok(obj));
    }

    /// Places a Presto task of `duration` on the Pod (a query's split running on that
    /// worker). Refused, as Presto's scheduler refuses a node in `SHUTTING_DOWN`, when the
    /// Pod does not exist, is shutting down, is terminating, or is not Ready yet.
    pub fn run_task(
        &self,
        namespace: &str,
        pod: &str,
        duration: Duration,
    ) -> Result<TaskHandle, String> {
        let key = ObjectKey::new("v1", "pods", Some(namespace), pod);
        let obj = self
            .shared
            .store
            .get(&key)
            .ok_or_else(|| format!("pod {pod} does not exist"))?;
        let id = (namespace.to_owned(), pod.to_owned());
        if self.shared.drained().contains(&id) || !obj["metadata"]["deletionTimestamp"].is_null() {
            return Err(format!("pod {pod} is shutting down"));
        }
        let ready = obj["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if !ready {
            return Err(format!(
                "pod {pod} is not Ready: its Service sends it nothing"
            ));
        }
        Ok(self.shared.tasks.start(id, duration))
    }

    /// Makes the service proxy for `namespace`/`service` forward to `target`.
    pub fn register_service_backend(&self, namespace: &str, service: &str, target: SocketAddr) {
        self.shared
            .backends()
            .insert((namespace.to_owned(), service.to_owned()), target);
    }

    /// Appends one line to a pod container's log (what `kubectl logs` and the `log`
    /// subresource then show, followers at once).
    pub fn append_pod_log(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        self.shared.logs.append(namespace, pod, container, line);
    }

    /// Stops serving: ends watches, stops the controller, and waits (up to 5 s) for open
    /// requests to finish.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in [self.server.take(), self.controller.take()]
            .into_iter()
            .flatten()
        {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// See [`KubeStandIn::objects`].
#[derive(Clone)]
pub struct Objects {
    shared: Arc<Shared>,
}

impl Objects {
    /// The stored object `api_version`/`plural` `namespace`/`name`, as a GET returns it.
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        self.shared
            .store
            .get(&ObjectKey::new(api_version, plural, Some(namespace), name))
    }
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").finish_non_exhaustive()
    }
}

/// See [`KubeStandIn::services`].
#[derive(Clone)]
pub struct Services {
    shared: Arc<Shared>,
}

impl Services {
    /// Names of the Services in `namespace` whose labels include every `key=value` of
    /// `labels`.
    pub fn named(&self, namespace: &str, labels: &[(&str, &str)]) -> Vec<String> {
        let (list, _) = self.shared.store.list("v1", "services", Some(namespace));
        list.iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s["metadata"]["labels"][*k].as_str() == Some(*v))
            })
            .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Makes the service proxy for `namespace`/`service` forward to `target`.
    pub fn register(&self, namespace: &str, service: &str, target: SocketAddr) {
        self.shared
            .backends()
            .insert((namespace.to_owned(), service.to_owned()), target);
    }

    /// Forgets the backend of `namespace`/`service` (the proxy then answers 503).
    pub fn unregister(&self, namespace: &str, service: &str) {
        self.shared
            .backends()
            .remove(&(namespace.to_owned(), service.to_owned()));
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for KubeStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStandIn")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Drop for KubeStandIn {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
