//! Issue 3 end to end: clusters and catalogs through the API, reconciled by the real agent
//! binary into the Kubernetes stand-in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{
    NAMESPACE, PrestoEnv, cluster_spec, glue_catalog, mysql_catalog,
};
use tether_tests::harness::{eventually, init};
use tether_tests::standins::kube::ObjectKey;

fn cluster_keys(env: &PrestoEnv, cluster: &str) -> Vec<(ObjectKey, Value)> {
    let mut out = Vec::new();
    for (av, plural) in [
        ("v1", "configmaps"),
        ("v1", "services"),
        ("v1", "serviceaccounts"),
        ("apps/v1", "deployments"),
        ("policy/v1", "poddisruptionbudgets"),
        ("autoscaling/v2", "horizontalpodautoscalers"),
    ] {
        for obj in env.kube.list(av, plural, Some(NAMESPACE)) {
            if obj["metadata"]["labels"]["tether.io/cluster"] == cluster {
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                out.push((PrestoEnv::key(av, plural, &name), obj));
            }
        }
    }
    out
}

fn resource_versions(env: &PrestoEnv, cluster: &str) -> BTreeMap<String, String> {
    cluster_keys(env, cluster)
        .into_iter()
        .map(|(k, o)| {
            (
                format!("{}/{}/{}", k.api_version, k.plural, k.name),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

async fn analytics(env: &PrestoEnv) -> Value {
    env.put_catalog("lake", glue_catalog()).await;
    env.put_catalog("orders", mysql_catalog()).await;
    env.put_cluster("analytics", cluster_spec(3, &["lake", "orders"]))
        .await;
    env.running("analytics", 3, 10).await
}

/// Acceptance 1, 2 and 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_is_applied_scaled_and_reapplied_without_writes() {
    init();
    let env = PrestoEnv::start().await;
    let shown = analytics(&env).await;
    assert_eq!(shown["spec"]["workers"]["count"], 3);

    // The expected objects, labelled.
    for (av, plural, name) in [
        ("v1", "configmaps", "analytics-coordinator"),
        ("v1", "configmaps", "analytics-worker"),
        ("v1", "configmaps", "analytics-catalog"),
        ("v1", "services", "analytics"),
        ("v1", "serviceaccounts", "tether-presto-analytics"),
        ("apps/v1", "deployments", "analytics-coordinator"),
        ("apps/v1", "deployments", "analytics-worker"),
        ("policy/v1", "poddisruptionbudgets", "analytics-worker"),
    ] {
        let obj = env
            .object(av, plural, name)
            .unwrap_or_else(|| panic!("{plural}/{name} missing"));
        let labels = &obj["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "tether", "{name}");
        assert_eq!(labels["tether.io/cluster"], "analytics", "{name}");
        assert_eq!(
            labels["tether.io/compute-plane"],
            env.fx.cp_id.as_str(),
            "{name}"
        );
    }
    let workers = env
        .object("apps/v1", "deployments", "analytics-worker")
        .expect("workers");
    assert_eq!(workers["spec"]["replicas"], 3);
    let coord_cfg = env
        .object("v1", "configmaps", "analytics-coordinator")
        .expect("cm");
    let config = coord_cfg["data"]["config.properties"]
        .as_str()
        .expect("config.properties");
    assert!(
        config.contains("coordinator=true") && config.contains("discovery-server.enabled=true"),
        "{config}"
    );
    assert!(
        coord_cfg["data"]["jvm.config"]
            .as_str()
            .is_some_and(|j| j.contains("-Xmx"))
    );
    let catalog = env
        .object("v1", "configmaps", "analytics-catalog")
        .expect("catalog cm");
    let lake = catalog["data"]["lake.properties"]
        .as_str()
        .expect("lake.properties");
    assert!(
        lake.contains("connector.name=hive-hadoop2") && lake.contains("hive.metastore=glue"),
        "{lake}"
    );
    let orders = catalog["data"]["orders.properties"]
        .as_str()
        .expect("orders.properties");
    assert!(
        orders.contains("connector.name=mysql")
            && orders.contains("connection-url=jdbc:mysql://orders-db:3306"),
        "{orders}"
    );
    assert!(
        !serde_json::to_string(&catalog)
            .unwrap_or_default()
            .contains("hunter2")
    );
    assert!(
        serde_json::to_string(&workers)
            .unwrap_or_default()
            .contains("orders-db-credentials"),
        "password from the Secret by reference"
    );

    // Scale 3 -> 5: only the worker Deployment is written.
    let before = resource_versions(&env, "analytics");
    let writes_before: BTreeMap<String, u64> = cluster_keys(&env, "analytics")
        .into_iter()
        .map(|(k, _)| (k.name.clone() + "/" + &k.plural, env.kube.writes(&k)))
        .collect();
    env.put_cluster("analytics", cluster_spec(5, &["lake", "orders"]))
        .await;
    env.running("analytics", 5, 10).await;
    let after = resource_versions(&env, "analytics");
    for (key, rv) in &before {
        if key == "apps/v1/deployments/analytics-worker" {
            assert_ne!(after.get(key), Some(rv), "worker Deployment rewritten");
        } else {
            assert_eq!(
                after.get(key),
                Some(rv),
                "{key} must not change when scaling"
            );
        }
    }
    for (k, _) in cluster_keys(&env, "analytics") {
        let id = k.name.clone() + "/" + &k.plural;
        let delta = env.kube.writes(&k) - writes_before.get(&id).copied().unwrap_or(0);
        let expected = u64::from(id == "analytics-worker/deployments");
        assert_eq!(delta, expected, "writes to {id}");
    }
    assert!(env.kube.drains().is_empty(), "scaling drains nothing");

    // Acceptance 7: nothing changes, several resyncs pass: no write at all.
    let total = env.kube.total_writes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.kube.total_writes(),
        total,
        "re-applying the same generation wrote something"
    );
}

/// Acceptance 3: detaching a catalog drains the workers before they are replaced, and the
/// coordinator (which must load the new catalog set too) restarts only once its running
/// query has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detaching_a_catalog_drains_workers_before_replacing_them() {
    init();
    let env = PrestoEnv::start().await;
    analytics(&env).await;
    let events_before = env.kube.pod_events().len();
    let old_coordinator = env
        .kube
        .list("v1", "pods", Some(NAMESPACE))
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .find(|n| n.starts_with("analytics-coordinator-"))
        .expect("a coordinator pod");
    let query = env
        .kube
        .run_task(NAMESPACE, &old_coordinator, Duration::from_secs(3))
        .expect("a running query on the coordinator");
    let asked = std::time::Instant::now();
    let old_workers: Vec<String> = env
        .kube
        .list("v1", "pods", Some(NAMESPACE))
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("analytics-worker-"))
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(old_workers.len(), 3);

    env.put_cluster("analytics", cluster_spec(3, &["lake"]))
        .await;
    env.running("analytics", 3, 15).await;
    let catalog = env
        .object("v1", "configmaps", "analytics-catalog")
        .expect("catalog cm");
    assert!(catalog["data"]["orders.properties"].is_null(), "{catalog}");
    assert!(catalog["data"]["lake.properties"].is_string());

    // The old workers leave one by one as they finish draining.
    let events = eventually(Duration::from_secs(20), "the old workers gone", || async {
        let events = env.kube.pod_events();
        old_workers
            .iter()
            .all(|pod| events.iter().any(|e| &e.pod == pod && !e.created))
            .then_some(events)
    })
    .await;
    let drains = env.kube.drains();
    for pod in &old_workers {
        let drained = drains
            .iter()
            .find(|d| &d.pod == pod)
            .unwrap_or_else(|| panic!("{pod} was not drained"));
        assert!(drained.body.contains("SHUTTING_DOWN"));
        let deleted = events[events_before..]
            .iter()
            .find(|e| &e.pod == pod && !e.created)
            .unwrap_or_else(|| panic!("{pod} was not replaced"));
        assert!(
            drained.at < deleted.at,
            "{pod} replaced before it was drained"
        );
        assert!(
            deleted.at.duration_since(drained.at) >= Duration::from_millis(900),
            "grace period given"
        );
    }
    // The coordinator restarted, after its query finished.
    let gone = eventually(
        Duration::from_secs(20),
        "the old coordinator replaced",
        || async {
            let events = env.kube.pod_events();
            let gone = events[events_before..]
                .iter()
                .find(|e| e.pod == old_coordinator && !e.created)?
                .at;
            events[events_before..]
                .iter()
                .any(|e| e.owner == "analytics-coordinator" && e.created)
                .then_some(gone)
        },
    )
    .await;
    assert_eq!(
        query.outcome(),
        tether_tests::standins::kube::TaskOutcome::Finished
    );
    assert!(
        gone.duration_since(asked) >= Duration::from_millis(2900),
        "the coordinator stopped before its query ended"
    );
}

/// Fixed to autoscaling and back keeps the workers there are: the HPA takes the count over
/// without a dip to one replica, and a fixed count applies again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_autoscaling_and_back_keeps_the_workers() {
    init();
    let env = PrestoEnv::start().await;
    analytics(&env).await;
    let worker = PrestoEnv::key("apps/v1", "deployments", "analytics-worker");
    let events_before = env.kube.pod_events().len();
    let mut spec = cluster_spec(3, &["lake", "orders"]);
    spec["workers"] = json!({"min": 2, "max": 10, "target_cpu_percent": 70});
    env.put_cluster("analytics", spec).await;
    eventually(
        Duration::from_secs(15),
        "the HPA applied and the generation observed",
        || async {
            let c = env.cluster("analytics").await;
            let hpa = env.object(
                "autoscaling/v2",
                "horizontalpodautoscalers",
                "analytics-worker",
            );
            (hpa.is_some() && c["observed_generation"] == c["generation"]).then_some(())
        },
    )
    .await;
    // Several resyncs later, still three: nobody fell back to the default of one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = env.kube.object(&worker).expect("worker Deployment");
    assert_eq!(
        d["spec"]["replicas"], 3,
        "{}",
        d["metadata"]["managedFields"]
    );
    let removed = env.kube.pod_events()[events_before..]
        .iter()
        .filter(|e| e.owner == "analytics-worker" && !e.created)
        .count();
    assert_eq!(removed, 0, "no worker was removed by the switch");

    // And back to a fixed count, which applies as given.
    env.put_cluster("analytics", cluster_spec(4, &["lake", "orders"]))
        .await;
    env.running("analytics", 4, 15).await;
    assert!(
        env.object(
            "autoscaling/v2",
            "horizontalpodautoscalers",
            "analytics-worker"
        )
        .is_none(),
        "the HPA is gone"
    );
    let d = env.kube.object(&worker).expect("worker Deployment");
    assert_eq!(d["spec"]["replicas"], 4);
}

