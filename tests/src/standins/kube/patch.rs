//! PATCH, by `Content-Type`: server-side apply (`application/apply-patch+yaml`, whose body
//! kube-rs and kubectl send as JSON), JSON merge patch (RFC 7386; strategic merge patch is
//! served as a merge patch) and JSON patch (RFC 6902).

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use super::apply;
use super::handlers::{Call, ok};
use super::meta;
use super::status::{ApiError, ApiResult, json_response};
use super::write;

/// The patch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/apply-patch+yaml`.
    Apply,
    /// `application/merge-patch+json` and `application/strategic-merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
}

/// The patch format of a request; 415 for anything else.
pub(crate) fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    match mime {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchType::Merge)
        }
        "application/json-patch+json" => Ok(PatchType::Json),
        _ => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct:?})"
            ),
        )),
    }
}

/// `doc` with a merge or JSON patch applied (apply bodies are merged).
pub(crate) fn patched(kind: PatchType, doc: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    match kind {
        PatchType::Apply | PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut out, &patch);
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut out, &patch).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
    }
    Ok(out)
}

/// PATCH on an object.
pub(crate) fn serve(call: &Call<'_>, name: &str) -> ApiResult {
    let rt = call.rt;
    let kind = patch_type(call.headers)?;
    if kind == PatchType::Apply {
        return server_side_apply(call, name);
    }
    let out = call
        .shared
        .store
        .upsert(&call.key(name), call.mode(), |old| {
            let old = old.ok_or_else(|| ApiError::not_found(rt, name))?;
            let mut doc = patched(kind, old, &call.body)?;
            write::check_body(rt, call.namespace, &mut doc)?;
            write::check_name(&mut doc, name)?;
            write::check_precondition(rt, old, &doc)?;
            Ok(write::main_resource(rt, Some(old), doc, false))
        })?;
    ok(&out.object)
}

fn server_side_apply(call: &Call<'_>, name: &str) -> ApiResult {
    let rt = call.rt;
    let manager = call
        .params
        .field_manager
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                "fieldManager: Required value: is required for apply patch",
            )
        })?;
    let mut applied = write::parse_object(&call.body)?;
    write::check_body(rt, call.namespace, &mut applied)?;
    write::check_name(&mut applied, name)?;
    meta::validate_name(rt, name)?;
    let precondition = applied.clone();
    write::strip_server_set(&mut applied);
    if let Some(m) = applied.as_object_mut() {
        m.remove("status");
    }
    let api_version = rt.api_version();
    let out = call
        .shared
        .store
        .upsert(&call.key(name), call.mode(), |old| {
            if let Some(o) = old {
                write::check_precondition(rt, o, &precondition)?;
            }
            let new = apply::apply(old, &applied, manager, &api_version);
            Ok(write::main_resource(rt, old, new, true))
        })?;
    let code = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(code, &out.object))
}
