//! The `status` and `scale` subresources.
//!
//! Status writes change only `.status` (so never `generation`); scale reads and writes
//! `.spec.replicas` through an `autoscaling/v1` `Scale`.

use serde_json::{Value, json};

use super::handlers::{Call, fetch, ok};
use super::patch::{PatchType, patch_type, patched};
use super::status::{ApiError, ApiResult};
use super::write;

/// A write to a subresource: its new view, whole or as a patch of the current one.
enum Change<'a> {
    Put(Value),
    Patch(PatchType, &'a [u8]),
}

impl Change<'_> {
    /// The method's change; `None` for GET.
    fn of<'a>(call: &'a Call<'_>, method: &str) -> Result<Option<Change<'a>>, ApiError> {
        match method {
            "GET" => Ok(None),
            "PUT" => Ok(Some(Change::Put(write::parse_object(&call.body)?))),
            "PATCH" => Ok(Some(Change::Patch(patch_type(call.headers)?, &call.body))),
            other => Err(ApiError::method_not_allowed(other)),
        }
    }

    fn onto(&self, view: &Value) -> Result<Value, ApiError> {
        match self {
            Change::Put(v) => Ok(v.clone()),
            Change::Patch(kind, body) => patched(*kind, view, body),
        }
    }
}

/// GET, PUT or PATCH on `…/{name}/status`.
pub(crate) fn status(call: &Call<'_>, name: &str, method: &str) -> ApiResult {
    let rt = call.rt;
    let Some(change) = Change::of(call, method)? else {
        return ok(&fetch(call, name)?);
    };
    let out = call
        .shared
        .store
        .upsert(&call.key(name), call.mode(), |old| {
            let old = old.ok_or_else(|| ApiError::not_found(rt, name))?;
            let mut new = change.onto(old)?;
            write::check_body(rt, call.namespace, &mut new)?;
            write::check_name(&mut new, name)?;
            write::check_precondition(rt, old, &new)?;
            Ok(write::status_only(old, &new))
        })?;
    ok(&out.object)
}

/// The `Scale` view of a Deployment.
fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// GET, PUT or PATCH on `…/deployments/{name}/scale`.
pub(crate) fn scale(call: &Call<'_>, name: &str, method: &str) -> ApiResult {
    let rt = call.rt;
    let Some(change) = Change::of(call, method)? else {
        return ok(&scale_of(&fetch(call, name)?));
    };
    let out = call
        .shared
        .store
        .upsert(&call.key(name), call.mode(), |old| {
            let old = old.ok_or_else(|| ApiError::not_found(rt, name))?;
            let scale = change.onto(&scale_of(old))?;
            write::check_precondition(rt, old, &scale)?;
            let replicas = scale["spec"]["replicas"]
                .as_i64()
                .filter(|r| *r >= 0)
                .ok_or_else(|| {
                    let got = scale["spec"]["replicas"].to_string();
                    ApiError::invalid(
                        rt,
                        name,
                        "spec.replicas",
                        &got,
                        "must be greater than or equal to 0",
                    )
                })?;
            let mut new = old.clone();
            match new.get_mut("spec").and_then(Value::as_object_mut) {
                Some(spec) => {
                    spec.insert("replicas".into(), json!(replicas));
                }
                None => new["spec"] = json!({"replicas": replicas}),
            }
            Ok(new)
        })?;
    ok(&scale_of(&out.object))
}