/// Acceptance 4: out-of-band changes are undone within a resync period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected() {
    init();
    let env = PrestoEnv::start().await;
    analytics(&env).await;
    let home = tempfile::tempdir().expect("home");
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .env("HOME", home.path())
            .args(["--server", &env.kube.url(), "-n", NAMESPACE])
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = kubectl(&["get", "deployments", "-A"]);
    assert!(
        listed.contains("analytics-coordinator") && listed.contains("analytics-worker"),
        "{listed}"
    );
    let yaml = kubectl(&["get", "configmap", "analytics-coordinator", "-o", "yaml"]);
    assert!(yaml.contains("coordinator=true"), "{yaml}");

    // The agent may undo each change before the next command even runs, so what proves the
    // correction is a new object (uid) and a newer version, not a moment without them.
    let uid = |o: Option<serde_json::Value>| {
        o.and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
    };
    let old_uid = uid(env.object("v1", "services", "analytics")).expect("service uid");
    kubectl(&["delete", "service", "analytics"]);
    let patched_rv: u64 = kubectl(&[
        "patch",
        "configmap",
        "analytics-coordinator",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"log.properties":"com.facebook.presto=DEBUG\n"}}"#,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])
    .trim()
    .parse()
    .expect("resourceVersion of the patched configmap");
    eventually(
        Duration::from_secs(10),
        "service restored and configmap reverted",
        || async {
            let svc = uid(env.object("v1", "services", "analytics"))?;
            let cm = env.object("v1", "configmaps", "analytics-coordinator")?;
            let rv: u64 = cm["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
            let log = cm["data"]["log.properties"].as_str()?.to_owned();
            (svc != old_uid && rv > patched_rv && !log.contains("DEBUG")).then_some(())
        },
    )
    .await;
}

