//! Every object the agent renders is one the Kubernetes API server of the stack's version
//! accepts: `kubernetes-validate --strict` (PyPI; the Kubernetes OpenAPI schemas, unknown
//! fields refused) over a matrix of cluster specs — fixed and autoscaling workers, the
//! built-in metastore on and off, every connector, both kinds of secret reference, with and
//! without the install's Presto role — and the synced catalog Secret.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use tether_agent::render::{RenderContext, objects, render_cluster};
use tether_shared::spec::{CatalogSpec, ClusterSpec};

/// The Kubernetes version the CloudFormation stack creates (`KubernetesVersion` default).
const KUBERNETES: &str = "1.33.0";

fn catalogs() -> BTreeMap<String, CatalogSpec> {
    let specs = json!({
        "lake": {"connector": "hive", "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "us-east-1"}},
        "raw": {"connector": "hive", "properties": {}},
        "orders": {"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://orders-db:3306"},
                   "credentials": {"secret_ref": "k8s:orders-db"}},
        "billing": {"connector": "postgresql", "properties": {"connection-url": "jdbc:postgresql://billing:5432/app"},
                    "credentials": {"secret_ref": "arn:aws:secretsmanager:us-east-1:111122223333:secret:billing-AbCd"}},
    });
    serde_json::from_value(specs).expect("catalog specs")
}

fn specs() -> Vec<(String, ClusterSpec)> {
    let base = json!({"presto_version": "0.293", "catalogs": ["lake", "orders", "billing"],
                      "coordinator": {"cpu": "2", "memory": "8Gi"}, "worker": {"cpu": "4", "memory": "16Gi"}});
    let mut out = Vec::new();
    for (label, workers) in [
        ("fixed", json!({"count": 3})),
        (
            "autoscaling",
            json!({"min": 2, "max": 10, "target_cpu_percent": 70}),
        ),
    ] {
        for metastore in [false, true] {
            let mut s = base.clone();
            s["workers"] = workers.clone();
            if metastore {
                s["hive_metastore"] = json!({"enabled": true, "warehouse": "s3://lake/warehouse"});
                s["catalogs"] = json!(["raw", "orders", "billing"]);
                s["node_selector"] = json!({"tether.io/node-group": "etl"});
                s["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "presto", "effect": "NoSchedule"},
                                          {"key": "spot", "operator": "Exists"}]);
                s["worker"] = json!({"cpu": "500m", "memory": "1Gi"});
            }
            let spec: ClusterSpec = serde_json::from_value(s).expect("cluster spec");
            out.push((format!("{label}-metastore-{metastore}"), spec));
        }
    }
    out
}

fn ctx(role: Option<&str>) -> RenderContext {
    RenderContext {
        namespace: "default".into(),
        compute_plane_id: "cp-1".into(),
        drain_grace_seconds: 120,
        presto_role_arn: role.map(str::to_owned),
        secret_versions: BTreeMap::from([("billing".into(), "v-1".into())]),
        metastore_db: role.map(|_| tether_agent::render::MetastoreDb {
            endpoint: "tether-db.abc.us-east-1.rds.amazonaws.com:5432".into(),
            version: "v-7".into(),
        }),
        withheld_catalogs: Default::default(),
        // With the install's role, also with access rules (the rules ConfigMap and mounts)
        // and LDAP authentication (HTTPS, the trust store's init container, the internal
        // Service and the NetworkPolicy).
        presto_access: role.map(|_| {
            serde_json::from_value(serde_json::json!({
                "authentication": {"kind": "ldap", "url": "ldaps://dir.corp:636",
                    "user_bind_pattern": "uid=${USER},ou=people,dc=corp",
                    "ca_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
                "rules": {"catalogs": [{"user": "alice", "catalog": "lake", "allow": "read-only"}]},
                "table_rules": {"hive": [{"user": "alice", "privileges": ["SELECT"]}]},
            }))
            .expect("access")
        }),
        tls_versions: BTreeMap::from([("analytics".into(), "v-1".into())]),
        coordinator_http_cidrs: role
            .map(|_| vec!["10.0.0.0/16".to_owned()])
            .unwrap_or_default(),
    }
}

fn validate(dir: &std::path::Path) -> (bool, String) {
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES])
        .args(&files)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate) on PATH");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_rendered_object_passes_the_kubernetes_schema_strictly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cats = catalogs();
    let mut n = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for role in [None, Some("arn:aws:iam::111122223333:role/tether-presto")] {
        for (label, spec) in specs() {
            spec.validate().expect("a valid spec");
            let rendered = render_cluster("analytics", &spec, &cats, &ctx(role));
            for obj in &rendered.objects {
                let kind = obj["kind"].as_str().unwrap_or("?").to_owned();
                let name = obj["metadata"]["name"].as_str().unwrap_or("?");
                let file = dir
                    .path()
                    .join(format!("{label}-{}-{kind}-{name}.json", role.is_some()));
                std::fs::write(&file, obj.to_string()).expect("write");
                kinds.insert(kind);
                n += 1;
            }
        }
    }
    let secret =
        objects::catalog_secret("tether-catalog-billing", &ctx(None), "app", "pa$$", "v-1");
    std::fs::write(dir.path().join("secret.json"), secret.to_string()).expect("write");
    kinds.insert("Secret".into());
    let (ok, report) = validate(dir.path());
    assert!(ok, "kubernetes-validate --strict refused:\n{report}");
    for kind in [
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
    ] {
        assert!(kinds.contains(kind), "the matrix renders a {kind}");
    }
    assert!(n > 40, "{n} objects");

    // The check is strict: one unknown field in a pod template fails it.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    let spec = &specs()[0].1;
    let rendered = render_cluster("analytics", spec, &cats, &ctx(None));
    let mut d: Value = rendered
        .objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .cloned()
        .expect("a Deployment");
    d["spec"]["template"]["spec"]["containers"][0]["lifecylce"] = json!({});
    std::fs::write(bad.join("d.json"), d.to_string()).expect("write");
    let (ok, report) = validate(&bad);
    assert!(!ok, "a misspelt field passed: {report}");
}
