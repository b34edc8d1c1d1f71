//! The service proxy, `/api/v1/namespaces/{ns}/services/{name}[:{port}]/proxy/{path}`: any
//! method, query and body, forwarded over plain HTTP to the backend registered for the
//! service.

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};

use super::key::ObjectKey;
use super::resources;
use super::route::ProxyPath;
use super::server::{BODY_LIMIT, Shared};
use super::status::ApiError;

/// Headers that belong to one hop, or to the API server rather than the backend.
fn forwarded(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "authorization"
    )
}

/// Forwards `req` to the service's backend; 404 for a service that neither exists nor has a
/// backend, 503 for one without a backend or whose backend cannot be reached.
pub(crate) async fn service(shared: &Shared, p: ProxyPath, req: Request) -> Response {
    match forward(shared, p, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward(shared: &Shared, p: ProxyPath, req: Request) -> Result<Response, ApiError> {
    let backend = shared
        .backends()
        .get(&(p.namespace.clone(), p.name.clone()))
        .copied();
    let Some(addr) = backend else {
        let key = ObjectKey::new("v1", "services", Some(&p.namespace), &p.name);
        let rt = resources::find("v1", "services").ok_or_else(ApiError::no_route)?;
        if shared.store.get(&key).is_none() {
            return Err(ApiError::not_found(rt, &p.name));
        }
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service \"{}\"", p.name),
        ));
    };
    // The port must be one the Service defines, by number or name (the API server's
    // `ResourceLocation` for services: "no service port %q found for service %q").
    let key = ObjectKey::new("v1", "services", Some(&p.namespace), &p.name);
    if let (Some(port), Some(svc)) = (&p.port, shared.store.get(&key)) {
        let defined = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|sp| {
                sp["name"].as_str() == Some(port.as_str())
                    || sp["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port.as_str())
            });
        if !defined {
            return Err(ApiError::new(
                503,
                "ServiceUnavailable",
                format!(
                    "no service port \"{port}\" found for service \"{}\"",
                    p.name
                ),
            ));
        }
    }
    let (parts, body) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("http://{addr}{}{query}", p.rest);
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let mut out = shared.http.request(parts.method, &url).body(body);
    for (k, v) in parts.headers.iter().filter(|(k, _)| forwarded(k)) {
        out = out.header(k, v);
    }
    let unreachable = |e: reqwest::Error| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: {e}"),
        )
    };
    let resp = out.send().await.map_err(unreachable)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(unreachable)?;
    let mut reply = Response::new(Body::from(bytes));
    *reply.status_mut() = status;
    for (k, v) in headers.iter().filter(|(k, _)| forwarded(k)) {
        reply.headers_mut().append(k, v.clone());
    }
    Ok(reply)
}
