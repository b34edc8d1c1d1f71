//! The HTTP front: shared state, the router, and the order a request goes through (proxy
//! paths first, then latency and injected faults, then discovery or the resource verbs).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::controller::PodEvent;
use super::discovery;
use super::drain::{self, DrainEvent};
use super::faults::Faults;
use super::handlers;
use super::key::ObjectKey;
use super::logs::{self, PodLogs};
use super::proxy;
use super::route::Route;
use super::status::{ApiError, ApiResult, json_response};
use super::store::{Mode, Store};

/// Largest request body accepted (the API server's limit is 3 MiB).
pub(crate) const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// State shared by the server, the watches and the controller.
pub(crate) struct Shared {
    /// The objects.
    pub store: Store,
    /// Injected faults.
    pub faults: Faults,
    /// Permissions.
    pub rbac: super::authz::Rbac,
    /// Becomes `true` when the stand-in shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// `127.0.0.1:PORT`, for `/api`'s `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// Client for the service proxy.
    pub http: reqwest::Client,
    /// What the pods' containers have written.
    pub logs: PodLogs,
    /// Presto tasks running on the Pods.
    pub tasks: super::termination::Tasks,
    drains: Mutex<Vec<DrainEvent>>,
    drained: Mutex<HashSet<(String, String)>>,
    pod_events: Mutex<Vec<PodEvent>>,
    backends: Mutex<HashMap<(String, String), SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Fresh state, with the namespaces every cluster has.
    pub fn new(server_address: String, shutdown: watch::Receiver<bool>) -> Self {
        let store = Store::new();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let key = ObjectKey::new("v1", "namespaces", None, ns);
            let _ = store.upsert(&key, Mode::Uncounted, |_| {
                Ok(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                          "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                )
            });
        }
        Self {
            store,
            faults: Faults::default(),
            rbac: super::authz::Rbac::default(),
            shutdown,
            server_address,
            // Never through an environment proxy: backends are on loopback.
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
            logs: PodLogs::default(),
            tasks: super::termination::Tasks::default(),
            drains: Mutex::default(),
            drained: Mutex::default(),
            pod_events: Mutex::default(),
            backends: Mutex::default(),
        }
    }

    /// Drain requests seen by the pod proxy.
    pub fn drains(&self) -> MutexGuard<'_, Vec<DrainEvent>> {
        lock(&self.drains)
    }

    /// Pods told to shut down, by (namespace, pod).
    pub fn drained(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        lock(&self.drained)
    }

    /// Pods created and deleted by the controller.
    pub fn pod_events(&self) -> MutexGuard<'_, Vec<PodEvent>> {
        lock(&self.pod_events)
    }

    /// Service proxy targets, by (namespace, service).
    pub fn backends(&self) -> MutexGuard<'_, HashMap<(String, String), SocketAddr>> {
        lock(&self.backends)
    }
}

/// The stand-in's router; every path goes through [`dispatch`].
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let route = Route::parse(req.uri().path());
    let sub_resource = match &route {
        Route::ServiceProxy(p) => Some(("services/proxy", p.namespace.clone(), p.name.clone())),
        Route::PodLog(ns, pod) => Some(("pods/log", ns.clone(), pod.clone())),
        _ => None,
    };
    if let Some((resource, ns, name)) = sub_resource
        && let Err(e) = shared.rbac.check(
            super::authz::verb(req.method(), true, None),
            "",
            resource,
            Some(&name),
            Some(&ns),
        )
    {
        return e.into_response();
    }
    match route {
        Route::ServiceProxy(p) => proxy::service(&shared, p, req).await,
        Route::PodProxy(p) => drain::pod(&shared, p, req).await,
        Route::PodLog(ns, pod) => logs::serve(&shared, &ns, &pod, req.uri().query())
            .unwrap_or_else(IntoResponse::into_response),
        route => api(&shared, route, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

async fn api(shared: &Arc<Shared>, route: Route, req: Request) -> ApiResult {
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = shared.faults.take_failure() {
        return Err(ApiError::for_code(code));
    }
    let ok = |v: serde_json::Value| Ok(json_response(StatusCode::OK, &v));
    match route {
        Route::Version => ok(discovery::version()),
        Route::CoreVersions => ok(discovery::core_versions(&shared.server_address)),
        Route::Groups => ok(discovery::groups()),
        Route::Group(g) => discovery::group(&g).map_or_else(|| Err(ApiError::no_route()), ok),
        Route::Resources(v) => {
            discovery::resource_list(&v).map_or_else(|| Err(ApiError::no_route()), ok)
        }
        Route::AccessReview => {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, BODY_LIMIT)
                .await
                .map_err(|_| ApiError::new(413, "RequestEntityTooLarge", "too large"))?;
            super::authz::self_subject_access_review(&shared.rbac, &parts.method, &body)
        }
        Route::Resource(path) => {
            let (parts, body) = req.into_parts();
            let resource = match path.sub {
                Some(super::resources::Subresource::Status) => format!("{}/status", path.rt.plural),
                Some(super::resources::Subresource::Scale) => format!("{}/scale", path.rt.plural),
                _ => path.rt.plural.to_owned(),
            };
            shared.rbac.check(
                super::authz::verb(&parts.method, path.name.is_some(), parts.uri.query()),
                path.rt.group,
                &resource,
                path.name.as_deref(),
                path.namespace.as_deref(),
            )?;
            if is_write(&parts.method) && shared.faults.take_conflict() {
                return Err(ApiError::conflict(
                    path.rt,
                    path.name.as_deref().unwrap_or(""),
                ));
            }
            let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
                ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: limit is {BODY_LIMIT}"),
                )
            })?;
            handlers::serve(
                shared,
                &parts.method,
                &parts.uri,
                &parts.headers,
                path,
                body,
            )
        }
        Route::OpenApi
        | Route::Unknown
        | Route::ServiceProxy(_)
        | Route::PodProxy(_)
        | Route::PodLog(..) => Err(ApiError::no_route()),
    }
}
