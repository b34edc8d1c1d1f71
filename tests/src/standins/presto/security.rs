//! Authentication and access control as the coordinator's mounted files configure them
//! ([`super::pod`]), enforced as prestodb does:
//!
//! - HTTPS (airlift `HttpServer`): `http-server.https.enabled` with a PEM
//!   `http-server.https.keystore.path` holding the key and the certificate chain; a
//!   keystore that is missing or unreadable stops the server from starting.
//! - Password authentication (`http-server.authentication.type=PASSWORD`; airlift
//!   `AuthenticationFilter`): only requests over HTTPS are authenticated, plain HTTP is
//!   passed on and its `X-Presto-User` believed. Without credentials, or with wrong ones,
//!   401 with `WWW-Authenticate: Basic realm="Presto"`.
//! - The LDAP authenticator (prestodb `LdapAuthenticator`, `LdapConfig`): `ldap.url` must be
//!   `ldaps://`; the user is bound as each `ldap.user-bind-pattern` (`:`-separated, `${USER}`
//!   replaced) with the password; with `ldap.user-base-dn` and `ldap.group-auth-pattern` a
//!   search for the user must find an entry (`User [x] not a member of the authorized
//!   group`); names with LDAP special characters are refused. The directory's certificate
//!   is checked against the JVM's trust store: the one `-Djavax.net.ssl.trustStore` in
//!   `jvm.config` names (the init container imports the CA files it mounts; here those
//!   files are the store), else the JDK's public CAs.
//! - System access control (`FileBasedSystemAccessControl`, `access-control.name=file`):
//!   `catalogs` rules, first match by whole-string regexes on user and catalog, `all` ⊃
//!   `read-only` ⊃ `none`, no match denies, `system` always open; `principals` rules checked
//!   by `checkCanSetUser` (absent: any principal may be any user; present: a request without
//!   principal is denied). The rules file is re-read after `security.refresh-period`.
//! - Hive table rules (`hive.security=file`, `FileBasedAccessControl`): `tables` rules, first
//!   match on user, schema and table, read once when the catalog loads.
//!
//! Denials are `AccessDeniedException`s: `Access Denied: …`, `PERMISSION_DENIED` (code 4,
//! `USER_ERROR`), and fail the query. What a statement reads or writes comes from its text:
//! the tables after `FROM`/`JOIN` are read, the one after `INSERT INTO` written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use regex::Regex;
use serde_json::Value;

use super::pod::{PodFiles, PodSource};

/// The image's configuration directory.
const ETC: &str = "/opt/presto-server/etc";

/// Why a request was not authenticated: the 401's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized(pub String);

/// The coordinator's security, loaded at start like a pod's.
pub(crate) struct Security {
    src: PodSource,
    files: PodFiles,
    /// The HTTPS listener's configuration, when `http-server.https.enabled`.
    pub https: Option<Arc<rustls::ServerConfig>>,
    password: Option<LdapAuthenticator>,
    system: Option<SystemAccess>,
    /// Per Hive catalog with `hive.security=file`, its table rules.
    tables: BTreeMap<String, Vec<TableRule>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("https", &self.https.is_some())
            .field("password", &self.password.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads a `.properties` text as Java does.
pub(crate) fn properties(text: &str) -> Result<HashMap<String, String>, String> {
    java_properties::read(text.as_bytes()).map_err(|e| e.to_string())
}

impl Security {
    /// Mounts the pod and reads its configuration; an error is why Presto would not start.
    pub fn load(src: PodSource) -> Result<Self, String> {
        let files = PodFiles::mount(&src)?;
        let read = |path: &str| {
            files
                .text(&src, path)
                .ok_or_else(|| format!("{path} is not mounted"))
        };
        let config = properties(&read(&format!("{ETC}/config.properties"))?)?;
        let on = |k: &str| config.get(k).is_some_and(|v| v.trim() == "true");
        let https = match on("http-server.https.enabled") {
            true => {
                let path = config
                    .get("http-server.https.keystore.path")
                    .ok_or("http-server.https.keystore.path is required with HTTPS")?;
                Some(Arc::new(server_config(&read(path)?)?))
            }
            false => None,
        };
        let auth = config
            .get("http-server.authentication.type")
            .map(|t| t.split(',').any(|t| t.trim() == "PASSWORD"))
            .unwrap_or(false);
        let password = match auth {
            true if https.is_none() => {
                return Err("password authentication needs http-server.https.enabled".into());
            }
            true => {
                let jvm = read(&format!("{ETC}/jvm.config")).unwrap_or_default();
                Some(LdapAuthenticator::load(
                    &read(&format!("{ETC}/password-authenticator.properties"))?,
                    &jvm,
                    &files,
                )?)
            }
            false => None,
        };
        let system = match files.text(&src, &format!("{ETC}/access-control.properties")) {
            Some(text) => Some(SystemAccess::load(&properties(&text)?, &files, &src)?),
            None => None,
        };
        let mut tables = BTreeMap::new();
        for path in files.under(&format!("{ETC}/catalog/")) {
            let Some(catalog) = path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".properties"))
            else {
                continue;
            };
            let p = properties(&read(path)?)?;
            if p.get("hive.security").map(String::as_str) == Some("file") {
                let file = p.get("security.config-file").ok_or_else(|| {
                    format!("catalog {catalog}: hive.security=file needs security.config-file")
                })?;
                let doc: Value =
                    serde_json::from_str(&read(file)?).map_err(|e| format!("{file}: {e}"))?;
                tables.insert(catalog.to_owned(), TableRule::list(&doc["tables"])?);
            }
        }
        Ok(Security {
            src,
            files,
            https,
            password,
            system,
            tables,
        })
    }

