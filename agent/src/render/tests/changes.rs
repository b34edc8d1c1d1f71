//! What a spec change rolls, and what it leaves alone.

use super::*;

#[test]
fn rendering_is_deterministic() {
    let a = fixed3();
    let b = fixed3();
    assert_eq!(
        serde_json::to_string(&a.objects).expect("json"),
        serde_json::to_string(&b.objects).expect("json")
    );
    assert_eq!(a.worker_template_hash, b.worker_template_hash);
    assert_eq!(a.worker_template_hash.len(), 16);
    assert!(
        a.worker_template_hash
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    let worker = find(&a, "Deployment", "analytics-worker");
    assert_eq!(
        worker["metadata"]["annotations"]["tether.io/worker-template-hash"],
        a.worker_template_hash.as_str()
    );
}

#[test]
fn changing_the_worker_count_changes_only_the_worker_replicas() {
    let a = fixed3();
    let b = render(&cluster(Workers::Fixed { count: 7 }), &catalogs());
    assert_eq!(kinds_and_names(&a), kinds_and_names(&b));
    for (x, y) in a.objects.iter().zip(&b.objects) {
        if x["kind"] == "Deployment" && x["metadata"]["name"] == "analytics-worker" {
            let mut x = x.clone();
            x["spec"]["replicas"] = Value::Null;
            let mut y = y.clone();
            y["spec"]["replicas"] = Value::Null;
            assert_eq!(x, y, "the worker Deployment differs beyond replicas");
        } else {
            assert_eq!(x, y, "{} {} changed", x["kind"], x["metadata"]["name"]);
        }
    }
    assert_eq!(
        find(&b, "Deployment", "analytics-worker")["spec"]["replicas"],
        7
    );
    assert_eq!(a.worker_template_hash, b.worker_template_hash);
}

#[test]
fn changing_a_catalog_rolls_workers_and_restarts_the_coordinator() {
    let a = fixed3();
    let mut cats = catalogs();
    if let Some(lake) = cats.get_mut("lake") {
        lake.properties
            .insert("hive.metastore.glue.region".into(), "eu-west-1".into());
    }
    let b = render(&cluster(Workers::Fixed { count: 3 }), &cats);
    assert_ne!(
        find(&a, "ConfigMap", "analytics-catalog"),
        find(&b, "ConfigMap", "analytics-catalog")
    );
    assert_ne!(a.worker_template_hash, b.worker_template_hash);
    let catalog_hash = |r: &Rendered, d: &str| {
        find(r, "Deployment", d)["spec"]["template"]["metadata"]["annotations"]
            ["tether.io/catalog-hash"]
            .clone()
    };
    // Presto reads catalogs at start, the coordinator too: both see the change.
    for d in ["analytics-worker", "analytics-coordinator"] {
        assert!(catalog_hash(&a, d).is_string(), "{d}");
        assert_ne!(catalog_hash(&a, d), catalog_hash(&b, d), "{d}");
    }
    // The coordinator drains its queries before it stops.
    let coord = find(&b, "Deployment", "analytics-coordinator");
    let pod = &coord["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 130);
    let hook = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .unwrap_or_default();
    assert!(
        hook.contains("http://localhost:8080/v1/query") && hook.contains("|RUNNING|"),
        "{hook}"
    );
    // A catalog the cluster does not attach changes nothing of it.
    let mut cats = catalogs();
    cats.insert(
        "unrelated".into(),
        serde_json::from_value(serde_json::json!({"connector": "hive", "properties": {}}))
            .expect("spec"),
    );
    let c = render(&cluster(Workers::Fixed { count: 3 }), &cats);
    assert_eq!(a, c);
}

#[test]
fn a_coordinator_config_change_rolls_the_coordinator() {
    let a = fixed3();
    let mut spec = cluster(Workers::Fixed { count: 3 });
    spec.coordinator.memory = "16Gi".into();
    let b = render(&spec, &catalogs());
    let hash = |r: &Rendered| {
        find(r, "Deployment", "analytics-coordinator")["spec"]["template"]["metadata"]
            ["annotations"]["tether.io/config-hash"]
            .clone()
    };
    assert_ne!(hash(&a), hash(&b));
    assert_eq!(a.worker_template_hash, b.worker_template_hash);
}

#[test]
fn autoscaling_adds_an_hpa_and_leaves_replicas_to_it() {
    let r = render(
        &cluster(Workers::Autoscaling {
            min: 2,
            max: 10,
            target_cpu_percent: 70,
        }),
        &catalogs(),
    );
    let worker = find(&r, "Deployment", "analytics-worker");
    assert!(worker["spec"].get("replicas").is_none());
    let hpa = find(&r, "HorizontalPodAutoscaler", "analytics-worker");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "analytics-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"],
        serde_json::json!({"type": "Utilization", "averageUtilization": 70})
    );
    let order: Vec<_> = kinds_and_names(&r).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        &order[order.len() - 2..],
        ["HorizontalPodAutoscaler", "PodDisruptionBudget"]
    );
    // Autoscaling and fixed workers run the same pods.
    assert_eq!(r.worker_template_hash, fixed3().worker_template_hash);
}
