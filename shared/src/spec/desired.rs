//! The whole desired state of one compute plane, as the agent applies it, and its
//! conversion from the wire (`tether.v1.DesiredState`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tether_proto::v1 as pb;

use super::{CatalogSpec, ClusterSpec, Connector, PrestoAccess, SpecError};

/// Everything a compute plane should run. Always whole, never a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Bumped on every change by the control plane.
    pub generation: i64,
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterSpec>,
    /// Catalogs by name.
    pub catalogs: BTreeMap<String, CatalogSpec>,
    /// Compute-plane settings.
    pub settings: BTreeMap<String, String>,
    /// Presto authentication and access rules for every cluster; `None`: Presto's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presto_access: Option<PrestoAccess>,
}

/// A desired-state document that must not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDesiredState {
    /// A spec's JSON did not parse.
    #[error("invalid {kind} {name:?}: {message}")]
    Unparsable {
        /// `cluster` or `catalog`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Parser message.
        message: String,
    },
    /// A spec failed validation.
    #[error("invalid {kind} {name:?}: {error}")]
    Invalid {
        /// `cluster` or `catalog`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Why.
        error: SpecError,
    },
    /// The Presto access document failed validation.
    #[error("invalid presto access: {0}")]
    Access(SpecError),
    /// A cluster names a catalog the state does not define.
    #[error("cluster {cluster:?} attaches unknown catalog {catalog:?}")]
    UnknownCatalog {
        /// Cluster.
        cluster: String,
        /// Catalog.
        catalog: String,
    },
}

impl DesiredState {
    /// Validates every spec and every reference between them.
    pub fn validate(&self) -> Result<(), InvalidDesiredState> {
        for (name, c) in &self.catalogs {
            crate::names::validate_dns1123_label(name).map_err(|e| {
                InvalidDesiredState::Invalid {
                    kind: "catalog",
                    name: name.clone(),
                    error: SpecError::new("name", e.to_string()),
                }
            })?;
            c.validate().map_err(|error| InvalidDesiredState::Invalid {
                kind: "catalog",
                name: name.clone(),
                error,
            })?;
        }
        for (name, c) in &self.clusters {
            super::validate_cluster_name(name).map_err(|error| InvalidDesiredState::Invalid {
                kind: "cluster",
                name: name.clone(),
                error,
            })?;
            c.validate().map_err(|error| InvalidDesiredState::Invalid {
                kind: "cluster",
                name: name.clone(),
                error,
            })?;
            if let Some(missing) = c.catalogs.iter().find(|n| !self.catalogs.contains_key(*n)) {
                return Err(InvalidDesiredState::UnknownCatalog {
                    cluster: name.clone(),
                    catalog: missing.clone(),
                });
            }
        }
        if let Some(access) = &self.presto_access {
            access.validate().map_err(InvalidDesiredState::Access)?;
            for catalog in access.table_rules.keys() {
                validate_table_rules_catalog(catalog, self.catalogs.get(catalog))
                    .map_err(InvalidDesiredState::Access)?;
            }
        }
        Ok(())
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::DesiredState {
        let named = |name: &String, json: String| pb::NamedSpec {
            name: name.clone(),
            spec_json: json,
        };
        pb::DesiredState {
            generation: self.generation,
            clusters: self
                .clusters
                .iter()
                .map(|(n, s)| named(n, serde_json::to_string(s).unwrap_or_default()))
                .collect(),
            catalogs: self
                .catalogs
                .iter()
                .map(|(n, s)| named(n, serde_json::to_string(s).unwrap_or_default()))
                .collect(),
            settings: self.settings.clone().into_iter().collect(),
            signature: Vec::new(),
            signature_key_id: String::new(),
            presto_access_json: self
                .presto_access
                .as_ref()
                .map(|a| serde_json::to_string(a).unwrap_or_default())
                .unwrap_or_default(),
        }
    }
}

/// Table rules are the Hive connector's own file-based security: they may name only a
/// Hive catalog of the compute plane, or `hive`, the catalog of a cluster's built-in
/// metastore.
pub fn validate_table_rules_catalog(
    catalog: &str,
    spec: Option<&CatalogSpec>,
) -> Result<(), SpecError> {
    let field = format!("table_rules.{catalog}");
    match spec {
        // The default catalog of a cluster's built-in metastore.
        None if catalog == super::DEFAULT_HIVE_CATALOG => Ok(()),
        None => Err(SpecError::new(
            field,
            "no such catalog in this compute plane",
        )),
        Some(c) if c.connector != Connector::Hive => Err(SpecError::new(
            field,
            format!(
                "table rules are Hive's file-based security; {catalog} is a {:?} catalog (use rules.catalogs)",
                c.connector
            ),
        )),
        Some(_) => Ok(()),
    }
}

impl TryFrom<pb::DesiredState> for DesiredState {
    type Error = InvalidDesiredState;

