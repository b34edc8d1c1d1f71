//! Unit tests of the render function: fixtures, and the shape of the objects.
//! [`changes`]: what a spec change rolls; [`catalogs`]: catalog files and credentials.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tether_shared::spec::{
    CatalogSpec, ClusterSpec, Connector, Credentials, HiveMetastore, Resources, Toleration, Workers,
};

use super::*;

mod access;
mod catalogs;
mod changes;

const PASSWORD: &str = "s3cr3t-hunter2";

fn ctx() -> RenderContext {
    RenderContext::new("presto", "cp-1", 120)
}

fn cluster(workers: Workers) -> ClusterSpec {
    ClusterSpec {
        presto_version: "0.293".into(),
        workers,
        catalogs: vec!["lake".into(), "db".into()],
        coordinator: Resources {
            cpu: "2".into(),
            memory: "8Gi".into(),
        },
        worker: Resources {
            cpu: "4".into(),
            memory: "16Gi".into(),
        },
        hive_metastore: None,
        node_selector: BTreeMap::from([("tether.io/node-group".into(), "analytics".into())]),
        tolerations: vec![Toleration {
            key: "dedicated".into(),
            operator: "Equal".into(),
            value: "presto".into(),
            effect: "NoSchedule".into(),
        }],
    }
}

fn catalog(connector: Connector, props: &[(&str, &str)], secret: Option<&str>) -> CatalogSpec {
    CatalogSpec {
        connector,
        properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        credentials: secret.map(|s| Credentials {
            secret_ref: s.to_owned(),
        }),
    }
}

fn catalogs() -> BTreeMap<String, CatalogSpec> {
    BTreeMap::from([
        (
            "lake".to_owned(),
            catalog(
                Connector::Hive,
                &[
                    ("hive.metastore", "glue"),
                    ("hive.metastore.glue.region", "us-east-1"),
                ],
                None,
            ),
        ),
        (
            "db".to_owned(),
            catalog(
                Connector::Mysql,
                &[("connection-url", "jdbc:mysql://db.internal:3306")],
                Some("k8s:mysql-creds"),
            ),
        ),
        // Defined on the compute plane but not attached: must not show up.
        (
            "other".to_owned(),
            catalog(
                Connector::Postgresql,
                &[("connection-url", "jdbc:postgresql://pg:5432/x")],
                Some("k8s:pg"),
            ),
        ),
    ])
}

fn render(spec: &ClusterSpec, cats: &BTreeMap<String, CatalogSpec>) -> Rendered {
    render_cluster("analytics", spec, cats, &ctx())
}

fn fixed3() -> Rendered {
    render(&cluster(Workers::Fixed { count: 3 }), &catalogs())
}

fn find<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    r.objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds_and_names(r: &Rendered) -> Vec<(String, String)> {
    r.objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect()
}

fn data<'a>(r: &'a Rendered, configmap: &str) -> &'a serde_json::Map<String, Value> {
    find(r, "ConfigMap", configmap)["data"]
        .as_object()
        .expect("data")
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn walk_nulls(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Null => out.push(path.to_owned()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| walk_nulls(x, &format!("{path}[{i}]"), out)),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| walk_nulls(x, &format!("{path}.{k}"), out)),
        _ => {}
    }
}

#[test]
fn fixed_cluster_renders_the_expected_objects_in_apply_order() {
    let r = fixed3();
    assert_eq!(
        kinds_and_names(&r),
        pairs(&[
            ("ServiceAccount", "tether-presto-analytics"),
            ("ConfigMap", "analytics-coordinator"),
            ("ConfigMap", "analytics-worker"),
            ("ConfigMap", "analytics-catalog"),
            ("Service", "analytics"),
            ("Deployment", "analytics-coordinator"),
            ("Deployment", "analytics-worker"),
            ("PodDisruptionBudget", "analytics-worker"),
        ])
    );
    let worker = find(&r, "Deployment", "analytics-worker");
    assert_eq!(worker["spec"]["replicas"], 3);
}