/// Acceptance 5: without the control plane, a restarted agent reconciles from what it
/// persisted, deletes nothing, and catches up when the control plane returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_stability_without_the_control_plane() {
    init();
    let mut env = PrestoEnv::start().await;
    analytics(&env).await;
    // Stop the agent, change the cluster, stop the control plane.
    if let Some(mut a) = env.agent.take() {
        a.terminate();
        a.wait_exit(Duration::from_secs(10)).await;
    }
    let changed = env
        .put_cluster("analytics", cluster_spec(4, &["lake", "orders"]))
        .await;
    let new_generation = changed["generation"].as_i64().expect("generation");
    let (http, grpc) = (env.cp.http.clone(), env.cp.grpc.clone());
    env.cp.kill();
    let objects_before = cluster_keys(&env, "analytics").len();

    env.start_agent(None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        cluster_keys(&env, "analytics").len(),
        objects_before,
        "nothing deleted without the control plane"
    );
    let workers = env
        .object("apps/v1", "deployments", "analytics-worker")
        .expect("still there");
    assert_eq!(
        workers["spec"]["replicas"], 3,
        "kept applying the persisted state"
    );
    let agent_log = env.agent.as_ref().map(|a| a.log()).unwrap_or_default();
    assert!(
        agent_log.contains("loaded persisted desired state"),
        "{agent_log}"
    );

    env.cp = tether_tests::harness::ControlPlaneProc::start(
        tether_tests::harness::ControlPlaneOptions {
            data_dir: Some(env.cp.data_dir.clone()),
            http_listen: http,
            grpc_listen: grpc,
            ..Default::default()
        },
    )
    .await;
    let caught_up = env.running("analytics", 4, 40).await;
    assert_eq!(
        caught_up["observed_generation"].as_i64(),
        Some(new_generation)
    );
}

