//! Who may query a compute plane's Presto clusters, and what they may read
//! (`PUT /compute-planes/{cp}/presto-access`): the same for every cluster of the plane.
//!
//! Everything here is what prestodb itself offers, rendered by the agent into Presto's own
//! files (see `agent/src/render/access.rs`):
//! - `authentication`: Presto's LDAP password authenticator (`presto-password-authenticators`,
//!   `LdapConfig`: `ldap.url` must match `^ldaps://.*`, `ldap.user-bind-pattern` holds
//!   `${USER}`, binding as the user: there is no service-account bind), which needs HTTPS
//!   on the coordinator; the directory's CA goes into the JVM's trust store;
//! - `rules`: `FileBasedSystemAccessControl` (`access-control.name=file`) with catalog rules
//!   (`user`, `catalog` regexes, `allow` all | read-only | none) and schema ownership rules;
//!   the first rule that matches decides, and no match denies;
//! - `table_rules`: per Hive catalog, the connector's `hive.security=file`
//!   (`FileBasedAccessControl` of `presto-plugin-toolkit`) with table privileges — prestodb
//!   has no system-level table rules. prestodb reads a connector's rules file only when the
//!   catalog loads (its `FileBasedAccessControlConfig` has no refresh period; the system
//!   one's does), so a change of table rules restarts the coordinator, while a change of
//!   `rules` takes effect within `security.refresh-period` without any restart.
//!
//! Regexes are matched against the whole value, as Java's `Pattern.matcher(..).matches()`
//! does; they must compile with Rust's `regex` too (no look-around, no back-references),
//! so the agent and the API can check them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SpecError, no_control_chars};

/// The longest regex, bind pattern or DN accepted.
pub const MAX_PATTERN: usize = 512;
/// At most this many rules of each list (a rules file Presto re-reads every refresh).
pub const MAX_RULES: usize = 200;

/// A compute plane's Presto authentication and authorization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PrestoAccess {
    /// How clients prove who they are.
    #[serde(default)]
    pub authentication: Authentication,
    /// System access control: catalog and schema rules, for every catalog.
    #[serde(default)]
    pub rules: SystemRules,
    /// Table rules, per Hive catalog (the connector's own file-based security).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub table_rules: BTreeMap<String, Vec<TableRule>>,
    /// The coordinator's HTTPS certificate (used when `authentication` needs HTTPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CoordinatorTls>,
}

/// How Presto authenticates clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Authentication {
    /// No authentication: Presto believes the `X-Presto-User` a client sends.
    #[default]
    None,
    /// Presto's LDAP password authenticator against the customer's directory.
    Ldap(LdapAuthentication),
}

/// Presto's LDAP password authenticator. Passwords go from the client to Presto to the
/// directory; none of them reaches Tether.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LdapAuthentication {
    /// `ldaps://host[:port]` (Presto refuses anything else).
    pub url: String,
    /// The DN a user binds as, with `${USER}`, e.g. `uid=${USER},ou=people,dc=example,dc=com`
    /// (`ldap.user-bind-pattern`; several patterns joined by `:`).
    pub user_bind_pattern: String,
    /// The directory's CA certificate (PEM), added to the trust store Presto's JVM uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Or the CA by reference: `k8s:NAME`, a ConfigMap in the agent's namespace with key
    /// `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_ref: Option<String>,
    /// Base DN of the group check (`ldap.user-base-dn`), with `group_auth_pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_base_dn: Option<String>,
    /// A filter the user must match to be let in (`ldap.group-auth-pattern`), e.g.
    /// `(&(objectClass=person)(uid=${USER})(memberof=cn=presto,ou=groups,dc=example,dc=com))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_auth_pattern: Option<String>,
    /// Refused with a clear error: prestodb's `LdapAuthenticator` has no service-account
    /// bind (`LdapConfig` has no `ldap.bind-dn`); kept in the shape so that a document
    /// written for Trino's authenticator is told so instead of failing to parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_secret_ref: Option<String>,
}

/// Where the coordinator's HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CoordinatorTls {
    /// `k8s:NAME`: a `kubernetes.io/tls` Secret of the customer's (keys `tls.crt`,
    /// `tls.key`) used for every cluster instead of one the agent issues.
    pub certificate_ref: String,
}

/// `FileBasedSystemAccessControl`'s rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SystemRules {
    /// Catalog rules, first match wins; a catalog no rule matches is denied.
    #[serde(default)]
    pub catalogs: Vec<CatalogRule>,
    /// Schema ownership rules (who may create, drop and rename in a schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<SchemaRule>,
}

/// One catalog rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CatalogRule {
    /// Regex of user names; absent matches everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Regex of catalog names; absent matches every catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// What a match may do.
    pub allow: CatalogAccess,
}

/// A catalog rule's verdict (`AccessMode` in prestodb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum CatalogAccess {
    /// Read and write.
    All,
    /// Read only.
    ReadOnly,
    /// Nothing; the catalog is hidden.
    None,
}

