//! A catalog: a Presto connector and its properties, defined once per compute plane and
//! attachable to many clusters. Properties come from an allow-list per connector; secrets
//! are never literal — only a reference that the agent alone resolves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SpecError, no_control_chars};

/// The connectors Tether can configure. The allow-lists below are data, so more
/// connectors are a table entry, not new code paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Connector {
    /// Hive: built-in metastore, an external Thrift metastore, or AWS Glue.
    Hive,
    /// MySQL over JDBC.
    Mysql,
    /// PostgreSQL over JDBC.
    Postgresql,
}

impl Connector {
    /// Presto's `connector.name`.
    pub fn presto_name(self) -> &'static str {
        match self {
            Connector::Hive => "hive-hadoop2",
            Connector::Mysql => "mysql",
            Connector::Postgresql => "postgresql",
        }
    }

    /// Properties a customer may set for this connector.
    pub fn allowed_properties(self) -> &'static [&'static str] {
        match self {
            Connector::Hive => &[
                "hive.metastore",
                "hive.metastore.uri",
                "hive.metastore.glue.region",
                "hive.metastore.glue.catalogid",
                "hive.metastore.glue.default-warehouse-dir",
                "hive.s3.endpoint",
                "hive.s3.path-style-access",
                "hive.allow-drop-table",
                "hive.non-managed-table-writes-enabled",
                "hive.storage-format",
                "hive.compression-codec",
                "hive.recursive-directories",
            ],
            // `connection-user`: the user when the credentials secret is a plain string
            // (the password); a JSON secret's `username` takes its place.
            Connector::Mysql => &[
                "connection-url",
                "connection-user",
                "mysql.auto-reconnect",
                "mysql.connection-timeout",
            ],
            Connector::Postgresql => &[
                "connection-url",
                "connection-user",
                "postgresql.include-system-tables",
            ],
        }
    }

    /// Whether the connector needs user and password from `credentials`.
    pub fn needs_credentials(self) -> bool {
        matches!(self, Connector::Mysql | Connector::Postgresql)
    }
}

/// Where a catalog's secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An AWS Secrets Manager ARN (resolved by the agent with its own role).
    SecretsManager(String),
    /// A Kubernetes Secret in the agent's namespace, with keys `username` and `password`.
    Kubernetes(String),
}

/// Whether `name` is a valid name of a Kubernetes Secret or ConfigMap (a DNS-1123
/// subdomain).
pub(crate) fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|p| crate::names::validate_dns1123_label(p).is_ok())
}

/// Credentials by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME` or `k8s:NAME`.
    pub secret_ref: String,
}

impl Credentials {
    /// Parses and checks the reference.
    pub fn parse(&self) -> Result<SecretRef, SpecError> {
        let field = "credentials.secret_ref";
        no_control_chars(field, &self.secret_ref)?;
        if let Some(name) = self.secret_ref.strip_prefix("k8s:") {
            return if is_object_name(name) {
                Ok(SecretRef::Kubernetes(name.to_owned()))
            } else {
                Err(SpecError::new(
                    field,
                    "k8s:NAME needs a valid Kubernetes Secret name",
                ))
            };
        }
        let parts: Vec<&str> = self.secret_ref.split(':').collect();
        let arn_ok = parts.len() >= 7
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "secretsmanager"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5] == "secret"
            && !parts[6].is_empty();
        if arn_ok {
            Ok(SecretRef::SecretsManager(self.secret_ref.clone()))
        } else {
            Err(SpecError::new(
                field,
                "must be a Secrets Manager ARN or k8s:NAME",
            ))
        }
    }
}

