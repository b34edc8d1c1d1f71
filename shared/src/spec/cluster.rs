//! A Presto cluster: coordinator, workers, attached catalogs, optional built-in Hive
//! metastore, and where its pods may run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::quantity::{cpu_millis, memory_bytes};
use super::{SpecError, no_control_chars};
use crate::names::validate_dns1123_label;

/// Most workers a cluster may ask for.
pub const MAX_WORKERS: u32 = 500;

/// Longest cluster name: its objects append suffixes (`-hive-metastore`) and must stay
/// within Kubernetes' 63 characters.
pub const MAX_CLUSTER_NAME: usize = 48;

/// A cluster name: a DNS-1123 label of at most [`MAX_CLUSTER_NAME`] characters.
pub fn validate_cluster_name(name: &str) -> Result<(), SpecError> {
    validate_dns1123_label(name).map_err(|e| SpecError::new("name", e.to_string()))?;
    if name.len() > MAX_CLUSTER_NAME {
        return Err(SpecError::new(
            "name",
            format!("must be at most {MAX_CLUSTER_NAME} characters"),
        ));
    }
    Ok(())
}

/// The desired shape of one Presto cluster (`PUT /compute-planes/{cp}/clusters/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Presto version, used as the image tag (`prestodb/presto:<version>`).
    pub presto_version: String,
    /// Fixed count or autoscaling bounds.
    pub workers: Workers,
    /// Names of the compute plane's catalogs to attach.
    #[serde(default)]
    pub catalogs: Vec<String>,
    /// Coordinator pod resources.
    #[serde(default = "Resources::coordinator_default")]
    pub coordinator: Resources,
    /// Resources of each worker pod.
    #[serde(default = "Resources::worker_default")]
    pub worker: Resources,
    /// The built-in Hive metastore, serving the cluster's default `hive` catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hive_metastore: Option<HiveMetastore>,
    /// Node labels the pods must run on (the cluster's node group).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the node group's taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// Worker count: fixed, or autoscaled between bounds on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Workers {
    /// Exactly `count` workers.
    Fixed {
        /// Number of workers.
        count: u32,
    },
    /// A HorizontalPodAutoscaler between `min` and `max`.
    Autoscaling {
        /// Fewest workers.
        min: u32,
        /// Most workers.
        max: u32,
        /// Average CPU utilisation to aim for, percent.
        target_cpu_percent: u32,
    },
}

/// The JSON form of [`Workers`], read field by field so that errors can say exactly
/// what is missing or mixed (an untagged enum would only say "no variant matched").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkersRepr {
    count: Option<u32>,
    min: Option<u32>,
    max: Option<u32>,
    target_cpu_percent: Option<u32>,
}

/// Default CPU target of autoscaling.
const DEFAULT_TARGET_CPU: u32 = 70;

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = WorkersRepr::deserialize(d)?;
        match r {
            WorkersRepr {
                count: Some(count),
                min: None,
                max: None,
                target_cpu_percent: None,
            } => Ok(Workers::Fixed { count }),
            WorkersRepr { count: Some(_), .. } => Err(D::Error::custom(
                "use either {\"count\": N} or {\"min\": A, \"max\": B, \"target_cpu_percent\": P}, not both",
            )),
            WorkersRepr {
                count: None,
                min: Some(min),
                max: Some(max),
                target_cpu_percent,
            } => Ok(Workers::Autoscaling {
                min,
                max,
                target_cpu_percent: target_cpu_percent.unwrap_or(DEFAULT_TARGET_CPU),
            }),
            WorkersRepr {
                count: None,
                min: None,
                ..
            } if r.max.is_some() || r.target_cpu_percent.is_some() => {
                Err(D::Error::missing_field("min"))
            }
            WorkersRepr {
                count: None,
                max: None,
                ..
            } if r.min.is_some() => Err(D::Error::missing_field("max")),
            _ => Err(D::Error::custom(
                "needs {\"count\": N} or {\"min\": A, \"max\": B, \"target_cpu_percent\": P}",
            )),
        }
    }
}

