//! Who may read what: the compute plane's [`PrestoAccess`] as prestodb's own files.
//!
//! - System access control (prestodb `FileBasedSystemAccessControl`, factory `file`):
//!   `etc/access-control.properties` in the coordinator's ConfigMap names
//!   `security.config-file` (the rules JSON: `catalogs`, `schemas`) and
//!   `security.refresh-period`, with which Presto re-reads the file (`memoizeWithExpiration`).
//!   The rules file lives in a ConfigMap of its own, `<cluster>-access`, mounted as a
//!   directory (not `subPath`: the kubelet then updates the files in place, which a
//!   `subPath` mount never sees — Kubernetes "ConfigMaps: Mounted ConfigMaps are updated
//!   automatically"), and it is in no pod-template hash: a change of catalog or schema
//!   rules reaches the running coordinator without a restart.
//! - Table rules, per Hive catalog (prestodb `HiveSecurityModule`: `hive.security=file` binds
//!   `FileBasedAccessControlModule`, reading `security.config-file` — `tables` with
//!   `user`/`schema`/`table` regexes and `privileges`). prestodb's connector-level config
//!   has no refresh period: the file is read when the catalog loads, so its hash is part
//!   of the coordinator's pod template (a change restarts the coordinator, the one node
//!   that checks access; the workers load the same file but never consult it, so they are
//!   left running).
//!
//! Access checks happen on the coordinator (`AccessControlManager` while analysing); the
//! workers still load every catalog file, so the rules directory is mounted on them too.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tether_shared::spec::{CatalogRule, PrestoAccess, SchemaRule, TableRule};

use super::config::{ETC_DIR, properties};
use super::data_hash;

/// Where the `<cluster>-access` ConfigMap is mounted on every Presto pod.
pub fn access_dir() -> String {
    format!("{ETC_DIR}/access")
}
/// The system rules file in [`access_dir`].
pub const RULES_FILE: &str = "rules.json";
/// The key of `access-control.properties` in the coordinator's ConfigMap.
pub const ACCESS_CONTROL_PROPERTIES: &str = "access-control.properties";
/// How often Presto re-reads the system rules (`security.refresh-period`). The kubelet
/// takes up to its sync period (about a minute) to update a mounted ConfigMap; this adds
/// little to it.
pub const REFRESH_PERIOD: &str = "10s";

/// The ConfigMap with the rules files: `<cluster>-access`.
pub fn access_configmap_name(cluster: &str) -> String {
    format!("{cluster}-access")
}

/// The table rules file of a Hive catalog in [`access_dir`].
pub fn table_rules_file(catalog: &str) -> String {
    format!("{catalog}-tables.json")
}

/// What one cluster's access control renders to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessFiles {
    /// Extra keys of the coordinator's ConfigMap (`access-control.properties`).
    pub coordinator_files: BTreeMap<String, String>,
    /// The `<cluster>-access` ConfigMap's data.
    pub rules: BTreeMap<String, String>,
    /// Per Hive catalog with table rules, the properties its catalog file gains.
    pub catalog_properties: BTreeMap<String, Vec<(String, String)>>,
    /// Hash of what Presto reads only at start (the table rules): part of the
    /// coordinator's pod template.
    pub start_hash: String,
}

/// The access files of a cluster that attaches `catalogs` (its catalog files' names,
/// without `.properties`); `None` without a document (Presto's defaults: everyone may do
/// everything).
pub fn render(access: Option<&PrestoAccess>, catalogs: &[String]) -> Option<AccessFiles> {
    let access = access?;
    let mut out = AccessFiles::default();
    out.coordinator_files.insert(
        ACCESS_CONTROL_PROPERTIES.to_owned(),
        properties([
            ("access-control.name", "file".to_owned()),
            (
                "security.config-file",
                format!("{}/{RULES_FILE}", access_dir()),
            ),
            ("security.refresh-period", REFRESH_PERIOD.to_owned()),
        ]),
    );
    if let Some(l) = super::tls::ldap_of(access) {
        out.coordinator_files.insert(
            super::tls::PASSWORD_AUTHENTICATOR_PROPERTIES.to_owned(),
            super::tls::password_authenticator_properties(l),
        );
    }
    out.rules
        .insert(RULES_FILE.to_owned(), system_rules_json(access).to_string());
    let mut start = BTreeMap::new();
    for (catalog, rules) in &access.table_rules {
        if !catalogs.contains(catalog) {
            continue;
        }
        let file = table_rules_file(catalog);
        let text = json!({"tables": rules.iter().map(table_rule).collect::<Vec<_>>()}).to_string();
        start.insert(file.clone(), text.clone());
        out.rules.insert(file.clone(), text);
        out.catalog_properties.insert(
            catalog.clone(),
            vec![
                ("hive.security".to_owned(), "file".to_owned()),
                (
                    "security.config-file".to_owned(),
                    format!("{}/{file}", access_dir()),
                ),
            ],
        );
    }
    out.start_hash = data_hash(&start);
    Some(out)
}