/// One schema ownership rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SchemaRule {
    /// Regex of user names; absent matches everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Regex of schema names; absent matches every schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Whether a match owns the schema.
    pub owner: bool,
}

/// One table rule of a Hive catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TableRule {
    /// Regex of user names; absent matches everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Regex of schema names; absent matches every schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Regex of table names; absent matches every table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// What a match may do; empty denies.
    pub privileges: Vec<TablePrivilege>,
}

/// A table privilege of prestodb's `FileBasedAccessControl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TablePrivilege {
    /// Read.
    Select,
    /// Insert rows.
    Insert,
    /// Delete rows.
    Delete,
    /// Own the table (drop, alter, grant).
    Ownership,
    /// Read, and grant read to others.
    GrantSelect,
}

impl PrestoAccess {
    /// Whether the coordinator must serve HTTPS (password authentication is on).
    pub fn needs_https(&self) -> bool {
        matches!(self.authentication, Authentication::Ldap(_))
    }

    /// Checks every field; errors name it (`authentication.url`, `rules.catalogs[2].user`).
    /// Which catalogs `table_rules` may name is checked against the desired state
    /// ([`super::DesiredState::validate`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Authentication::Ldap(l) = &self.authentication {
            l.validate()?;
        }
        let rules = &self.rules;
        count("rules.catalogs", rules.catalogs.len())?;
        count("rules.schemas", rules.schemas.len())?;
        for (i, r) in rules.catalogs.iter().enumerate() {
            let at = format!("rules.catalogs[{i}]");
            regex(&format!("{at}.user"), r.user.as_deref())?;
            regex(&format!("{at}.catalog"), r.catalog.as_deref())?;
        }
        for (i, r) in rules.schemas.iter().enumerate() {
            let at = format!("rules.schemas[{i}]");
            regex(&format!("{at}.user"), r.user.as_deref())?;
            regex(&format!("{at}.schema"), r.schema.as_deref())?;
        }
        for (catalog, list) in &self.table_rules {
            let at = format!("table_rules.{catalog}");
            crate::names::validate_dns1123_label(catalog)
                .map_err(|e| SpecError::new(&at, e.to_string()))?;
            count(&at, list.len())?;
            for (i, r) in list.iter().enumerate() {
                let at = format!("{at}[{i}]");
                regex(&format!("{at}.user"), r.user.as_deref())?;
                regex(&format!("{at}.schema"), r.schema.as_deref())?;
                regex(&format!("{at}.table"), r.table.as_deref())?;
            }
        }
        if let Some(tls) = &self.tls {
            k8s_ref("tls.certificate_ref", &tls.certificate_ref)?;
        }
        Ok(())
    }
}

impl LdapAuthentication {
    fn validate(&self) -> Result<(), SpecError> {
        let field = "authentication.url";
        text(field, &self.url)?;
        // Presto's LdapConfig: @Pattern(regexp = "^ldaps://.*", message = "LDAP without
        // SSL/TLS unsupported. Expected ldaps://").
        let Some(rest) = self.url.strip_prefix("ldaps://") else {
            return Err(SpecError::new(
                field,
                "must start with ldaps:// (Presto refuses LDAP without TLS)",
            ));
        };
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "636"));
        if host.is_empty() || host.contains(['/', '?', '@', ' ']) || port.parse::<u16>().is_err() {
            return Err(SpecError::new(field, "must be ldaps://HOST[:PORT]"));
        }
        let field = "authentication.user_bind_pattern";
        text(field, &self.user_bind_pattern)?;
        if !self.user_bind_pattern.contains("${USER}") {
            return Err(SpecError::new(
                field,
                "must contain ${USER}, e.g. uid=${USER},ou=people,dc=example,dc=com",
            ));
        }
        if let Some(base) = &self.user_base_dn {
            text("authentication.user_base_dn", base)?;
        }
        if let Some(p) = &self.group_auth_pattern {
            text("authentication.group_auth_pattern", p)?;
            if self.user_base_dn.is_none() {
                return Err(SpecError::new(
                    "authentication.user_base_dn",
                    "is required with group_auth_pattern (the base of its search)",
                ));
            }
        }
        match (&self.ca_pem, &self.ca_ref) {
            (Some(_), Some(_)) => {
                return Err(SpecError::new(
                    "authentication.ca_ref",
                    "give the CA by value (ca_pem) or by reference (ca_ref), not both",
                ));
            }
            (Some(pem), None) => {
                let ok = crate::pki::certs_from_pem(pem.as_bytes()).is_ok_and(|c| !c.is_empty());
                if !ok {
                    return Err(SpecError::new(
                        "authentication.ca_pem",
                        "must hold one or more PEM certificates",
                    ));
                }
            }
            (None, Some(r)) => k8s_ref("authentication.ca_ref", r)?,
            (None, None) => {}
        }
        if self.bind_secret_ref.is_some() {
            // prestodb's LdapAuthenticator binds only as the user (no `ldap.bind-dn`).
            return Err(SpecError::new(
                "authentication.bind_secret_ref",
                "prestodb's LDAP authenticator binds as the user and has no service account; \
                 restrict who may sign in with group_auth_pattern instead",
            ));
        }
        Ok(())
    }
}

