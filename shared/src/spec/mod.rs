//! Desired-state specs: Presto clusters and catalogs, and their validation. The control
//! plane validates before storing; the agent validates again before applying, because it
//! must never trust what arrives over the wire more than what the customer would accept.
//!
//! Validation errors name the offending field (`workers.max`, `properties.connection-url`)
//! so the API can answer 400 with it.

mod access;
mod catalog;
mod cluster;
mod desired;
mod quantity;

pub use access::{
    Authentication, CatalogAccess, CatalogRule, CoordinatorTls, LdapAuthentication, PrestoAccess,
    SchemaRule, SystemRules, TablePrivilege, TableRule, matches_whole,
};
pub use catalog::{CatalogSpec, Connector, Credentials, SecretRef};
pub use cluster::{
    ClusterSpec, HiveMetastore, MAX_CLUSTER_NAME, MAX_WORKERS, Resources, Toleration, Workers,
    validate_cluster_name,
};
pub use desired::{DesiredState, InvalidDesiredState, validate_table_rules_catalog};
/// The catalog a cluster's built-in Hive metastore serves when no attached catalog is
/// named so.
pub const DEFAULT_HIVE_CATALOG: &str = "hive";

pub use quantity::{cpu_millis, memory_bytes};

/// A spec that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Dotted path of the field, e.g. `workers.max`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl SpecError {
    /// An error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Refuses control characters (newlines above all): every value ends up in a
/// `.properties` file or a Kubernetes object, where a newline would inject a new key.
pub(crate) fn no_control_chars(field: &str, value: &str) -> Result<(), SpecError> {
    if value.chars().any(char::is_control) {
        return Err(SpecError::new(
            field,
            "must not contain newlines or other control characters",
        ));
    }
    Ok(())
}
