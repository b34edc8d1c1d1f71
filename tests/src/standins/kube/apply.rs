//! Server-side apply, simplified: the applied object is merged into the stored one (maps
//! merged key by key, lists and scalars replaced), and each field manager owns the fields it
//! applied, recorded in `metadata.managedFields` as `FieldsV1`. Lists are atomic (no
//! `k:`/`v:` keys) and there are no conflicts between managers (as if `force` were always
//! set: the applier takes the fields it applies from every other manager).
//!
//! As the Kubernetes documentation on Server-Side Apply describes ("Field management",
//! "Transferring ownership"): a field a manager applied before and leaves out now is
//! removed only when no other manager owns it; otherwise it stays, owned by the others.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::meta;

type Path = Vec<String>;

/// Metadata fields the server owns; never part of a manager's field set.
const SERVER_OWNED: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
];

/// The object that results from `manager` applying `applied` to `current` (`None`: create).
pub(crate) fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
) -> Value {
    let owned = owned_paths(applied);
    let mut result = match current {
        None => applied.clone(),
        Some(cur) => {
            let mut result = cur.clone();
            let others = owned_by_others(cur, manager);
            for stale in previously_owned(cur, manager).difference(&owned) {
                if !others.contains(stale) {
                    remove_path(&mut result, stale);
                }
            }
            merge(&mut result, applied);
            result
        }
    };
    let mut entries: Vec<Value> = current
        .and_then(|c| c["metadata"]["managedFields"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !(e["manager"] == manager && e["operation"] == "Apply"))
        .filter_map(|mut e| {
            // Forced: what this manager applies is no longer the others'.
            let mut theirs = BTreeSet::new();
            read_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut theirs);
            let left: BTreeSet<Path> = theirs.difference(&owned).cloned().collect();
            if left.is_empty() {
                return None;
            }
            e["fieldsV1"] = fields_v1(&left);
            Some(e)
        })
        .collect();
    entries.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": meta::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(&owned),
    }));
    meta::set_meta(&mut result, "managedFields", Value::Array(entries));
    result
}

/// Merges `patch` into `target`: objects key by key, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else if let (Some(existing), true) = (t.get_mut(k), v.is_object()) {
            merge(existing, v);
        } else {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// The leaf paths of `obj` a manager owns by applying it.
fn owned_paths(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if !SERVER_OWNED.contains(&mk.as_str()) {
                        leaves(mv, &mut vec!["metadata".into(), mk.clone()], &mut out);
                    }
                }
            }
            _ => leaves(v, &mut vec![k.clone()], &mut out),
        }
    }
    out
}

fn leaves(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The paths `manager`'s last apply owns, read back from `managedFields`.
fn previously_owned(obj: &Value, manager: &str) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    for e in obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if e["manager"] == manager && e["operation"] == "Apply" {
            read_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut out);
        }
    }
    out
}

/// The paths every other entry of `managedFields` owns.
fn owned_by_others(obj: &Value, manager: &str) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    for e in obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if !(e["manager"] == manager && e["operation"] == "Apply") {
            read_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut out);
        }
    }
    out
}

fn read_fields_v1(tree: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(m) = tree.as_object() else {
        return;
    };
    for (k, child) in m {
        let Some(seg) = k.strip_prefix("f:") else {
            continue;
        };
        prefix.push(seg.to_owned());
        if child.as_object().is_none_or(Map::is_empty) {
            out.insert(prefix.clone());
        } else {
            read_fields_v1(child, prefix, out);
        }
        prefix.pop();
    }
}

fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut node = &mut root;
        for seg in p {
            let child = node
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            let Some(next) = child.as_object_mut() else {
                break;
            };
            node = next;
        }
    }
    Value::Object(root)
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "x"}}, "data": data})
    }

    #[test]
    fn fields_left_out_are_removed_others_kept() {
        let first = apply(None, &cm(json!({"a": "1", "b": "2"})), "tether", "v1");
        let mut stored = first.clone();
        stored["data"]["other"] = json!("kept");
        let second = apply(Some(&stored), &cm(json!({"a": "1"})), "tether", "v1");
        assert_eq!(second["data"], json!({"a": "1", "other": "kept"}));
        assert_eq!(second["metadata"]["labels"], json!({"app": "x"}));
        let mf = &second["metadata"]["managedFields"][0];
        assert_eq!(mf["fieldsV1"]["f:data"], json!({"f:a": {}}));
        assert_eq!(
            second["metadata"]["managedFields"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn a_field_another_manager_owns_stays_when_left_out() {
        let first = apply(None, &cm(json!({"a": "1", "b": "2"})), "tether", "v1");
        let handover = apply(Some(&first), &cm(json!({"b": "2"})), "handover", "v1");
        let second = apply(Some(&handover), &cm(json!({"a": "1"})), "tether", "v1");
        assert_eq!(second["data"], json!({"a": "1", "b": "2"}));
        let third = apply(Some(&second), &cm(json!({})), "handover", "v1");
        assert_eq!(third["data"], json!({"a": "1"}), "unowned now: removed");
    }

    #[test]
    fn lists_replace_and_null_removes() {
        let mut t = json!({"spec": {"ports": [1, 2], "x": 1, "y": 2}});
        merge(&mut t, &json!({"spec": {"ports": [3], "x": null}}));
        assert_eq!(t, json!({"spec": {"ports": [3], "y": 2}}));
    }
}
