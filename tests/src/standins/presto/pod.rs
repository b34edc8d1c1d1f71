//! The files a coordinator pod sees, as the kubelet mounts them: the stand-in takes its
//! configuration from the Deployment's pod template and the ConfigMaps and Secrets it
//! names, exactly as a real Presto pod reads its mounted `etc` directory.
//!
//! Followed from Kubernetes "Volumes" and "ConfigMaps": a `configMap` or `secret` volume
//! shows every key as a file, or only its `items` (`key` → `path`); a mount with `subPath`
//! shows one file and is never updated; a directory mount is updated in place when the
//! object changes (the kubelet's sync delay, up to a minute, is not modelled: an update is
//! seen at the next read). A referenced object that does not exist keeps the pod from
//! starting (`CreateContainerConfigError` / `FailedMount`), unless the volume is
//! `optional`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::standins::kube::Objects;

/// Which coordinator: the Deployment (and its namespace) whose pod the stand-in is.
#[derive(Debug, Clone)]
pub struct PodSource {
    /// The Kubernetes stand-in's objects.
    pub objects: Objects,
    /// Namespace.
    pub namespace: String,
    /// The Deployment, e.g. `analytics-coordinator`.
    pub deployment: String,
}

/// One mounted file.
#[derive(Debug, Clone)]
struct Mounted {
    content: Vec<u8>,
    /// `(kind plural, object name, key)` for a directory mount, re-read on refresh; `None`
    /// for a `subPath` mount, fixed at start.
    live: Option<(&'static str, String, String)>,
}

/// The files of the pod's first container, and of its init containers.
#[derive(Debug, Clone, Default)]
pub struct PodFiles {
    files: BTreeMap<String, Mounted>,
    /// The files the init containers saw (what they could copy into shared volumes).
    pub init: BTreeMap<String, Vec<u8>>,
    /// `jvm.config`-style flags are not here: see [`PodFiles::text`] of that file.
    namespace: String,
}

impl PodFiles {
    /// Mounts the Deployment's pod template; an error says what a pod would wait for.
    pub fn mount(src: &PodSource) -> Result<Self, String> {
        let d = src
            .objects
            .get("apps/v1", "deployments", &src.namespace, &src.deployment)
            .ok_or_else(|| format!("Deployment {} does not exist", src.deployment))?;
        let pod = &d["spec"]["template"]["spec"];
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        let mut out = PodFiles {
            namespace: src.namespace.clone(),
            ..PodFiles::default()
        };
        let containers = |key: &str| pod[key].as_array().cloned().unwrap_or_default();
        if let Some(main) = containers("containers").first() {
            for (path, m) in mounts(src, main, &volumes)? {
                out.files.insert(path, m);
            }
        }
        for init in containers("initContainers") {
            for (path, m) in mounts(src, &init, &volumes)? {
                out.init.insert(path, m.content);
            }
        }
        Ok(out)
    }

    /// A file's text, as now (directory mounts re-read from their object).
    pub fn text(&self, src: &PodSource, path: &str) -> Option<String> {
        let m = self.files.get(path)?;
        let bytes = match &m.live {
            Some((plural, name, key)) => {
                read_key(src, &self.namespace, plural, name, key).unwrap_or_default()
            }
            None => m.content.clone(),
        };
        String::from_utf8(bytes).ok()
    }

    /// Whether `path` is mounted.
    pub fn has(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// The mounted paths under `dir`.
    pub fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.files
            .keys()
            .filter(move |p| p.starts_with(dir))
            .map(String::as_str)
    }
}

fn mounts(
    src: &PodSource,
    container: &Value,
    volumes: &BTreeMap<&str, &Value>,
) -> Result<Vec<(String, Mounted)>, String> {
    let mut out = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(name), Some(at)) = (mount["name"].as_str(), mount["mountPath"].as_str()) else {
            continue;
        };
        let volume = volumes
            .get(name)
            .ok_or_else(|| format!("volumeMount {name} names no volume"))?;
        let (plural, object, optional) = if let Some(cm) = volume.get("configMap") {
            ("configmaps", cm["name"].as_str(), cm["optional"] == true)
        } else if let Some(s) = volume.get("secret") {
            ("secrets", s["secretName"].as_str(), s["optional"] == true)
        } else {
            continue; // emptyDir and the like hold nothing at start
        };
        let object = object.ok_or_else(|| format!("volume {name} names no object"))?;
        let Some(obj) = src.objects.get("v1", plural, &src.namespace, object) else {
            if optional {
                continue;
            }
            return Err(format!(
                "{plural} {object:?} not found (volume {name}): the pod cannot start"
            ));
        };
        let items: Vec<(String, String)> = match volume
            .get("configMap")
            .or_else(|| volume.get("secret"))
            .and_then(|v| v["items"].as_array())
        {
            Some(items) => items
                .iter()
                .filter_map(|i| {
                    Some((
                        i["key"].as_str()?.to_owned(),
                        i["path"].as_str()?.to_owned(),
                    ))
                })
                .collect(),
            None => data_keys(&obj)
                .into_iter()
                .map(|k| (k.clone(), k))
                .collect(),
        };
        let sub = mount["subPath"].as_str();
        for (key, path) in items {
            if sub.is_some_and(|s| s != path) {
                continue;
            }
            let content = value_of(&obj, plural, &key)
                .ok_or_else(|| format!("{plural} {object:?} has no key {key:?} (volume {name})"))?;
            let file = match sub {
                Some(_) => at.to_owned(),
                None => format!("{at}/{path}"),
            };
            let live = sub
                .is_none()
                .then(|| (plural, object.to_owned(), key.clone()));
            out.push((file, Mounted { content, live }));
        }
    }
    Ok(out)
}

fn data_keys(obj: &Value) -> Vec<String> {
    obj["data"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn value_of(obj: &Value, plural: &str, key: &str) -> Option<Vec<u8>> {
    let v = obj["data"][key].as_str()?;
    match plural {
        "secrets" => base64::engine::general_purpose::STANDARD.decode(v).ok(),
        _ => Some(v.as_bytes().to_vec()),
    }
}

fn read_key(src: &PodSource, ns: &str, plural: &str, name: &str, key: &str) -> Option<Vec<u8>> {
    let obj = src.objects.get("v1", plural, ns, name)?;
    value_of(&obj, plural, key)
}
