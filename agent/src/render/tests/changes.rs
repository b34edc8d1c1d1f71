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
fn changing_a_catalog_rolls_workers_but_not_the_coordinator() {
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
    let catalog_hash = |r: &Rendered| {
        find(r, "Deployment", "analytics-worker")["spec"]["template"]["metadata"]["annotations"]
            ["tether.io/catalog-hash"]
            .clone()
    };
    assert_ne!(catalog_hash(&a), catalog_hash(&b));
    assert_eq!(
        find(&a, "Deployment", "analytics-coordinator"),
        find(&b, "Deployment", "analytics-coordinator"),
        "a catalog change must not restart the coordinator"
    );
    let coordinator_annotations = find(&b, "Deployment", "analytics-coordinator")["spec"]
        ["template"]["metadata"]["annotations"]
        .as_object()
        .expect("annotations");
    assert_eq!(
        coordinator_annotations.keys().collect::<Vec<_>>(),
        ["tether.io/config-hash"]
    );
    // Attaching a catalog without credentials: same story.
    let mut spec = cluster(Workers::Fixed { count: 3 });
    spec.catalogs.retain(|c| c != "lake");
    let c = render(&spec, &catalogs());
    assert_eq!(
        find(&a, "Deployment", "analytics-coordinator"),
        find(&c, "Deployment", "analytics-coordinator")
    );
    assert_ne!(a.worker_template_hash, c.worker_template_hash);
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
