//! The HTTP front: shared state, the router, and the coordinator's REST resources
//! (`/v1/info`, `/v1/info/state`, `/v1/cluster`, `/v1/query`, `/v1/node`). The client
//! protocol lives in `statement`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::Value;

use super::PrestoOptions;
use super::coordinator::{Coordinator, NodeState};
use super::durations::AirDuration;
use super::failure::Failure;
use super::model::{self, NodeVersion, ServerInfo};
use super::security::{Security, Unauthorized};
use super::statement;

/// Largest statement or request body accepted.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// State shared by the handlers, the expiry job and workloads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub opts: PrestoOptions,
    /// The bound address; `self` URIs name it.
    pub addr: SocketAddr,
    pub started: Instant,
    coordinator: Mutex<Coordinator>,
    /// What the pod's configuration enforces (none without [`PrestoOptions::pod`]).
    pub security: Option<Arc<Security>>,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `http-server.http.port`.
    Http,
    /// `http-server.https.port`.
    Https,
}

/// Who authenticated an HTTPS request.
#[derive(Debug, Clone)]
pub(crate) struct Principal(pub String);

impl Shared {
    /// Fresh state for a coordinator listening on `addr`.
    pub fn new(opts: PrestoOptions, addr: SocketAddr, security: Option<Arc<Security>>) -> Self {
        let coordinator =
            Coordinator::new(opts.active_workers, opts.max_history, opts.min_expire_age);
        Shared {
            opts,
            addr,
            started: Instant::now(),
            coordinator: Mutex::new(coordinator),
            security,
        }
    }

    /// The tracker, moved along to now, and that now.
    pub fn coordinator(&self) -> (MutexGuard<'_, Coordinator>, Instant) {
        let mut c = self
            .coordinator
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        c.advance(now);
        (c, now)
    }

    /// `http://127.0.0.1:PORT`, the coordinator's own URI.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A text/plain response.
pub(crate) fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        body.to_owned(),
    )
        .into_response()
}

fn json(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// The stand-in's router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/info/state", get(get_state).put(put_state))
        .route("/v1/info/coordinator", get(|| async { StatusCode::OK }))
        .route("/v1/cluster", get(cluster))
        .route("/v1/query", get(list_queries))
        .route("/v1/query/{id}", get(query_info).delete(cancel_query))
        .route("/v1/query/{id}/killed", put(kill_query))
        .route("/v1/node", get(nodes))
        .route("/v1/statement", axum::routing::post(statement::post))
        .route(
            "/v1/statement/{phase}/{id}/{token}",
            get(statement::get).delete(statement::delete),
        )
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authenticate,
        ))
        .with_state(shared)
}

