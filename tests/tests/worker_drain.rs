//! Workers that leave finish their work: a roll replaces them one at a time while the
//! others keep taking queries, an autoscaler's scale-in waits for the running tasks, and
//! the reconciler goes on with other clusters meanwhile. The Kubernetes stand-in ends Pods
//! as the kubelet does (`preStop`, then the grace period) and as Presto's
//! `GracefulShutdownHandler` does (see `standins::kube::termination`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{
    FAST_AGENT, NAMESPACE, PrestoEnv, cluster_spec, glue_catalog, mysql_catalog,
};
use tether_tests::harness::{eventually, init};
use tether_tests::standins::kube::{TaskHandle, TaskOutcome};

/// The worker Pods of `cluster`: (name, terminating).
fn workers(env: &PrestoEnv, cluster: &str) -> Vec<(String, bool)> {
    let prefix = format!("{cluster}-worker-");
    env.kube
        .list("v1", "pods", Some(NAMESPACE))
        .iter()
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?;
            name.starts_with(&prefix).then(|| {
                (
                    name.to_owned(),
                    !p["metadata"]["deletionTimestamp"].is_null(),
                )
            })
        })
        .collect()
}

/// Places a task on each worker of `cluster` that takes one.
fn task_on_each(env: &PrestoEnv, cluster: &str, d: Duration) -> Vec<(String, TaskHandle)> {
    workers(env, cluster)
        .into_iter()
        .filter_map(|(pod, _)| {
            let t = env.kube.run_task(NAMESPACE, &pod, d).ok()?;
            Some((pod, t))
        })
        .collect()
}

/// FAST_AGENT with another `--drain-grace`.
fn agent_args(drain_grace: &'static str) -> Vec<&'static str> {
    let mut args = FAST_AGENT.to_vec();
    if let Some(i) = args.iter().position(|a| *a == "--drain-grace") {
        args[i + 1] = drain_grace;
    }
    args
}

async fn two_clusters() -> PrestoEnv {
    let mut env = PrestoEnv::start().await;
    env.start_agent_with(None, &agent_args("3s"));
    env.put_catalog("lake", glue_catalog()).await;
    env.put_catalog("orders", mysql_catalog()).await;
    env.put_cluster("analytics", cluster_spec(3, &["lake"]))
        .await;
    env.put_cluster("other", cluster_spec(1, &["lake"])).await;
    env.running("analytics", 3, 20).await;
    env.running("other", 1, 20).await;
    env
}

/// A catalog attach rolls the workers one at a time: never fewer than three take new
/// queries, the long queries on the old workers finish, and another cluster's scale is
/// applied while the old workers are still draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_replaces_workers_one_by_one_and_loses_no_query() {
    init();
    let env = two_clusters().await;
    let long = task_on_each(&env, "analytics", Duration::from_secs(6));
    assert_eq!(long.len(), 3);
    let old: Vec<String> = long.iter().map(|(p, _)| p.clone()).collect();

    env.put_cluster("analytics", cluster_spec(3, &["lake", "orders"]))
        .await;
    // Until every old worker is gone: at every look at least three workers take a query.
    let started = Instant::now();
    let mut least_open = usize::MAX;
    let mut scaled_other_during_roll = false;
    let mut asked_other = false;
    let mut short = Vec::new();
    loop {
        let pods = workers(&env, "analytics");
        let open: Vec<&String> = pods.iter().filter(|(_, t)| !t).map(|(p, _)| p).collect();
        // Those that take a query: Ready and not on their way out.
        let mut taking = 0;
        for pod in &open {
            if let Ok(t) = env
                .kube
                .run_task(NAMESPACE, pod, Duration::from_millis(200))
            {
                short.push(t);
                taking += 1;
            }
        }
        least_open = least_open.min(taking);
        let old_left = pods.iter().filter(|(p, _)| old.contains(p)).count();
        if old_left == 0 {
            break;
        }
        if !asked_other && started.elapsed() > Duration::from_secs(1) {
            env.put_cluster("other", cluster_spec(2, &["lake"])).await;
            asked_other = true;
        }
        if asked_other && !scaled_other_during_roll {
            let d = env.object("apps/v1", "deployments", "other-worker");
            scaled_other_during_roll = d.is_some_and(|d| d["spec"]["replicas"] == 2);
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the roll did not end: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        least_open >= 3,
        "only {least_open} workers took queries at one point"
    );
    assert!(
        scaled_other_during_roll,
        "the other cluster's scale waited for the roll"
    );
    for (pod, t) in &long {
        assert_eq!(t.outcome(), TaskOutcome::Finished, "the query on {pod}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        short.iter().all(|t| t.outcome() == TaskOutcome::Finished),
        "every short query finished"
    );
    // The old workers drained (told SHUTTING_DOWN) before they went.
    let drains = env.kube.drains();
    for pod in &old {
        assert!(
            drains
                .iter()
                .any(|d| &d.pod == pod && d.body.contains("SHUTTING_DOWN")),
            "{pod} drained"
        );
    }
    // And the status said so while it lasted, and says it is done now.
    let c = env.running("analytics", 3, 20).await;
    let rolled = conditions(&c, "WorkersRolledOut");
    assert_eq!(rolled.as_deref(), Some("True"), "{c}");
}

fn conditions(c: &Value, kind: &str) -> Option<String> {
    c["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|x| x["type"] == kind)
        .and_then(|x| x["status"].as_str().map(str::to_owned))
}

/// The autoscaler takes a worker away while a long query runs on it: the worker drains,
/// the query finishes, and only then the Pod goes; it takes no new query meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_scale_in_waits_for_running_queries() {
    init();
    let mut env = PrestoEnv::start().await;
    env.start_agent_with(None, &agent_args("2s"));
    env.put_catalog("lake", glue_catalog()).await;
    let mut spec = cluster_spec(3, &["lake"]);
    spec["workers"] = json!({"min": 3, "max": 3, "target_cpu_percent": 70});
    env.put_cluster("analytics", spec.clone()).await;
    env.running("analytics", 3, 20).await;
    let long = task_on_each(&env, "analytics", Duration::from_secs(5));
    assert_eq!(long.len(), 3);

    spec["workers"] = json!({"min": 1, "max": 2, "target_cpu_percent": 70});
    env.put_cluster("analytics", spec).await;
    let leaving = eventually(
        Duration::from_secs(15),
        "one worker terminating",
        || async {
            workers(&env, "analytics")
                .into_iter()
                .find(|(_, t)| *t)
                .map(|(p, _)| p)
        },
    )
    .await;
    assert!(
        env.kube
            .run_task(NAMESPACE, &leaving, Duration::from_millis(100))
            .is_err(),
        "a draining worker takes no new query"
    );
    let (_, task) = long
        .iter()
        .find(|(p, _)| *p == leaving)
        .expect("the leaving worker had a query");
    eventually(
        Duration::from_secs(30),
        "the leaving worker gone",
        || async {
            (!workers(&env, "analytics")
                .iter()
                .any(|(p, _)| *p == leaving))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        task.outcome(),
        TaskOutcome::Finished,
        "the query on {leaving} ran to its end"
    );
    assert_eq!(workers(&env, "analytics").len(), 2);
}