fn text(field: &str, value: &str) -> Result<(), SpecError> {
    no_control_chars(field, value)?;
    if value.is_empty() {
        return Err(SpecError::new(field, "must not be empty"));
    }
    if value.len() > MAX_PATTERN {
        return Err(SpecError::new(
            field,
            format!("must be at most {MAX_PATTERN} characters"),
        ));
    }
    Ok(())
}

fn count(field: &str, n: usize) -> Result<(), SpecError> {
    if n > MAX_RULES {
        return Err(SpecError::new(
            field,
            format!("at most {MAX_RULES} rules (has {n})"),
        ));
    }
    Ok(())
}

/// A rule's regex: absent, or one that compiles.
fn regex(field: &str, value: Option<&str>) -> Result<(), SpecError> {
    let Some(v) = value else { return Ok(()) };
    text(field, v)?;
    regex::Regex::new(v)
        .map(|_| ())
        .map_err(|e| SpecError::new(field, format!("not a valid regex: {e}")))
}

/// `k8s:NAME` of an object in the agent's namespace.
fn k8s_ref(field: &str, value: &str) -> Result<(), SpecError> {
    let name = value.strip_prefix("k8s:").unwrap_or_default();
    if super::catalog::is_object_name(name) {
        Ok(())
    } else {
        Err(SpecError::new(
            field,
            "must be k8s:NAME, naming an object in the agent's namespace",
        ))
    }
}

/// Whether `pattern` (a rule's regex, absent for "any") matches all of `value`, as
/// Java's `Pattern.matcher(value).matches()` does.
pub fn matches_whole(pattern: Option<&str>, value: &str) -> bool {
    let Some(p) = pattern else { return true };
    regex::Regex::new(&format!("^(?:{p})$")).is_ok_and(|r| r.is_match(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> PrestoAccess {
        serde_json::from_value(v).expect("parses")
    }

    fn field_of(v: serde_json::Value) -> String {
        parse(v).validate().expect_err("refused").field
    }

    #[test]
    fn the_documented_shape_parses_and_validates() {
        let a = parse(serde_json::json!({
            "authentication": {"kind": "ldap", "url": "ldaps://ldap.example.com:636",
                "user_bind_pattern": "uid=${USER},ou=people,dc=example,dc=com"},
            "rules": {"catalogs": [
                {"user": "alice", "catalog": "lake", "allow": "read-only"},
                {"catalog": "system", "allow": "all"}],
                "schemas": [{"user": "admin", "schema": ".*", "owner": true}]},
            "table_rules": {"lake": [{"user": "alice", "schema": "sales", "table": ".*",
                "privileges": ["SELECT"]}]},
        }));
        a.validate().expect("valid");
        assert!(a.needs_https());
        assert_eq!(a.rules.catalogs[0].allow, CatalogAccess::ReadOnly);
        let none = parse(serde_json::json!({"authentication": {"kind": "none"}}));
        none.validate().expect("valid");
        assert!(!none.needs_https());
    }

    #[test]
    fn refusals_name_the_field() {
        let ldap = |url: &str, pattern: &str| {
            serde_json::json!({"authentication":
                {"kind": "ldap", "url": url, "user_bind_pattern": pattern}})
        };
        assert_eq!(
            field_of(ldap("ldap://ldap.example.com", "uid=${USER}")),
            "authentication.url"
        );
        assert_eq!(
            field_of(ldap("ldaps://ldap.example.com", "uid=alice")),
            "authentication.user_bind_pattern"
        );
        assert_eq!(
            field_of(serde_json::json!({"rules": {"catalogs": [
                {"catalog": "lake", "allow": "all"}, {"user": "(", "allow": "none"}]}})),
            "rules.catalogs[1].user"
        );
        assert_eq!(
            field_of(serde_json::json!({"table_rules": {"lake": [
                {"table": "a[", "privileges": []}]}})),
            "table_rules.lake[0].table"
        );
        assert_eq!(
            field_of(serde_json::json!({"tls": {"certificate_ref": "arn:aws:x"}})),
            "tls.certificate_ref"
        );
        assert!(
            serde_json::from_value::<PrestoAccess>(serde_json::json!({
                "rules": {"catalogs": [{"allow": "write"}]}}))
            .is_err()
        );
    }

    #[test]
    fn regexes_match_the_whole_value_like_java() {
        assert!(matches_whole(Some("ali.*"), "alice"));
        assert!(!matches_whole(Some("ali"), "alice"));
        assert!(matches_whole(Some("a|b"), "b"));
        assert!(!matches_whole(Some("a|b"), "ab"));
        assert!(matches_whole(None, "anyone"));
    }
}