    /// Whether HTTPS requests must carry a password.
    pub fn requires_password(&self) -> bool {
        self.password.is_some()
    }

    /// Authenticates an HTTPS request's `Authorization` header: the principal's name.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<String, Unauthorized> {
        let Some(ldap) = &self.password else {
            return Err(Unauthorized("no authenticator".into()));
        };
        let (user, password) = authorization
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            .ok_or_else(|| Unauthorized("Unauthorized".into()))?;
        ldap.authenticate(&user, &password).await?;
        Ok(user)
    }

    /// `checkCanSetUser`, then the reads and writes of `sql` for `user`; the denial's
    /// message otherwise.
    pub fn check_statement(
        &self,
        principal: Option<&str>,
        user: &str,
        session: (Option<&str>, Option<&str>),
        sql: &str,
    ) -> Result<(), String> {
        let Some(system) = &self.system else {
            return Ok(());
        };
        let rules = system.rules(&self.src, &self.files);
        rules.check_set_user(principal, user)?;
        for (write, name) in table_refs(sql) {
            let Some((catalog, schema, table)) = qualify(&name, session) else {
                continue;
            };
            rules.check_access_catalog(user, &catalog, false)?;
            if write {
                rules
                    .check_access_catalog(user, &catalog, true)
                    .map_err(|_| {
                        format!(
                            "Access Denied: Cannot insert into table {catalog}.{schema}.{table}"
                        )
                    })?;
            }
            if let Some(t) = self.tables.get(&catalog) {
                let want = if write { "INSERT" } else { "SELECT" };
                if !TableRule::allows(t, user, &schema, &table, want) {
                    return Err(match write {
                        true => format!("Access Denied: Cannot insert into table {schema}.{table}"),
                        false => {
                            format!("Access Denied: Cannot select from table {schema}.{table}")
                        }
                    });
                }
            }
        }
        Ok(())
    }
}

/// rustls's server configuration from a PEM keystore (key and chain in one file, as
/// airlift's `PemReader` reads it).
fn server_config(pem: &str) -> Result<rustls::ServerConfig, String> {
    let certs =
        tether_shared::pki::certs_from_pem(pem.as_bytes()).map_err(|e| format!("keystore: {e}"))?;
    if certs.is_empty() {
        return Err("keystore: no certificate".into());
    }
    let key =
        tether_shared::pki::key_from_pem(pem.as_bytes()).map_err(|e| format!("keystore: {e}"))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("keystore: {e}"))
}

/// prestodb's `LdapAuthenticator`.
struct LdapAuthenticator {
    url: String,
    bind_patterns: Vec<String>,
    group: Option<(String, String)>,
    tls: Arc<rustls::ClientConfig>,
}