/// Acceptance 6: 503s, slow answers and conflicts from the API server are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_faults_are_retried_until_convergence() {
    init();
    let mut env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    let faults = env.kube.faults();
    faults.set_latency(Duration::from_millis(150));
    // 500s and 409s reach the reconciler's error policy (kube's own retry is off: the
    // reconciler retries on its schedule).
    faults.fail_next(4, 500);
    faults.conflict_next_writes(3);
    env.put_cluster("analytics", cluster_spec(2, &["lake"]))
        .await;
    env.running("analytics", 2, 40).await;
    assert!(
        faults.injected() >= 7,
        "faults were served: {}",
        faults.injected()
    );
    faults.clear();
    let agent = env.agent.as_mut().expect("agent");
    assert!(agent.exited().is_none(), "the agent never crashed");
    assert!(
        agent.log().contains("reconcile failed"),
        "errors were seen and retried"
    );
    assert!(agent.log().contains("Conflict") || agent.log().contains("409"));
}

/// Acceptance 8: deleting a cluster removes everything it owned and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_removes_only_its_objects() {
    init();
    let env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("alpha", cluster_spec(1, &["lake"])).await;
    env.put_cluster("beta", cluster_spec(2, &["lake"])).await;
    env.running("alpha", 1, 15).await;
    env.running("beta", 2, 15).await;
    let beta_versions = resource_versions(&env, "beta");
    let (s, body) = env
        .api()
        .delete(&format!("/compute-planes/{}/clusters/alpha", env.fx.cp_id))
        .await;
    assert_eq!(s.as_u16(), 202, "{body}");
    assert_eq!(body["status"]["phase"], "Deleting");
    eventually(
        Duration::from_secs(10),
        "alpha's objects gone and the API forgot it",
        || async {
            let gone = cluster_keys(&env, "alpha").is_empty();
            let (s, _) = env
                .api()
                .get(&format!("/compute-planes/{}/clusters/alpha", env.fx.cp_id))
                .await;
            (gone && s.as_u16() == 404).then_some(())
        },
    )
    .await;
    // Its pods end gracefully (their drain), then they are gone too.
    eventually(Duration::from_secs(15), "alpha's pods gone", || async {
        env.kube
            .list("v1", "pods", Some(NAMESPACE))
            .iter()
            .all(|p| {
                !p["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("alpha-")
            })
            .then_some(())
    })
    .await;
    assert_eq!(
        resource_versions(&env, "beta"),
        beta_versions,
        "beta untouched"
    );
}
