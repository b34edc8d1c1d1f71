//! Access control in the rendered cluster: which objects carry it, and what a change of
//! rules restarts (nothing for catalog and schema rules; the coordinator for table rules).

use super::*;
use tether_shared::spec::{CatalogAccess, PrestoAccess};

fn access() -> PrestoAccess {
    serde_json::from_value(json!({
        "rules": {"catalogs": [
            {"user": "alice", "catalog": "lake", "allow": "read-only"},
            {"user": "admin", "allow": "all"}]},
        "table_rules": {"lake": [{"user": "alice", "schema": "sales", "privileges": ["SELECT"]}]},
    }))
    .expect("access")
}

fn with(access: Option<PrestoAccess>) -> Rendered {
    let mut ctx = ctx();
    ctx.presto_access = access;
    render_cluster(
        "analytics",
        &cluster(Workers::Fixed { count: 3 }),
        &catalogs(),
        &ctx,
    )
}

fn template_annotations(r: &Rendered, deployment: &str) -> Value {
    find(r, "Deployment", deployment)["spec"]["template"]["metadata"]["annotations"].clone()
}

#[test]
fn the_rules_reach_every_presto_pod_as_a_directory_mount() {
    let r = with(Some(access()));
    let rules = data(&r, "analytics-access");
    assert!(rules.contains_key("rules.json") && rules.contains_key("lake-tables.json"));
    let coordinator = data(&r, "analytics-coordinator");
    assert!(
        coordinator["access-control.properties"]
            .as_str()
            .is_some_and(|p| p.contains("access-control.name=file\n"))
    );
    // The MySQL catalog has no table rules; only the Hive one gets `hive.security=file`.
    let catalog = data(&r, "analytics-catalog");
    let lake = catalog["lake.properties"].as_str().expect("lake");
    assert!(lake.contains("hive.security=file\n"), "{lake}");
    assert!(
        !catalog["db.properties"]
            .as_str()
            .expect("db")
            .contains("security")
    );
    for d in ["analytics-coordinator", "analytics-worker"] {
        let pod = &find(&r, "Deployment", d)["spec"]["template"]["spec"];
        let mount = pod["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == "access")
            .unwrap_or_else(|| panic!("{d} mounts no rules"));
        assert_eq!(mount["mountPath"], "/opt/presto-server/etc/access");
        assert!(
            mount.get("subPath").is_none(),
            "a subPath mount is never updated"
        );
        let items = pod["volumes"][0]["configMap"]["items"]
            .as_array()
            .expect("items");
        let has = items
            .iter()
            .any(|i| i["key"] == "access-control.properties");
        assert_eq!(has, d == "analytics-coordinator", "{d}");
    }
    let none = with(None);
    assert!(!kinds_and_names(&none).contains(&("ConfigMap".into(), "analytics-access".into())));
}

#[test]
fn a_catalog_rule_change_restarts_nothing_and_a_table_rule_change_only_the_coordinator() {
    let base = with(Some(access()));
    let mut changed = access();
    changed.rules.catalogs[0].allow = CatalogAccess::None;
    let rules_only = with(Some(changed.clone()));
    assert_ne!(
        data(&rules_only, "analytics-access"),
        data(&base, "analytics-access")
    );
    for d in ["analytics-coordinator", "analytics-worker"] {
        assert_eq!(
            template_annotations(&rules_only, d),
            template_annotations(&base, d),
            "{d}"
        );
    }
    changed.table_rules.get_mut("lake").expect("lake")[0].table = Some("orders".into());
    let tables = with(Some(changed));
    assert_ne!(
        template_annotations(&tables, "analytics-coordinator"),
        template_annotations(&base, "analytics-coordinator")
    );
    assert_eq!(
        template_annotations(&tables, "analytics-worker"),
        template_annotations(&base, "analytics-worker")
    );
}