impl LdapAuthenticator {
    fn load(text: &str, jvm: &str, files: &PodFiles) -> Result<Self, String> {
        let p = properties(text)?;
        if p.get("password-authenticator.name").map(String::as_str) != Some("ldap") {
            return Err(
                "password-authenticator.name must name a loaded authenticator (ldap)".into(),
            );
        }
        let url = p.get("ldap.url").ok_or("ldap.url is required")?.clone();
        if !url.starts_with("ldaps://") {
            // LdapConfig: @Pattern(regexp = "^ldaps://.*", message = "...")
            return Err("ldap.url: LDAP without SSL/TLS unsupported. Expected ldaps://".into());
        }
        let bind_patterns: Vec<String> = p
            .get("ldap.user-bind-pattern")
            .ok_or("ldap.user-bind-pattern is required")?
            .split(':')
            .map(str::to_owned)
            .collect();
        let group = match (p.get("ldap.user-base-dn"), p.get("ldap.group-auth-pattern")) {
            (Some(b), Some(g)) => Some((b.clone(), g.clone())),
            (None, Some(_)) => {
                return Err("ldap.user-base-dn is required with ldap.group-auth-pattern".into());
            }
            _ => None,
        };
        let mut roots = rustls::RootCertStore::empty();
        let custom = jvm
            .lines()
            .any(|l| l.trim().starts_with("-Djavax.net.ssl.trustStore="));
        if custom {
            // The trust store is what the init container built from the CA files it mounts.
            for pem in files.init.values() {
                for c in tether_shared::pki::certs_from_pem(pem).unwrap_or_default() {
                    let _ = roots.add(c);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            url,
            bind_patterns,
            group,
            tls: Arc::new(tls),
        })
    }

    async fn authenticate(&self, user: &str, password: &str) -> Result<(), Unauthorized> {
        let denied = |m: &str| Unauthorized(format!("Access Denied: {m}"));
        if user.chars().any(|c| ",=+<>#;*()\"\\\u{0}".contains(c)) {
            return Err(denied("Username contains a special LDAP character"));
        }
        if password.is_empty() {
            return Err(denied("Invalid credentials"));
        }
        for pattern in &self.bind_patterns {
            let dn = pattern.replace("${USER}", user);
            let settings = ldap3::LdapConnSettings::new()
                .set_conn_timeout(Duration::from_secs(5))
                .set_config(self.tls.clone());
            let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, &self.url)
                .await
                .map_err(|e| Unauthorized(format!("Authentication error: {e}")))?;
            ldap3::drive!(conn);
            let bound = ldap
                .simple_bind(&dn, password)
                .await
                .and_then(|r| r.success());
            if bound.is_err() {
                let _ = ldap.unbind().await;
                continue;
            }
            if let Some((base, filter)) = &self.group {
                let filter = filter.replace("${USER}", user);
                let found = ldap
                    .search(base, ldap3::Scope::Subtree, &filter, vec!["dn"])
                    .await
                    .and_then(|r| r.success())
                    .map(|(entries, _)| entries.len())
                    .unwrap_or(0);
                let _ = ldap.unbind().await;
                if found == 0 {
                    return Err(denied(&format!(
                        "User [{user}] not a member of the authorized group"
                    )));
                }
                return Ok(());
            }
            let _ = ldap.unbind().await;
            return Ok(());
        }
        Err(denied("Invalid credentials"))
    }
}

/// `FileBasedSystemAccessControl` with its refresh.
struct SystemAccess {
    path: String,
    refresh: Option<Duration>,
    cached: Mutex<(Instant, Arc<Rules>)>,
}

impl SystemAccess {
    fn load(
        p: &HashMap<String, String>,
        files: &PodFiles,
        src: &PodSource,
    ) -> Result<Self, String> {
        if p.get("access-control.name").map(String::as_str) != Some("file") {
            return Err("access-control.name: only the file access control is modelled".into());
        }
        let path = p
            .get("security.config-file")
            .ok_or("Security configuration must contain the 'security.config-file' property")?
            .clone();
        let refresh = match p.get("security.refresh-period") {
            Some(d) => Some(
                airlift_duration(d)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        format!(
                            "Invalid duration value '{d}' for property 'security.refresh-period'"
                        )
                    })?,
            ),
            None => None,
        };
        let rules = Rules::parse(
            &files
                .text(src, &path)
                .ok_or_else(|| format!("{path} is not mounted"))?,
        )?;
        Ok(Self {
            path,
            refresh,
            cached: Mutex::new((Instant::now(), Arc::new(rules))),
        })
    }

    /// The rules, re-read once `security.refresh-period` has passed (`memoizeWithExpiration`);
    /// a file that does not parse keeps the last rules (Presto would fail the check).
    fn rules(&self, src: &PodSource, files: &PodFiles) -> Arc<Rules> {
        let mut c = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(every) = self.refresh
            && c.0.elapsed() >= every
            && let Some(text) = files.text(src, &self.path)
            && let Ok(rules) = Rules::parse(&text)
        {
            *c = (Instant::now(), Arc::new(rules));
        }
        c.1.clone()
    }
}

