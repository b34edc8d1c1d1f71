//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/{group}` and the resource lists,
//! in the legacy (non-aggregated) shape that every client falls back to.

use serde_json::{Value, json};

use super::resources::{self, ResourceType, Subresource};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`.
pub(crate) fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(g, v)| group_doc(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`, or `None` for a group not served.
pub(crate) fn group(name: &str) -> Option<Value> {
    let (g, v) = resources::groups().into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn entry(rt: &ResourceType) -> Value {
    let mut e = json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": VERBS,
    });
    if !rt.short_names.is_empty() {
        e["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        e["categories"] = json!(rt.categories);
    }
    e
}

fn sub_entry(rt: &ResourceType, sub: Subresource) -> Value {
    let (suffix, kind, verbs): (&str, &str, &[&str]) = match sub {
        Subresource::Status => ("status", rt.kind, &["get", "patch", "update"]),
        Subresource::Scale => ("scale", "Scale", &["get", "patch", "update"]),
        Subresource::Proxy => (
            "proxy",
            if rt.plural == "pods" {
                "PodProxyOptions"
            } else {
                "ServiceProxyOptions"
            },
            &["create", "delete", "get", "patch", "update"],
        ),
        Subresource::Log => ("log", "Pod", &["get"]),
    };
    let mut e = json!({
        "name": format!("{}/{suffix}", rt.plural),
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if sub == Subresource::Scale {
        e["group"] = json!("autoscaling");
        e["version"] = json!("v1");
    }
    e
}

/// `GET /api/v1` or `/apis/{group}/{version}`, or `None` for a version not served.
pub(crate) fn resource_list(api_version: &str) -> Option<Value> {
    if !resources::serves_version(api_version) {
        return None;
    }
    let mut list = Vec::new();
    for rt in resources::RESOURCES
        .iter()
        .filter(|r| r.api_version() == api_version)
    {
        list.push(entry(rt));
        list.extend(rt.subresources.iter().map(|s| sub_entry(rt, *s)));
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version,
        "resources": list,
    }))
}