/// The documented schema of [`Workers`]: `{"count"}` or `{"min", "max",
/// "target_cpu_percent"?}` (its `Deserialize` is written by hand, so is this).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Workers {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let int = |description: &str, min: u32, max: u32| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(f64::from(min)))
                .maximum(Some(f64::from(max)))
                .description(Some(description))
        };
        let closed = || Some(AdditionalProperties::FreeForm(false));
        let fixed = ObjectBuilder::new()
            .property("count", int("Number of workers", 0, MAX_WORKERS))
            .required("count")
            .additional_properties(closed());
        let autoscaling = ObjectBuilder::new()
            .property("min", int("Fewest workers", 0, MAX_WORKERS))
            .property("max", int("Most workers (at least min)", 1, MAX_WORKERS))
            .property(
                "target_cpu_percent",
                int("Average CPU utilisation to aim for (default 70)", 1, 100),
            )
            .required("min")
            .required("max")
            .additional_properties(closed());
        OneOfBuilder::new()
            .item(fixed)
            .item(autoscaling)
            .description(Some("A fixed count, or autoscaling bounds"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Workers {}

impl Workers {
    /// The number of workers to expect when nothing scaled yet.
    pub fn initial(&self) -> u32 {
        match *self {
            Workers::Fixed { count } => count,
            Workers::Autoscaling { min, .. } => min,
        }
    }
}

/// CPU and memory of a pod, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// e.g. `"2"`, `"500m"`.
    pub cpu: String,
    /// e.g. `"8Gi"`.
    pub memory: String,
}

impl Resources {
    fn coordinator_default() -> Self {
        Self {
            cpu: "2".into(),
            memory: "8Gi".into(),
        }
    }

    fn worker_default() -> Self {
        Self {
            cpu: "4".into(),
            memory: "16Gi".into(),
        }
    }

    fn validate(&self, field: &str) -> Result<(), SpecError> {
        let cpu = cpu_millis(&self.cpu).ok_or_else(|| {
            SpecError::new(
                format!("{field}.cpu"),
                "must be a CPU quantity such as 2 or 500m",
            )
        })?;
        if !(250..=256_000).contains(&cpu) {
            return Err(SpecError::new(
                format!("{field}.cpu"),
                "must be between 250m and 256",
            ));
        }
        let mem = memory_bytes(&self.memory).ok_or_else(|| {
            SpecError::new(
                format!("{field}.memory"),
                "must be a memory quantity such as 8Gi",
            )
        })?;
        if !((1u64 << 30)..=(4u64 << 40)).contains(&mem) {
            return Err(SpecError::new(
                format!("{field}.memory"),
                "must be between 1Gi and 4Ti",
            ));
        }
        Ok(())
    }
}

/// The built-in Hive metastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HiveMetastore {
    /// Run it.
    pub enabled: bool,
    /// Warehouse location, `s3://bucket/prefix`.
    pub warehouse: String,
}

/// A Kubernetes toleration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    /// Taint key.
    pub key: String,
    /// `Equal` or `Exists`.
    #[serde(default = "Toleration::equal")]
    pub operator: String,
    /// Taint value (for `Equal`).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`, or empty for all.
    #[serde(default)]
    pub effect: String,
}

impl Toleration {
    fn equal() -> String {
        "Equal".into()
    }
}

/// A Kubernetes label key or value (`[prefix/]name`, 63 characters of `[A-Za-z0-9._-]`).
fn valid_label_part(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn valid_label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|p| validate_dns1123_label(p).is_ok())
                && valid_label_part(name, false)
        }
        None => valid_label_part(k, false),
    }
}

fn validate_s3_url(field: &str, url: &str) -> Result<(), SpecError> {
    no_control_chars(field, url)?;
    let bad = || SpecError::new(field, "must be an S3 location such as s3://bucket/prefix");
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let bucket = rest.split('/').next().unwrap_or("");
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !url.contains(char::is_whitespace);
    if ok { Ok(()) } else { Err(bad()) }
}