/// An airlift `Duration` (`10s`, `1.5m`, `250ms`).
fn airlift_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.trim().parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A Java regex that must match the whole string.
fn whole(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("regex {pattern:?}: {e}"))
}

fn opt_regex(v: &Value, key: &str) -> Result<Regex, String> {
    whole(v[key].as_str().unwrap_or(".*"))
}

/// `FileBasedSystemAccessControlRules`.
struct Rules {
    /// (user, catalog, access: 2 all, 1 read-only, 0 none)
    catalogs: Vec<(Regex, Regex, u8)>,
    /// (principal, user replacement, allow)
    principals: Option<Vec<(Regex, Option<String>, bool)>>,
}

impl Rules {
    fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("rules: {e}"))?;
        let mut catalogs = Vec::new();
        for r in doc["catalogs"].as_array().into_iter().flatten() {
            let allow = match &r["allow"] {
                Value::String(s) if s == "all" => 2,
                Value::String(s) if s == "read-only" => 1,
                Value::String(s) if s == "none" => 0,
                Value::Bool(b) => u8::from(*b) * 2,
                other => return Err(format!("rules: unknown allow {other}")),
            };
            catalogs.push((opt_regex(r, "user")?, opt_regex(r, "catalog")?, allow));
        }
        // Presto's own last rule: everyone may read the system catalog.
        catalogs.push((whole(".*")?, whole("system")?, 2));
        let principals = match doc["principals"].as_array() {
            Some(list) => Some(
                list.iter()
                    .map(|r| {
                        Ok((
                            whole(
                                r["principal"]
                                    .as_str()
                                    .ok_or("principals: principal is required")?,
                            )?,
                            r["user"].as_str().map(str::to_owned),
                            r["allow"] == true,
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            ),
            None => None,
        };
        Ok(Self {
            catalogs,
            principals,
        })
    }

    fn check_set_user(&self, principal: Option<&str>, user: &str) -> Result<(), String> {
        let Some(rules) = &self.principals else {
            return Ok(());
        };
        let denied = || {
            Err(format!(
                "Access Denied: Principal {} cannot become user {user}",
                principal.unwrap_or("null")
            ))
        };
        let Some(principal) = principal else {
            return denied();
        };
        // prestodb `PrincipalUserMatchRule.match`: with `user`, the principal regex's
        // replacement of it, compiled, must match the user; without, one of its groups
        // must equal the user.
        for (re, user_pattern, allow) in rules {
            let Some(caps) = re.captures(principal) else {
                continue;
            };
            let matched = match user_pattern {
                Some(p) => {
                    let mut expanded = String::new();
                    caps.expand(p, &mut expanded);
                    whole(&expanded).is_ok_and(|u| u.is_match(user))
                }
                None => caps.iter().skip(1).flatten().any(|g| g.as_str() == user),
            };
            if matched {
                return if *allow { Ok(()) } else { denied() };
            }
        }
        denied()
    }

    fn check_access_catalog(&self, user: &str, catalog: &str, write: bool) -> Result<(), String> {
        let need = if write { 2 } else { 1 };
        let granted = self
            .catalogs
            .iter()
            .find(|(u, c, _)| u.is_match(user) && c.is_match(catalog))
            .map(|(_, _, a)| *a)
            .unwrap_or(0);
        match granted >= need {
            true => Ok(()),
            false => Err(format!("Access Denied: Cannot access catalog {catalog}")),
        }
    }
}

/// Hive's `TableAccessControlRule`.
struct TableRule {
    user: Regex,
    schema: Regex,
    table: Regex,
    privileges: Vec<String>,
}

impl TableRule {
    fn list(v: &Value) -> Result<Vec<Self>, String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                Ok(TableRule {
                    user: opt_regex(r, "user")?,
                    schema: opt_regex(r, "schema")?,
                    table: opt_regex(r, "table")?,
                    privileges: r["privileges"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect(),
                })
            })
            .collect()
    }

    /// First matching rule's privileges include `want` (`OWNERSHIP` implies all).
    fn allows(rules: &[Self], user: &str, schema: &str, table: &str, want: &str) -> bool {
        rules
            .iter()
            .find(|r| r.user.is_match(user) && r.schema.is_match(schema) && r.table.is_match(table))
            .is_some_and(|r| r.privileges.iter().any(|p| p == want || p == "OWNERSHIP"))
    }
}