#[test]
fn every_object_is_labelled_namespaced_and_of_a_managed_kind() {
    for r in [
        fixed3(),
        render(
            &ClusterSpec {
                hive_metastore: Some(HiveMetastore {
                    enabled: true,
                    warehouse: "s3://bucket/wh".into(),
                }),
                ..cluster(Workers::Autoscaling {
                    min: 2,
                    max: 10,
                    target_cpu_percent: 70,
                })
            },
            &catalogs(),
        ),
    ] {
        for o in &r.objects {
            let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
            let l = &o["metadata"]["labels"];
            assert_eq!(l[MANAGED_BY.0], MANAGED_BY.1, "{what}");
            assert_eq!(l[CLUSTER_LABEL], "analytics", "{what}");
            assert_eq!(l["app.kubernetes.io/instance"], "analytics", "{what}");
            assert_eq!(l["app.kubernetes.io/name"], "presto", "{what}");
            assert_eq!(l["tether.io/compute-plane"], "cp-1", "{what}");
            assert_eq!(o["metadata"]["namespace"], "presto", "{what}");
            assert!(
                MANAGED_KINDS
                    .iter()
                    .any(|(api, kind, _, _)| o["apiVersion"] == *api && o["kind"] == *kind),
                "{what} is not in MANAGED_KINDS"
            );
            assert!(o.get("status").is_none(), "{what}");
            let mut nulls = Vec::new();
            walk_nulls(o, "", &mut nulls);
            assert!(nulls.is_empty(), "{what} has nulls at {nulls:?}");
            // Pods carry the labels too, and the selector matches them.
            if o["kind"] == "Deployment" {
                let pod_labels = &o["spec"]["template"]["metadata"]["labels"];
                assert_eq!(pod_labels[MANAGED_BY.0], MANAGED_BY.1, "{what}");
                assert_eq!(pod_labels[CLUSTER_LABEL], "analytics", "{what}");
                let selector = o["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .expect("selector");
                for (k, v) in selector {
                    assert_eq!(&pod_labels[k], v, "{what}: selector {k}");
                }
            }
        }
    }
}

#[test]
fn node_config_has_the_presto_settings() {
    let r = fixed3();
    let coord = data(&r, "analytics-coordinator");
    let worker = data(&r, "analytics-worker");
    for d in [coord, worker] {
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            [
                "config.properties",
                "jvm.config",
                "log.properties",
                "node.properties"
            ]
        );
        assert_eq!(d["log.properties"], "com.facebook.presto=INFO\n");
        assert_eq!(
            d["node.properties"],
            "node.environment=tether\nnode.id=${ENV:HOSTNAME}\nnode.data-dir=/var/lib/presto/data\n"
        );
    }
    let lines = |v: &Value| -> Vec<String> {
        v.as_str()
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let c = lines(&coord["config.properties"]);
    for expected in [
        "coordinator=true",
        "node-scheduler.include-coordinator=false",
        "http-server.http.port=8080",
        "discovery-server.enabled=true",
        "discovery.uri=http://analytics:8080",
        // A 120 s drain budget: Presto's grace period at its most, 30 s.
        "shutdown.grace-period=30s",
        "query.low-memory-killer.policy=total-reservation-on-blocked-nodes",
        // 8Gi coordinator: 6G heap, 60 %.
        "query.max-memory-per-node=3686MB",
        "query.max-total-memory-per-node=3686MB",
    ] {
        assert!(
            c.contains(&expected.to_owned()),
            "coordinator lacks {expected}: {c:?}"
        );
    }
    let w = lines(&worker["config.properties"]);
    for expected in [
        "coordinator=false",
        "http-server.http.port=8080",
        "discovery.uri=http://analytics:8080",
        "shutdown.grace-period=30s",
        // 16Gi worker: 12G heap, 60 %.
        "query.max-memory-per-node=7372MB",
    ] {
        assert!(
            w.contains(&expected.to_owned()),
            "worker lacks {expected}: {w:?}"
        );
    }
    assert!(
        !w.iter().any(|l| l.starts_with("discovery-server")),
        "{w:?}"
    );
    assert!(
        !w.iter().any(|l| l.starts_with("query.low-memory-killer")),
        "the coordinator's setting: {w:?}"
    );
    let max_memory = |l: &[String]| {
        l.iter()
            .find(|l| l.starts_with("query.max-memory="))
            .cloned()
    };
    assert_eq!(max_memory(&c), max_memory(&w));
    assert!(
        coord["jvm.config"]
            .as_str()
            .is_some_and(|j| j.lines().any(|l| l == "-Xmx6G"))
    );
    assert!(
        worker["jvm.config"]
            .as_str()
            .is_some_and(|j| j.lines().any(|l| l == "-Xmx12G"))
    );
}

#[test]
fn deployments_mount_config_and_probe_presto() {
    let r = fixed3();
    let coord = find(&r, "Deployment", "analytics-coordinator");
    assert_eq!(coord["spec"]["replicas"], 1);
    assert_eq!(coord["spec"]["strategy"]["type"], "Recreate");
    let pod = &coord["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tether-presto-analytics");
    assert_eq!(pod["nodeSelector"]["tether.io/node-group"], "analytics");
    assert_eq!(
        pod["tolerations"][0],
        serde_json::json!({"key": "dedicated", "operator": "Equal", "value": "presto", "effect": "NoSchedule"})
    );
    let c = container(coord);
    assert_eq!(c["image"], "prestodb/presto:0.293");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["resources"]["limits"], c["resources"]["requests"]);
    assert_eq!(c["resources"]["limits"]["memory"], "8Gi");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v1/info");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/v1/status");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let by_name = |n: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no volume {n}"))
    };
    assert_eq!(
        by_name("config")["configMap"]["name"],
        "analytics-coordinator"
    );
    assert_eq!(
        by_name("config")["configMap"]["items"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert_eq!(by_name("catalog")["configMap"]["name"], "analytics-catalog");
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "config" && m["mountPath"] == "/opt/presto-server/etc")
    );
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "catalog" && m["mountPath"] == "/opt/presto-server/etc/catalog")
    );

    let service = find(&r, "Service", "analytics");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    assert_eq!(
        service["spec"]["selector"],
        coord["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn workers_drain_before_they_stop() {
    let r = fixed3();
    let worker = find(&r, "Deployment", "analytics-worker");
    assert_eq!(
        worker["spec"]["strategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    );
    let pod = &worker["spec"]["template"]["spec"];
    // The 120 s budget, twice the 30 s grace period, 40 s for Presto's stop and a margin.
    assert_eq!(pod["terminationGracePeriodSeconds"], 220);
    let heapdump = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "heapdump"))
        .expect("a heap-dump volume");
    // A 16Gi worker: a 12 GiB heap, one dump and a GiB more.
    assert_eq!(heapdump["emptyDir"]["sizeLimit"], "13Gi");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "analytics-worker");
    let c = container(worker);
    assert_eq!(c["resources"]["limits"]["memory"], "16Gi");
    let command = &c["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(command[0], "/bin/sh");
    let script = command[2].as_str().unwrap_or_default();
    assert!(script.contains("-X PUT"), "{script}");
    // A refused or failed PUT ends the hook (SIGTERM then) instead of waiting out the grace.
    assert!(
        script.contains("curl -sf") && script.contains("|| exit 0"),
        "{script}"
    );
    assert!(script.contains(r#"-d '"SHUTTING_DOWN"'"#), "{script}");
    assert!(
        script.contains("http://localhost:8080/v1/info/state"),
        "{script}"
    );
    // Then it waits for Presto to finish its tasks and exit, not a fixed time.
    assert!(
        script.ends_with(
            "while curl -s -o /dev/null http://localhost:8080/v1/info/state; do sleep 2; done"
        ),
        "{script}"
    );
    let annotations = &worker["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations["tether.io/config-hash"].is_string());
    assert!(annotations["tether.io/catalog-hash"].is_string());

    let pdb = find(&r, "PodDisruptionBudget", "analytics-worker");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        worker["spec"]["selector"]["matchLabels"]
    );
    // The list selector is the same selection.
    let listed: BTreeMap<String, String> = worker_pod_selector("analytics")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let matched: BTreeMap<String, String> = worker["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(listed, matched);
}

#[test]
fn selectors_and_names() {
    assert_eq!(managed_selector(), "app.kubernetes.io/managed-by=tether");
    assert_eq!(
        cluster_selector("analytics"),
        "app.kubernetes.io/managed-by=tether,tether.io/cluster=analytics"
    );
    assert_eq!(coordinator_name("a"), "a-coordinator");
    assert_eq!(worker_name("a"), "a-worker");
    assert_eq!(service_name("a"), "a");
    assert_eq!(catalog_configmap_name("a"), "a-catalog");
    assert_eq!(PRESTO_PORT, 8080);
}

#[test]
fn pods_run_as_the_presto_service_account_with_the_install_role() {
    let mut ctx = ctx();
    ctx.presto_role_arn = Some("arn:aws:iam::123456789012:role/tether-presto".into());
    let spec = cluster(Workers::Fixed { count: 3 });
    let r = render_cluster("analytics", &spec, &catalogs(), &ctx);
    let sa = find(&r, "ServiceAccount", "tether-presto-analytics");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/tether-presto"
    );
    for d in ["analytics-coordinator", "analytics-worker"] {
        let pod = &find(&r, "Deployment", d)["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "tether-presto-analytics", "{d}");
    }
    // Without an install role: no annotation (the pods get no AWS identity of their own).
    let plain = fixed3();
    let sa = find(&plain, "ServiceAccount", "tether-presto-analytics");
    assert!(sa["metadata"]["annotations"].is_null(), "{sa}");
}

/// A label selector's `matchExpressions` against a pod's labels, as the scheduler reads
/// them (Kubernetes docs, "Labels and Selectors": set-based requirements are ANDed;
/// `NotIn` also matches a pod without the key).
fn selects(selector: &Value, labels: &Value) -> bool {
    selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let value = labels[e["key"].as_str().unwrap_or_default()].as_str();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => value.is_some_and(|v| values.contains(&v)),
                Some("NotIn") => value.is_none_or(|v| !values.contains(&v)),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                other => panic!("operator {other:?}"),
            }
        })
}

#[test]
fn every_cluster_runs_on_nodes_of_its_own_that_autoscaling_never_consolidates_away() {
    let mut with_metastore = cluster(Workers::Fixed { count: 2 });
    with_metastore.node_selector = [(
        "eks.amazonaws.com/instance-family".to_owned(),
        "r6i".to_owned(),
    )]
    .into();
    with_metastore.hive_metastore = Some(tether_shared::spec::HiveMetastore {
        enabled: true,
        warehouse: "s3://bucket/warehouse".into(),
    });
    let mut cats = catalogs();
    cats.insert("raw".into(), catalog(Connector::Hive, &[], None));
    with_metastore.catalogs.push("raw".into());
    let a = render_cluster("a", &with_metastore, &cats, &ctx());
    let b = render_cluster(
        "b",
        &cluster(Workers::Fixed { count: 2 }),
        &catalogs(),
        &ctx(),
    );
    let pods = |r: &Rendered| -> Vec<(String, Value)> {
        r.objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .map(|d| {
                (
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    d["spec"]["template"].clone(),
                )
            })
            .collect()
    };
    let (pa, pb) = (pods(&a), pods(&b));
    assert!(pa.len() >= 3, "coordinator, workers, metastore: {pa:?}");
    for (name, t) in pa.iter().chain(&pb) {
        assert_eq!(
            t["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"], "true",
            "{name}"
        );
        let terms = t["spec"]["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no required anti-affinity"));
        assert_eq!(terms.len(), 1, "{name}");
        assert_eq!(terms[0]["topologyKey"], "kubernetes.io/hostname");
        let (own, other) = if pa.iter().any(|(n, _)| n == name) {
            (&pa, &pb)
        } else {
            (&pb, &pa)
        };
        // Never beside another cluster's pod, always allowed beside its own.
        for (n, o) in other {
            assert!(
                selects(&terms[0]["labelSelector"], &o["metadata"]["labels"]),
                "{name} may share a node with {n}"
            );
        }
        for (n, o) in own {
            assert!(
                !selects(&terms[0]["labelSelector"], &o["metadata"]["labels"]),
                "{name} repels its own {n}"
            );
        }
        // A pod that is not Tether's (no managed-by label) is not repelled.
        assert!(!selects(
            &terms[0]["labelSelector"],
            &json!({"app.kubernetes.io/instance": "someone-else"})
        ));
    }
    let coordinator = &find(&a, "Deployment", "a-coordinator")["spec"]["template"]["spec"];
    assert_eq!(
        coordinator["nodeSelector"]["eks.amazonaws.com/instance-family"],
        "r6i"
    );
}