/// The rules JSON of `FileBasedSystemAccessControl` (`FileBasedSystemAccessControlRules`:
/// `catalogs`, `schemas`). Without schema rules the key is left out: Presto then lets
/// whoever has `all` on a catalog own its schemas. Presto itself appends a rule giving
/// everyone the `system` catalog after these.
pub fn system_rules_json(access: &PrestoAccess) -> Value {
    let mut doc = json!({
        "catalogs": access.rules.catalogs.iter().map(catalog_rule).collect::<Vec<_>>(),
    });
    if !access.rules.schemas.is_empty() {
        doc["schemas"] = access.rules.schemas.iter().map(schema_rule).collect();
    }
    if super::tls::ldap_of(access).is_some() {
        // Without `principals`, prestodb lets any authenticated principal run queries as
        // any user it names in `X-Presto-User` (`checkCanSetUser` returns at once). This
        // rule holds the user to the name that authenticated: the LDAP authenticator's
        // principal is the user name, and a rule without `user` allows exactly a user equal
        // to one of the principal regex's groups (`PrincipalUserMatchRule.match`; with
        // `user` it would compare as a regex). A request without a principal — any
        // statement over the plain HTTP port — is denied (`denySetUser`).
        doc["principals"] = json!([{"principal": "(.*)", "allow": true}]);
    }
    doc
}

fn catalog_rule(r: &CatalogRule) -> Value {
    let mut v = json!({"allow": r.allow});
    optional(&mut v, "user", &r.user);
    optional(&mut v, "catalog", &r.catalog);
    v
}

fn schema_rule(r: &SchemaRule) -> Value {
    let mut v = json!({"owner": r.owner});
    optional(&mut v, "user", &r.user);
    optional(&mut v, "schema", &r.schema);
    v
}

fn table_rule(r: &TableRule) -> Value {
    let mut v = json!({"privileges": r.privileges});
    optional(&mut v, "user", &r.user);
    optional(&mut v, "schema", &r.schema);
    optional(&mut v, "table", &r.table);
    v
}

/// Absent regexes stay absent: Presto's default for them is `.*`.
fn optional(v: &mut Value, key: &str, value: &Option<String>) {
    if let Some(s) = value {
        v[key] = json!(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> PrestoAccess {
        serde_json::from_value(json!({
            "rules": {
                "catalogs": [
                    {"user": "alice", "catalog": "lake", "allow": "read-only"},
                    {"user": "admin", "allow": "all"}],
                "schemas": [{"user": "admin", "owner": true}]},
            "table_rules": {
                "lake": [{"user": "alice", "schema": "sales", "privileges": ["SELECT"]}],
                "archive": [{"privileges": []}]},
        }))
        .expect("access")
    }

    #[test]
    fn no_document_renders_nothing() {
        assert_eq!(render(None, &["lake".into()]), None);
    }

    #[test]
    fn rules_render_as_prestos_own_files() {
        let files = render(Some(&access()), &["lake".into()]).expect("files");
        let props = &files.coordinator_files[ACCESS_CONTROL_PROPERTIES];
        assert_eq!(
            props,
            "access-control.name=file\n\
             security.config-file=/opt/presto-server/etc/access/rules.json\n\
             security.refresh-period=10s\n"
        );
        let rules: Value = serde_json::from_str(&files.rules[RULES_FILE]).expect("json");
        assert_eq!(
            rules,
            json!({
                "catalogs": [
                    {"user": "alice", "catalog": "lake", "allow": "read-only"},
                    {"user": "admin", "allow": "all"}],
                "schemas": [{"user": "admin", "owner": true}],
            })
        );
        // Only attached catalogs get table rules; "archive" is not attached.
        assert_eq!(
            files.rules.keys().collect::<Vec<_>>(),
            ["lake-tables.json", "rules.json"]
        );
        let tables: Value = serde_json::from_str(&files.rules["lake-tables.json"]).expect("json");
        assert_eq!(
            tables,
            json!({"tables": [{"user": "alice", "schema": "sales", "privileges": ["SELECT"]}]})
        );
        assert_eq!(
            files.catalog_properties["lake"],
            vec![
                ("hive.security".to_owned(), "file".to_owned()),
                (
                    "security.config-file".to_owned(),
                    "/opt/presto-server/etc/access/lake-tables.json".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn only_table_rules_move_the_start_hash() {
        let base = render(Some(&access()), &["lake".into()]).expect("files");
        let mut changed = access();
        changed.rules.catalogs[0].allow = tether_shared::spec::CatalogAccess::All;
        let system_only = render(Some(&changed), &["lake".into()]).expect("files");
        assert_eq!(system_only.start_hash, base.start_hash);
        assert_ne!(system_only.rules, base.rules);
        changed.table_rules.get_mut("lake").expect("lake")[0]
            .privileges
            .clear();
        let tables = render(Some(&changed), &["lake".into()]).expect("files");
        assert_ne!(tables.start_hash, base.start_hash);
    }
}
