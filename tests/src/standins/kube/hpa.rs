//! The HorizontalPodAutoscaler controller, without metrics: as the real one does when it
//! has none, it only keeps the target Deployment's replicas within `[minReplicas,
//! maxReplicas]` (leaving 0 alone: autoscaling paused), and reports current and desired
//! replicas in `.status`. Its writes are a controller's: not counted as client writes.

use serde_json::{Value, json};

use super::key::ObjectKey;
use super::meta::{self, meta_str};
use super::server::Shared;
use super::status::ApiError;
use super::store::Mode;

/// One pass over every HPA.
pub(crate) fn reconcile_all(shared: &Shared) {
    let (hpas, _) = shared
        .store
        .list("autoscaling/v2", "horizontalpodautoscalers", None);
    for h in &hpas {
        reconcile(shared, h);
    }
}

fn gone() -> ApiError {
    ApiError::new(404, "NotFound", "gone")
}

fn reconcile(shared: &Shared, h: &Value) {
    let target = &h["spec"]["scaleTargetRef"];
    let (Some("Deployment"), Some(name)) = (target["kind"].as_str(), target["name"].as_str())
    else {
        return;
    };
    let ns = meta_str(h, "namespace");
    let key = ObjectKey::new("apps/v1", "deployments", ns, name);
    let Some(d) = shared.store.get(&key) else {
        return;
    };
    let current = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let min = h["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = h["spec"]["maxReplicas"].as_i64().unwrap_or(min).max(min);
    let desired = if current == 0 {
        0
    } else {
        current.clamp(min, max)
    };
    let mut scaled = false;
    if desired != current {
        scaled = shared
            .store
            .upsert(&key, Mode::Uncounted, |cur| {
                let mut new = cur.ok_or_else(gone)?.clone();
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".into(), json!(desired));
                }
                Ok(new)
            })
            .is_ok();
    }
    let running = d["status"]["replicas"].as_i64().unwrap_or(0);
    let status = &h["status"];
    if !scaled
        && status["currentReplicas"] == json!(running)
        && status["desiredReplicas"] == json!(desired)
    {
        return;
    }
    let hpa_key = ObjectKey::new(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        ns,
        meta::name(h),
    );
    let _ = shared.store.upsert(&hpa_key, Mode::Uncounted, |cur| {
        let mut new = cur.ok_or_else(gone)?.clone();
        let mut s = new["status"].as_object().cloned().unwrap_or_default();
        s.insert("currentReplicas".into(), json!(running));
        s.insert("desiredReplicas".into(), json!(desired));
        if scaled {
            s.insert("lastScaleTime".into(), json!(meta::now_rfc3339()));
        }
        new["status"] = Value::Object(s);
        Ok(new)
    });
}