/// A catalog (`PUT /compute-planes/{cp}/catalogs/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// The connector.
    pub connector: Connector,
    /// Connector properties from the connector's allow-list.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Secret by reference; literal secrets are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "access-key",
        "credential",
        "keytab",
        "token",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl CatalogSpec {
    /// Checks properties against the allow-list and refuses literal secrets.
    pub fn validate(&self) -> Result<(), SpecError> {
        let allowed = self.connector.allowed_properties();
        for (k, v) in &self.properties {
            let field = format!("properties.{k}");
            if looks_secret(k) {
                return Err(SpecError::new(
                    field,
                    "literal secrets are refused; reference them with credentials.secret_ref",
                ));
            }
            if !allowed.contains(&k.as_str()) {
                return Err(SpecError::new(
                    field,
                    format!(
                        "not an allowed property of the {:?} connector (allowed: {})",
                        self.connector,
                        allowed.join(", ")
                    ),
                ));
            }
            no_control_chars(&field, v)?;
            if v.contains("${") {
                // Presto substitutes ${ENV:...} after loading the file: a value could copy
                // another catalog's secret into an ordinary setting.
                return Err(SpecError::new(
                    field,
                    "must not contain ${ (Presto would substitute it)",
                ));
            }
            if v.len() > 1024 {
                return Err(SpecError::new(field, "must be at most 1024 characters"));
            }
            if k == "connection-url" {
                let lower = v.to_ascii_lowercase();
                let prefix = match self.connector {
                    Connector::Mysql => "jdbc:mysql://",
                    _ => "jdbc:postgresql://",
                };
                if !lower.starts_with(prefix) {
                    return Err(SpecError::new(field, format!("must start with {prefix}")));
                }
                if lower.contains("password") || lower.contains('@') {
                    return Err(SpecError::new(
                        field,
                        "must not carry credentials; use credentials.secret_ref",
                    ));
                }
            }
        }
        if self.connector == Connector::Hive {
            match self.properties.get("hive.metastore").map(String::as_str) {
                None | Some("thrift") => {}
                Some("glue") => {
                    if !self.properties.contains_key("hive.metastore.glue.region") {
                        return Err(SpecError::new(
                            "properties.hive.metastore.glue.region",
                            "is required with hive.metastore=glue",
                        ));
                    }
                }
                Some(_) => {
                    return Err(SpecError::new(
                        "properties.hive.metastore",
                        "must be thrift or glue",
                    ));
                }
            }
            if let Some(uri) = self.properties.get("hive.metastore.uri")
                && !uri.split(',').all(|u| u.trim().starts_with("thrift://"))
            {
                return Err(SpecError::new(
                    "properties.hive.metastore.uri",
                    "must be thrift://HOST:PORT",
                ));
            }
        }
        if self.connector.needs_credentials() {
            if !self.properties.contains_key("connection-url") {
                return Err(SpecError::new("properties.connection-url", "is required"));
            }
            match &self.credentials {
                Some(c) => {
                    c.parse()?;
                }
                None => {
                    return Err(SpecError::new(
                        "credentials.secret_ref",
                        "is required for this connector",
                    ));
                }
            }
        } else if let Some(c) = &self.credentials {
            c.parse()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> String {
        serde_json::from_str::<CatalogSpec>(json)
            .expect("parses")
            .validate()
            .expect_err("invalid")
            .field
    }

    #[test]
    fn accepts_each_connector() {
        for json in [
            r#"{"connector": "hive", "properties": {}}"#,
            r#"{"connector": "hive", "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "us-east-1"}}"#,
            r#"{"connector": "hive", "properties": {"hive.metastore.uri": "thrift://hms:9083"}}"#,
            r#"{"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db:3306"}, "credentials": {"secret_ref": "k8s:mysql-creds"}}"#,
            r#"{"connector": "postgresql", "properties": {"connection-url": "jdbc:postgresql://db:5432/app"}, "credentials": {"secret_ref": "arn:aws:secretsmanager:us-east-1:111122223333:secret:pg-AbCd"}}"#,
        ] {
            let c: CatalogSpec = serde_json::from_str(json).expect(json);
            assert_eq!(c.validate(), Ok(()), "{json}");
        }
    }

    #[test]
    fn refuses_secrets_injection_and_unknowns() {
        assert_eq!(
            field(
                r#"{"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db", "connection-password": "hunter2"}, "credentials": {"secret_ref": "k8s:x"}}"#
            ),
            "properties.connection-password"
        );
        assert_eq!(
            field(
                r#"{"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://u:p@db"}, "credentials": {"secret_ref": "k8s:x"}}"#
            ),
            "properties.connection-url"
        );
        assert_eq!(
            field(
                r#"{"connector": "hive", "properties": {"hive.s3.endpoint": "x\nconnector.name=evil"}}"#
            ),
            "properties.hive.s3.endpoint"
        );
        assert_eq!(
            field(r#"{"connector": "hive", "properties": {"connector.name": "jmx"}}"#),
            "properties.connector.name"
        );
        assert_eq!(
            field(
                r#"{"connector": "hive", "properties": {"hive.s3.endpoint": "${ENV:CATALOG_DB_PASSWORD}"}}"#
            ),
            "properties.hive.s3.endpoint"
        );
        assert_eq!(
            field(r#"{"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db"}}"#),
            "credentials.secret_ref"
        );
        assert_eq!(
            field(
                r#"{"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db"}, "credentials": {"secret_ref": "plain"}}"#
            ),
            "credentials.secret_ref"
        );
        assert!(serde_json::from_str::<CatalogSpec>(r#"{"connector": "oracle"}"#).is_err());
    }
}