/// airlift's `AuthenticationFilter`: with password authentication, every request over HTTPS
/// needs valid credentials (401 and `WWW-Authenticate: Basic realm="Presto"` otherwise);
/// plain HTTP is passed on unauthenticated.
async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let https = req.extensions().get::<Transport>() == Some(&Transport::Https);
    if https && let Some(security) = shared.security.as_ref().filter(|s| s.requires_password()) {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match security.authenticate(authorization).await {
            Ok(principal) => {
                req.extensions_mut().insert(Principal(principal));
            }
            Err(Unauthorized(message)) => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [
                        (header::WWW_AUTHENTICATE, "Basic realm=\"Presto\""),
                        (header::CONTENT_TYPE, "text/plain"),
                    ],
                    message,
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// Serves `app` over TLS on `listener` until `stop`, one task per connection.
pub(crate) async fn serve_https(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn info(State(shared): State<Arc<Shared>>) -> Response {
    let info = ServerInfo {
        node_version: NodeVersion {
            version: shared.opts.version.clone(),
        },
        environment: shared.opts.environment.clone(),
        coordinator: true,
        starting: false,
        uptime: AirDuration(shared.started.elapsed()),
    };
    json(serde_json::to_value(info).unwrap_or(Value::Null))
}

async fn get_state(State(shared): State<Arc<Shared>>) -> Response {
    let (c, _) = shared.coordinator();
    json(Value::from(c.node_state.name()))
}

/// `ServerInfoResource.updateState`: SHUTTING_DOWN is final; ACTIVE and INACTIVE are
/// refused once it is requested.
async fn put_state(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let Ok(requested) = serde_json::from_slice::<String>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Invalid state: expected a JSON string",
        );
    };
    let (mut c, _) = shared.coordinator();
    let state = match requested.as_str() {
        "SHUTTING_DOWN" => NodeState::ShuttingDown,
        "ACTIVE" => NodeState::Active,
        "INACTIVE" => NodeState::Inactive,
        other => return text(StatusCode::BAD_REQUEST, &format!("Invalid state {other}")),
    };
    if c.node_state == NodeState::ShuttingDown && state != NodeState::ShuttingDown {
        return text(StatusCode::BAD_REQUEST, "Cluster is shutting down");
    }
    c.node_state = state;
    text(StatusCode::OK, "")
}

async fn cluster(State(shared): State<Arc<Shared>>) -> Response {
    json(shared.cluster_stats_json())
}

impl Shared {
    /// What `/v1/cluster` answers now.
    pub fn cluster_stats_json(&self) -> Value {
        let (c, now) = self.coordinator();
        serde_json::to_value(c.cluster_stats(now)).unwrap_or(Value::Null)
    }
}

/// `GET /v1/query[?state=X][&limit=N]`.
async fn list_queries(
    State(shared): State<Arc<Shared>>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Response {
    let limit = match params.get("limit").map(|l| l.parse::<i64>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n as usize),
        Some(Ok(n)) => {
            let msg = format!("Parameter 'limit' for getAllQueryInfo must be positive. Got {n}.");
            return text(StatusCode::BAD_REQUEST, &msg);
        }
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Parameter 'limit' must be an integer",
            );
        }
    };
    let wanted = match params.get("state").map(|s| model_state(s)) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(msg)) => return text(StatusCode::BAD_REQUEST, &msg),
    };
    let base = shared.base();
    let (c, now) = shared.coordinator();
    let mut rows: Vec<_> = c
        .queries()
        .filter(|q| wanted.is_none_or(|w| w == Some(q.state)))
        .collect();
    // Presto sorts only when the limit cuts the list; otherwise the order is unspecified.
    if let Some(limit) = limit
        && limit < rows.len()
    {
        rows.sort_by_key(|q| (model::list_order(q.state), q.created, q.seq));
        rows.truncate(limit);
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|q| model::basic_query_info(q, now, &base))
        .collect();
    json(Value::Array(rows))
}

fn model_state(s: &str) -> Result<Option<super::query::QueryState>, String> {
    super::query::QueryState::parse(s)
        .map_err(|()| format!("No enum constant com.facebook.presto.execution.QueryState.{s}"))
}

/// `GET /v1/query/{id}`: QueryInfo, or 410 once expired (or never known).
async fn query_info(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let base = shared.base();
    let (c, now) = shared.coordinator();
    match c.get(&id) {
        Some(q) => json(model::query_info(q, now, &base)),
        None => StatusCode::GONE.into_response(),
    }
}

/// `DELETE /v1/query/{id}`: cancels; 204 whatever the query's state.
async fn cancel_query(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let (mut c, now) = shared.coordinator();
    c.abort(&id, Failure::canceled(), now);
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /v1/query/{id}/killed` (body: a message): 200, 409 if already done, 410 if unknown.
async fn kill_query(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let message = String::from_utf8_lossy(&body);
    let (mut c, now) = shared.coordinator();
    match c.abort(&id, Failure::killed(message.trim()), now) {
        None => StatusCode::GONE.into_response(),
        Some(false) => StatusCode::CONFLICT.into_response(),
        Some(true) => StatusCode::OK.into_response(),
    }
}

async fn nodes(State(shared): State<Arc<Shared>>) -> Response {
    json(model::node_stats(
        shared.opts.active_workers,
        shared.started.elapsed(),
    ))
}
