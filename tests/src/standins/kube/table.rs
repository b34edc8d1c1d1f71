//! Server-side printing: the `meta.k8s.io/v1` `Table` that kubectl asks for with
//! `Accept: application/json;as=Table;…`, with the columns the real server prints for each
//! served type (kubectl would otherwise show only NAME and AGE).

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::resources::ResourceType;

/// Whether the client asked for a Table.
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

type Cell = fn(&Value) -> Value;

/// (name, type, priority: 0 always shown, 1 with `-o wide`, the cell).
type Column = (&'static str, &'static str, u8, Cell);

fn name(o: &Value) -> Value {
    o["metadata"]["name"].clone()
}

fn age(o: &Value) -> Value {
    let created = o["metadata"]["creationTimestamp"].as_str().and_then(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    });
    let Some(created) = created else {
        return json!("<unknown>");
    };
    let secs = (time::OffsetDateTime::now_utc() - created)
        .whole_seconds()
        .max(0);
    json!(human_duration(secs))
}

/// Ages as kubectl prints them: `42s`, `3m12s`, `25m`, `2h5m`, `13h`, `4d`.
fn human_duration(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn int(v: &Value) -> Value {
    json!(v.as_i64().unwrap_or(0))
}

fn count(v: &Value) -> Value {
    json!(v.as_object().map_or(0, serde_json::Map::len))
}

fn or_none(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if !s.is_empty() => json!(s),
        _ => json!("<none>"),
    }
}

fn pod_ready(o: &Value) -> Value {
    let statuses = o["status"]["containerStatuses"].as_array();
    let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    json!(format!("{ready}/{total}"))
}

fn deployment_ready(o: &Value) -> Value {
    let ready = o["status"]["readyReplicas"].as_i64().unwrap_or(0);
    json!(format!(
        "{ready}/{}",
        o["spec"]["replicas"].as_i64().unwrap_or(1)
    ))
}

fn ports(o: &Value) -> Value {
    let list: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            format!("{}/{proto}", p["port"])
        })
        .collect();
    or_none(&json!(list.join(",")))
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let mut cols: Vec<Column> = vec![("Name", "string", 0, name)];
    let more: Vec<Column> = match rt.plural {
        "pods" => vec![
            ("Ready", "string", 0, pod_ready),
            ("Status", "string", 0, |o| o["status"]["phase"].clone()),
            ("Restarts", "string", 0, |_| json!("0")),
            ("Age", "string", 0, age),
            ("IP", "string", 1, |o| or_none(&o["status"]["podIP"])),
            ("Node", "string", 1, |o| or_none(&o["spec"]["nodeName"])),
        ],
        "deployments" => vec![
            ("Ready", "string", 0, deployment_ready),
            ("Up-to-date", "integer", 0, |o| {
                int(&o["status"]["updatedReplicas"])
            }),
            ("Available", "integer", 0, |o| {
                int(&o["status"]["availableReplicas"])
            }),
            ("Age", "string", 0, age),
        ],
        "services" => vec![
            ("Type", "string", 0, |o| {
                json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP"))
            }),
            ("Cluster-IP", "string", 0, |o| {
                or_none(&o["spec"]["clusterIP"])
            }),
            ("External-IP", "string", 0, |_| json!("<none>")),
            ("Port(s)", "string", 0, ports),
            ("Age", "string", 0, age),
        ],
        "configmaps" => vec![
            ("Data", "integer", 0, |o| {
                json!(
                    count(&o["data"]).as_u64().unwrap_or(0)
                        + count(&o["binaryData"]).as_u64().unwrap_or(0)
                )
            }),
            ("Age", "string", 0, age),
        ],
        "secrets" => vec![
            ("Type", "string", 0, |o| {
                json!(o["type"].as_str().unwrap_or("Opaque"))
            }),
            ("Data", "integer", 0, |o| count(&o["data"])),
            ("Age", "string", 0, age),
        ],
        "namespaces" => vec![
            ("Status", "string", 0, |_| json!("Active")),
            ("Age", "string", 0, age),
        ],
        "horizontalpodautoscalers" => vec![
            ("Reference", "string", 0, |o| {
                let r = &o["spec"]["scaleTargetRef"];
                json!(format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                ))
            }),
            ("MinPods", "string", 0, |o| {
                json!(o["spec"]["minReplicas"].as_i64().unwrap_or(1).to_string())
            }),
            ("MaxPods", "integer", 0, |o| int(&o["spec"]["maxReplicas"])),
            ("Replicas", "integer", 0, |o| {
                int(&o["status"]["currentReplicas"])
            }),
            ("Age", "string", 0, age),
        ],
        _ => vec![("Age", "string", 0, age)],
    };
    cols.extend(more);
    cols
}

/// `objects` as a Table; `include_object` is the `includeObject` parameter
/// (`None`, `Metadata` (default) or `Object`).
pub(crate) fn render(
    rt: &ResourceType,
    objects: &[Value],
    list_meta: Value,
    include_object: Option<&str>,
) -> Value {
    let cols = columns(rt);
    let defs: Vec<Value> = cols
        .iter()
        .map(|(n, t, p, _)| {
            let format = if *n == "Name" { "name" } else { "" };
            json!({"name": n, "type": t, "format": format, "description": "", "priority": p})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|(_, _, _, f)| f(o)).collect();
            let object = match include_object {
                Some("None") => Value::Null,
                Some("Object") => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(1500), "25m");
        assert_eq!(human_duration(7500), "125m");
        assert_eq!(human_duration(14700), "4h5m");
        assert_eq!(human_duration(4 * 86400), "4d");
    }
}
