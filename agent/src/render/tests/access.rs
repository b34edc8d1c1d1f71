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

fn ldap_access(ca: bool) -> PrestoAccess {
    let mut a = access();
    a.authentication = serde_json::from_value(json!({
        "kind": "ldap", "url": "ldaps://dir.corp:636",
        "user_bind_pattern": "uid=${USER},ou=people,dc=corp",
    }))
    .expect("ldap");
    if ca && let tether_shared::spec::Authentication::Ldap(l) = &mut a.authentication {
        l.ca_pem = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    }
    a
}

fn with_tls(access: PrestoAccess, version: &str) -> Rendered {
    let mut ctx = ctx();
    ctx.presto_access = Some(access);
    ctx.tls_versions.insert("analytics".into(), version.into());
    ctx.coordinator_http_cidrs = vec!["10.0.0.0/16".into()];
    render_cluster(
        "analytics",
        &cluster(Workers::Fixed { count: 3 }),
        &catalogs(),
        &ctx,
    )
}

#[test]
fn ldap_serves_the_coordinator_over_https_only_to_clients() {
    let r = with_tls(ldap_access(true), "v1");
    // The client Service offers only HTTPS; the plain port is the internal Service's.
    let svc = find(&r, "Service", "analytics");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"}])
    );
    let internal = find(&r, "Service", "analytics-internal");
    assert_eq!(internal["spec"]["ports"][0]["port"], 8080);
    // Discovery goes to the internal Service, from coordinator and workers alike.
    for cm in ["analytics-coordinator", "analytics-worker"] {
        let props = data(&r, cm)["config.properties"]
            .as_str()
            .expect("config")
            .to_owned();
        assert!(
            props.contains("discovery.uri=http://analytics-internal:8080\n"),
            "{cm}: {props}"
        );
    }
    let coordinator = data(&r, "analytics-coordinator");
    let props = coordinator["config.properties"].as_str().expect("config");
    for line in [
        "http-server.https.enabled=true\n",
        "http-server.https.port=8443\n",
        "http-server.https.keystore.path=/opt/presto-server/etc/tls/keystore.pem\n",
        "http-server.authentication.type=PASSWORD\n",
    ] {
        assert!(props.contains(line), "{line}: {props}");
    }
    assert!(
        !data(&r, "analytics-worker")["config.properties"]
            .as_str()
            .expect("w")
            .contains("https")
    );
    let auth = coordinator["password-authenticator.properties"]
        .as_str()
        .expect("authenticator");
    assert!(
        auth.contains("password-authenticator.name=ldap\n"),
        "{auth}"
    );
    let jvm = coordinator["jvm.config"].as_str().expect("jvm");
    assert!(
        jvm.contains("-Djavax.net.ssl.trustStore=/var/lib/presto/truststore/cacerts\n"),
        "{jvm}"
    );
    // The coordinator mounts the keystore and builds the trust store with the CA.
    let pod = &find(&r, "Deployment", "analytics-coordinator")["spec"]["template"]["spec"];
    let items = pod["volumes"].as_array().expect("volumes");
    let config = items
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    assert!(
        config
            .to_string()
            .contains("password-authenticator.properties"),
        "the authenticator file is one of the mounted items"
    );
    assert_eq!(
        items.iter().find(|v| v["name"] == "tls").expect("tls")["secret"]["secretName"],
        "tether-tls-analytics"
    );
    assert_eq!(
        items.iter().find(|v| v["name"] == "ldap-ca").expect("ca")["configMap"]["name"],
        "analytics-ldap-ca"
    );
    assert_eq!(
        data(&r, "analytics-ldap-ca")["ca.crt"]
            .as_str()
            .map(|s| s.contains("BEGIN")),
        Some(true)
    );
    assert_eq!(pod["initContainers"][0]["name"], "truststore");
    assert!(pod["containers"][0]["ports"].to_string().contains("8443"));
    // The plain port only from the cluster's pods and the named CIDRs.
    let np = find(&r, "NetworkPolicy", "analytics-coordinator");
    assert_eq!(
        np["spec"]["ingress"][0],
        json!({"ports": [{"protocol": "TCP", "port": 8443}]})
    );
    assert_eq!(
        np["spec"]["ingress"][1]["from"],
        json!([
            {"podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "tether", "app.kubernetes.io/instance": "analytics"}}},
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tether-agent"}}},
            {"ipBlock": {"cidr": "10.0.0.0/16"}}
        ])
    );
    // Workers keep neither the TLS mount nor the trust store.
    let worker = &find(&r, "Deployment", "analytics-worker")["spec"]["template"]["spec"];
    assert!(!worker.to_string().contains("tether-tls-analytics"));
    assert!(worker.get("initContainers").is_none());
}

#[test]
fn a_renewed_certificate_restarts_the_coordinator_only() {
    let a = with_tls(ldap_access(false), "v1");
    let b = with_tls(ldap_access(false), "v2");
    assert_ne!(
        template_annotations(&a, "analytics-coordinator"),
        template_annotations(&b, "analytics-coordinator")
    );
    assert_eq!(a.worker_template_hash, b.worker_template_hash);
    // Without a directory CA there is no trust store to build.
    let pod = &find(&a, "Deployment", "analytics-coordinator")["spec"]["template"]["spec"];
    assert!(pod.get("initContainers").is_none());
    assert!(
        !data(&a, "analytics-coordinator")["jvm.config"]
            .as_str()
            .expect("jvm")
            .contains("trustStore")
    );
    assert!(
        a.objects
            .iter()
            .all(|o| o["metadata"]["name"] != "analytics-ldap-ca")
    );
}

#[test]
fn with_passwords_a_user_may_only_be_the_one_who_authenticated() {
    let r = with_tls(ldap_access(false), "v1");
    let rules: Value = serde_json::from_str(
        data(&r, "analytics-access")["rules.json"]
            .as_str()
            .expect("rules"),
    )
    .expect("json");
    assert_eq!(
        rules["principals"],
        json!([{"principal": "(.*)", "allow": true}])
    );
    let open = with(Some(access()));
    let rules: Value = serde_json::from_str(
        data(&open, "analytics-access")["rules.json"]
            .as_str()
            .expect("rules"),
    )
    .expect("json");
    assert!(
        rules.get("principals").is_none(),
        "no principal to hold users to"
    );
}