impl ClusterSpec {
    /// Checks everything that does not need the rest of the desired state (that the
    /// attached catalogs exist is the caller's check).
    pub fn validate(&self) -> Result<(), SpecError> {
        let v = &self.presto_version;
        let version_ok = !v.is_empty()
            && v.len() <= 128
            && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !version_ok {
            return Err(SpecError::new(
                "presto_version",
                "must be an image tag such as 0.293",
            ));
        }
        match self.workers {
            Workers::Fixed { count } if count > MAX_WORKERS => {
                return Err(SpecError::new(
                    "workers.count",
                    format!("must be at most {MAX_WORKERS}"),
                ));
            }
            Workers::Autoscaling {
                min,
                max,
                target_cpu_percent,
            } => {
                if min < 1 {
                    return Err(SpecError::new("workers.min", "must be at least 1"));
                }
                if max > MAX_WORKERS {
                    return Err(SpecError::new(
                        "workers.max",
                        format!("must be at most {MAX_WORKERS}"),
                    ));
                }
                if min > max {
                    return Err(SpecError::new(
                        "workers.min",
                        "must not be greater than workers.max",
                    ));
                }
                if !(1..=100).contains(&target_cpu_percent) {
                    return Err(SpecError::new(
                        "workers.target_cpu_percent",
                        "must be between 1 and 100",
                    ));
                }
            }
            Workers::Fixed { .. } => {}
        }
        self.coordinator.validate("coordinator")?;
        self.worker.validate("worker")?;
        for (i, c) in self.catalogs.iter().enumerate() {
            validate_dns1123_label(c)
                .map_err(|e| SpecError::new(format!("catalogs[{i}]"), e.to_string()))?;
            if self.catalogs[..i].contains(c) {
                return Err(SpecError::new(
                    format!("catalogs[{i}]"),
                    format!("{c:?} is listed twice"),
                ));
            }
        }
        if let Some(h) = &self.hive_metastore {
            validate_s3_url("hive_metastore.warehouse", &h.warehouse)?;
        }
        for (k, val) in &self.node_selector {
            if !valid_label_key(k) || !valid_label_part(val, true) {
                return Err(SpecError::new(
                    format!("node_selector.{k}"),
                    "must be a Kubernetes label key and value",
                ));
            }
        }
        for (i, t) in self.tolerations.iter().enumerate() {
            let f = format!("tolerations[{i}]");
            if t.key.is_empty() && t.operator != "Exists" {
                return Err(SpecError::new(
                    format!("{f}.key"),
                    "may be empty only with operator Exists",
                ));
            }
            if !t.key.is_empty() && !valid_label_key(&t.key) {
                return Err(SpecError::new(format!("{f}.key"), "must be a label key"));
            }
            if !matches!(t.operator.as_str(), "Equal" | "Exists") {
                return Err(SpecError::new(
                    format!("{f}.operator"),
                    "must be Equal or Exists",
                ));
            }
            if !valid_label_part(&t.value, true) {
                return Err(SpecError::new(
                    format!("{f}.value"),
                    "must be a label value",
                ));
            }
            if !matches!(
                t.effect.as_str(),
                "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(SpecError::new(
                    format!("{f}.effect"),
                    "must be NoSchedule, PreferNoSchedule or NoExecute",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ClusterSpec {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn contract_shapes_parse_and_validate() {
        let s = spec(
            r#"{"presto_version": "0.293", "workers": {"count": 3}, "catalogs": ["lake"],
            "coordinator": {"cpu": "2", "memory": "8Gi"}, "worker": {"cpu": "4", "memory": "16Gi"}}"#,
        );
        assert_eq!(s.workers, Workers::Fixed { count: 3 });
        assert_eq!(s.validate(), Ok(()));
        let a = spec(
            r#"{"presto_version": "0.293", "workers": {"min": 2, "max": 10, "target_cpu_percent": 70}}"#,
        );
        assert_eq!(a.workers.initial(), 2);
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        let field = |json: &str| spec(json).validate().expect_err("invalid").field;
        assert_eq!(
            field(r#"{"presto_version": "0.293", "workers": {"count": 100000}}"#),
            "workers.count"
        );
        assert_eq!(
            field(
                r#"{"presto_version": "0.293", "workers": {"min": 5, "max": 2, "target_cpu_percent": 70}}"#
            ),
            "workers.min"
        );
        assert_eq!(
            field(r#"{"presto_version": "0.293\nx=y", "workers": {"count": 1}}"#),
            "presto_version"
        );
        assert_eq!(
            field(r#"{"presto_version": "1", "workers": {"count": 1}, "catalogs": ["Bad_Name"]}"#),
            "catalogs[0]"
        );
        assert_eq!(
            field(
                r#"{"presto_version": "1", "workers": {"count": 1}, "worker": {"cpu": "lots", "memory": "1Gi"}}"#
            ),
            "worker.cpu"
        );
        assert_eq!(
            field(
                r#"{"presto_version": "1", "workers": {"count": 1}, "hive_metastore": {"enabled": true, "warehouse": "http://x"}}"#
            ),
            "hive_metastore.warehouse"
        );
        assert!(
            serde_json::from_str::<ClusterSpec>(
                r#"{"presto_version": "1", "workers": {"count": -1}}"#
            )
            .is_err()
        );
        for bad in [
            r#"{"count": 3, "max": 9}"#,
            r#"{"min": 2}"#,
            r#"{"max": 9, "target_cpu_percent": 50}"#,
            r#"{}"#,
            r#"{"replicas": 3}"#,
        ] {
            let json = format!(r#"{{"presto_version": "1", "workers": {bad}}}"#);
            assert!(serde_json::from_str::<ClusterSpec>(&json).is_err(), "{bad}");
        }
        let w: Workers = serde_json::from_str(r#"{"min": 1, "max": 4}"#).expect("default target");
        assert_eq!(
            w,
            Workers::Autoscaling {
                min: 1,
                max: 4,
                target_cpu_percent: 70
            }
        );
    }
}