/// The tables a statement names: `(written, dotted name)`.
pub(crate) fn table_refs(sql: &str) -> Vec<(bool, Vec<String>)> {
    let tokens = tokens(sql);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let kw = tokens[i].to_ascii_uppercase();
        let write = kw == "INTO" && i > 0 && tokens[i - 1].eq_ignore_ascii_case("INSERT");
        if kw == "FROM" || kw == "JOIN" || write {
            let mut name = Vec::new();
            let mut j = i + 1;
            while j < tokens.len() && tokens[j] != "(" && tokens[j] != "," {
                name.push(tokens[j].trim_matches('"').to_ascii_lowercase());
                if tokens.get(j + 1).map(String::as_str) != Some(".") {
                    break;
                }
                j += 2;
            }
            if !name.is_empty() {
                out.push((write, name));
            }
            i = j;
        }
        i += 1;
    }
    out
}

fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            // A string literal: skipped whole.
            chars.next();
            for d in chars.by_ref() {
                if d == '\'' {
                    break;
                }
            }
        } else if c == '"' {
            let mut s = String::from('"');
            chars.next();
            for d in chars.by_ref() {
                s.push(d);
                if d == '"' {
                    break;
                }
            }
            out.push(s);
        } else if c.is_alphanumeric() || c == '_' {
            let mut s = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    s.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(s);
        } else {
            out.push(c.to_string());
            chars.next();
        }
    }
    out
}

/// `catalog.schema.table` from a name and the session's catalog and schema.
fn qualify(
    name: &[String],
    (catalog, schema): (Option<&str>, Option<&str>),
) -> Option<(String, String, String)> {
    match name {
        [c, s, t] => Some((c.clone(), s.clone(), t.clone())),
        [s, t] => Some((catalog?.to_owned(), s.clone(), t.clone())),
        [t] => Some((catalog?.to_owned(), schema?.to_owned(), t.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_what_they_read_and_write() {
        assert_eq!(
            table_refs("SELECT * FROM lake.sales.orders o JOIN db.crm.people p ON o.id = p.id"),
            vec![
                (false, vec!["lake".into(), "sales".into(), "orders".into()]),
                (false, vec!["db".into(), "crm".into(), "people".into()]),
            ]
        );
        assert_eq!(
            table_refs("INSERT INTO sales.orders SELECT 1 WHERE 'from x' = 'y'"),
            vec![(true, vec!["sales".into(), "orders".into()])]
        );
        assert!(table_refs("SELECT 1").is_empty());
        assert!(table_refs("SELECT * FROM (SELECT 1)").is_empty());
    }

    #[test]
    fn first_matching_rule_wins_and_system_stays_open() {
        let r = Rules::parse(
            r#"{"catalogs": [{"user": "alice", "catalog": "lake", "allow": "read-only"},
                              {"user": "admin", "allow": "all"}],
                "principals": [{"principal": "(.*)", "allow": true}]}"#,
        )
        .unwrap();
        assert!(r.check_access_catalog("alice", "lake", false).is_ok());
        assert_eq!(
            r.check_access_catalog("alice", "lake", true),
            Err("Access Denied: Cannot access catalog lake".into())
        );
        assert!(r.check_access_catalog("alice", "db", false).is_err());
        assert!(
            r.check_access_catalog("alicex", "lake", false).is_err(),
            "whole match"
        );
        assert!(r.check_access_catalog("admin", "db", true).is_ok());
        assert!(r.check_access_catalog("bob", "system", false).is_ok());
        assert!(r.check_set_user(Some("alice"), "alice").is_ok());
        assert_eq!(
            r.check_set_user(Some("alice"), "admin"),
            Err("Access Denied: Principal alice cannot become user admin".into())
        );
        assert!(
            r.check_set_user(None, "alice").is_err(),
            "plain HTTP has no principal"
        );
        assert!(
            r.check_set_user(Some("alice.b"), "aliceXb").is_err(),
            "equality, not a regex"
        );
        let by_pattern = Rules::parse(
            r#"{"catalogs": [], "principals": [{"principal": "(.*)@corp", "user": "$1", "allow": true}]}"#,
        )
        .unwrap();
        assert!(
            by_pattern
                .check_set_user(Some("alice@corp"), "alice")
                .is_ok()
        );
        assert!(
            by_pattern
                .check_set_user(Some("alice@corp"), "bob")
                .is_err()
        );
        let open = Rules::parse(r#"{"catalogs": []}"#).unwrap();
        assert!(open.check_set_user(None, "anyone").is_ok());
    }
}
