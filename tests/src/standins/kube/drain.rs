//! The pod proxy, `/api/v1/namespaces/{ns}/pods/{name}[:{port}]/proxy/{path}`, answering as
//! the Presto server in the pod would for graceful shutdown: `PUT /v1/info/state` with
//! `"SHUTTING_DOWN"` starts draining (200, `text/plain`), `GET /v1/info/state` reports
//! `"ACTIVE"` or `"SHUTTING_DOWN"`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::key::ObjectKey;
use super::resources;
use super::route::ProxyPath;
use super::server::{BODY_LIMIT, Shared};
use super::status::ApiError;

/// A `PUT /v1/info/state` that reached a pod through the pod proxy.
#[derive(Clone, Debug)]
pub struct DrainEvent {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// The request body as sent, e.g. `"SHUTTING_DOWN"` with the quotes.
    pub body: String,
    /// When.
    pub at: Instant,
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Serves a pod proxy request; 404 `Status` if the pod does not exist.
pub(crate) async fn pod(shared: &Shared, p: ProxyPath, req: Request) -> Response {
    let key = ObjectKey::new("v1", "pods", Some(&p.namespace), &p.name);
    if shared.store.get(&key).is_none() {
        return match resources::find("v1", "pods") {
            Some(rt) => ApiError::not_found(rt, &p.name).into_response(),
            None => ApiError::no_route().into_response(),
        };
    }
    let id = (p.namespace.clone(), p.name.clone());
    let (parts, body) = req.into_parts();
    match (parts.method, p.rest.as_str()) {
        (Method::GET, "/v1/info/state") => {
            let state = if shared.drained().contains(&id) {
                "SHUTTING_DOWN"
            } else {
                "ACTIVE"
            };
            reply(StatusCode::OK, "application/json", format!("\"{state}\""))
        }
        (Method::PUT, "/v1/info/state") => {
            let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "unreadable body".into(),
                );
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            shared.drains().push(DrainEvent {
                namespace: p.namespace,
                pod: p.name,
                body: text.clone(),
                at: Instant::now(),
            });
            let draining = shared.drained().contains(&id);
            match serde_json::from_str::<String>(text.trim()).as_deref() {
                Ok("SHUTTING_DOWN") => {
                    shared.drained().insert(id);
                    reply(StatusCode::OK, "text/plain", String::new())
                }
                Ok(s @ ("ACTIVE" | "INACTIVE")) if draining => reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!(
                        "Invalid state transition attempted from current state SHUTTING_DOWN to {s}"
                    ),
                ),
                Ok("ACTIVE" | "INACTIVE") => reply(StatusCode::OK, "text/plain", String::new()),
                _ => reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("Invalid state {text}"),
                ),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "404 Not Found".into()),
    }
}
