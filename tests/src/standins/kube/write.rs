//! What the API server does to a written object before storing it: checks the body against
//! the URL, drops fields clients may not set, keeps `.status` out of main-resource writes,
//! and fills the few defaults that clients read back.

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::meta::{self, remove_meta, set_meta};
use super::resources::{ResourceType, Subresource};
use super::status::ApiError;

/// Metadata a client cannot set on create.
const SERVER_SET: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// 415 for request bodies that are not JSON (kubectl sends protobuf for some built-in types
/// and falls back to JSON on 415, as with a server that has no protobuf codec).
pub(crate) fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.is_empty() || mime == "application/json" || mime == "*/*" {
        return Ok(());
    }
    Err(ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {mime})"
        ),
    ))
}

/// Parses a JSON object body; 400 otherwise.
pub(crate) fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(v)
}

/// Checks `kind`/`apiVersion` (filled in when absent, 400 when different) and the namespace
/// (taken from the URL; 400 when the body names another).
pub(crate) fn check_body(
    rt: &ResourceType,
    namespace: Option<&str>,
    body: &mut Value,
) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    let api_version = rt.api_version();
    match body.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => body["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match body.get("kind").and_then(Value::as_str) {
        None | Some("") => body["kind"] = json!(rt.kind),
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
    }
    match (namespace, meta::meta_str(body, "namespace")) {
        (Some(ns), None | Some("")) => set_meta(body, "namespace", json!(ns)),
        (Some(ns), Some(b)) if b != ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (None, _) => {
            remove_meta(body, "namespace");
        }
        _ => {}
    }
    Ok(())
}

/// Checks the body's name against the URL's (filled in when absent; 400 when different).
pub(crate) fn check_name(body: &mut Value, url_name: &str) -> Result<(), ApiError> {
    match meta::meta_str(body, "name") {
        None | Some("") => set_meta(body, "name", json!(url_name)),
        Some(n) if n == url_name => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({url_name})"
            )));
        }
    }
    Ok(())
}

/// Removes metadata the server sets on create.
pub(crate) fn strip_server_set(body: &mut Value) {
    for f in SERVER_SET {
        remove_meta(body, f);
    }
}

/// Finishes a main-resource write: `.status` stays as stored (as it starts on create) for
/// types with a status subresource, stored `managedFields` are kept unless `keep_fields` (an
/// apply wrote its own), and defaults are filled.
pub(crate) fn main_resource(
    rt: &ResourceType,
    old: Option<&Value>,
    mut new: Value,
    keep_fields: bool,
) -> Value {
    if rt.has(Subresource::Status) {
        let status = match old {
            Some(o) => o.get("status").cloned(),
            None if rt.plural == "pods" => Some(json!({"phase": "Pending"})),
            None => None,
        };
        set_or_remove(&mut new, "status", status);
    }
    if !keep_fields {
        let fields = old
            .and_then(|o| o.get("metadata")?.get("managedFields"))
            .cloned();
        match fields {
            Some(f) => set_meta(&mut new, "managedFields", f),
            None => {
                remove_meta(&mut new, "managedFields");
            }
        }
    }
    defaults(rt, old, &mut new);
    new
}

/// The stored object with only `.status` taken from `new`.
pub(crate) fn status_only(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    set_or_remove(&mut out, "status", new.get("status").cloned());
    out
}

/// 409 when `body` carries a `resourceVersion` that is not the stored one.
pub(crate) fn check_precondition(
    rt: &ResourceType,
    stored: &Value,
    body: &Value,
) -> Result<(), ApiError> {
    match meta::meta_str(body, "resourceVersion") {
        Some(rv) if !rv.is_empty() && Some(rv) != meta::meta_str(stored, "resourceVersion") => {
            Err(ApiError::conflict(rt, meta::name(stored)))
        }
        _ => Ok(()),
    }
}

fn set_or_remove(obj: &mut Value, field: &str, v: Option<Value>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match v {
        Some(v) => map.insert(field.to_owned(), v),
        None => map.remove(field),
    };
}

/// Server defaults that clients read back: a Deployment's `replicas`; a Service's type,
/// ports' protocol and target port, and its cluster IP (allocated once, kept on updates that
/// leave it out); a Namespace's phase.
fn defaults(rt: &ResourceType, old: Option<&Value>, obj: &mut Value) {
    let namespace = meta::meta_str(obj, "namespace").unwrap_or("").to_owned();
    let name = meta::name(obj).to_owned();
    if rt.plural == "namespaces" && obj.get("status").is_none_or(Value::is_null) {
        obj["status"] = json!({"phase": "Active"});
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match rt.plural {
        "deployments" => {
            spec.entry("replicas").or_insert(json!(1));
        }
        "services" => {
            spec.entry("type").or_insert(json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert(json!("None"));
            for port in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = port.as_object_mut() {
                    p.entry("protocol").or_insert(json!("TCP"));
                    if let Some(n) = p.get("port").cloned() {
                        p.entry("targetPort").or_insert(n);
                    }
                }
            }
            if spec.get("clusterIP").is_none_or(Value::is_null) {
                let kept = old
                    .map(|o| o["spec"]["clusterIP"].clone())
                    .filter(Value::is_string);
                let ip = kept.unwrap_or_else(|| json!(cluster_ip(&namespace, &name)));
                spec.insert("clusterIPs".into(), json!([ip]));
                spec.insert("clusterIP".into(), ip);
            }
        }
        _ => {}
    }
}

/// A stable address in 10.96.0.0/16 for a Service (as if allocated once).
fn cluster_ip(namespace: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    format!("10.96.{}.{}", d[0], d[1].max(1))
}