    /// Parses and validates a document from the wire.
    fn try_from(p: pb::DesiredState) -> Result<Self, Self::Error> {
        fn parse<T: serde::de::DeserializeOwned>(
            kind: &'static str,
            specs: Vec<pb::NamedSpec>,
        ) -> Result<BTreeMap<String, T>, InvalidDesiredState> {
            specs
                .into_iter()
                .map(|s| {
                    serde_json::from_str(&s.spec_json)
                        .map(|v| (s.name.clone(), v))
                        .map_err(|e| InvalidDesiredState::Unparsable {
                            kind,
                            name: s.name,
                            message: e.to_string(),
                        })
                })
                .collect()
        }
        let state = DesiredState {
            generation: p.generation,
            clusters: parse("cluster", p.clusters)?,
            catalogs: parse("catalog", p.catalogs)?,
            settings: p.settings.into_iter().collect(),
            presto_access: if p.presto_access_json.is_empty() {
                None
            } else {
                Some(serde_json::from_str(&p.presto_access_json).map_err(|e| {
                    InvalidDesiredState::Unparsable {
                        kind: "presto access",
                        name: String::new(),
                        message: e.to_string(),
                    }
                })?)
            },
        };
        state.validate()?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Connector, Workers};

    fn sample() -> DesiredState {
        let mut s = DesiredState {
            generation: 7,
            ..Default::default()
        };
        s.catalogs.insert(
            "lake".into(),
            CatalogSpec {
                connector: Connector::Hive,
                properties: BTreeMap::new(),
                credentials: None,
            },
        );
        let cluster: ClusterSpec = serde_json::from_str(
            r#"{"presto_version": "0.293", "workers": {"count": 3}, "catalogs": ["lake"]}"#,
        )
        .expect("spec");
        s.clusters.insert("analytics".into(), cluster);
        s
    }

    #[test]
    fn round_trips_over_the_wire() {
        let s = sample();
        let back = DesiredState::try_from(s.to_proto()).expect("valid");
        assert_eq!(back, s);
        assert_eq!(
            back.clusters["analytics"].workers,
            Workers::Fixed { count: 3 }
        );
    }

    #[test]
    fn refuses_dangling_catalogs_and_bad_json() {
        let mut s = sample();
        s.catalogs.clear();
        assert!(matches!(
            DesiredState::try_from(s.to_proto()),
            Err(InvalidDesiredState::UnknownCatalog { .. })
        ));
        let mut p = sample().to_proto();
        p.clusters[0].spec_json = "{".into();
        assert!(matches!(
            DesiredState::try_from(p),
            Err(InvalidDesiredState::Unparsable { .. })
        ));
    }

    #[test]
    fn presto_access_travels_and_its_table_rules_need_a_hive_catalog() {
        let mut s = sample();
        let access: PrestoAccess = serde_json::from_value(serde_json::json!({
            "rules": {"catalogs": [{"user": "alice", "catalog": "lake", "allow": "read-only"}]},
            "table_rules": {"lake": [{"user": "alice", "privileges": ["SELECT"]}]},
        }))
        .expect("access");
        s.presto_access = Some(access.clone());
        let back = DesiredState::try_from(s.to_proto()).expect("valid");
        assert_eq!(back.presto_access, Some(access.clone()));
        assert_eq!(
            DesiredState::try_from(sample().to_proto())
                .expect("valid")
                .presto_access,
            None
        );
        let mut other = access;
        other.table_rules.insert("orders".into(), Vec::new());
        s.presto_access = Some(other);
        match DesiredState::try_from(s.to_proto()) {
            Err(InvalidDesiredState::Access(e)) => assert_eq!(e.field, "table_rules.orders"),
            r => panic!("expected a refusal, got {r:?}"),
        }
    }
}
