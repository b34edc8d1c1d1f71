//! The agent checks from where it runs that each attached catalog's source answers, and
//! says so on the clusters that use it: a wrong host or a closed port shows before a
//! query fails, and clears once the source is there.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{FAST_AGENT, PrestoEnv, cluster_spec};
use tether_tests::harness::{eventually, init};

/// The `CatalogReachable` condition of a cluster: (status, message).
async fn reachable(env: &PrestoEnv, cluster: &str) -> Option<(String, String)> {
    let c = env.cluster(cluster).await;
    let found: Value = c["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "CatalogReachable")?
        .clone();
    Some((
        found["status"].as_str().unwrap_or("").to_owned(),
        found["message"].as_str().unwrap_or("").to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_catalog_sources_are_a_condition_until_they_answer() {
    init();
    let mut env = PrestoEnv::start().await;
    let mut args = FAST_AGENT.to_vec();
    args.extend(["--catalog-check-interval", "1s"]);
    env.start_agent_with_env(&args, &[]);
    let up = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up_port = up.local_addr().expect("addr").port();
    let down_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let db = |scheme: &str, port: u16| {
        json!({"connector": scheme, "properties": {"connection-url": format!("jdbc:{scheme}://127.0.0.1:{port}/app")},
               "credentials": {"secret_ref": "k8s:db"}})
    };
    env.put_catalog("up", db("mysql", up_port)).await;
    env.put_catalog("down", db("postgresql", down_port)).await;
    env.put_cluster("a", cluster_spec(1, &["up"])).await;
    env.put_cluster("b", cluster_spec(1, &["up", "down"])).await;

    let (_, message) = eventually(
        Duration::from_secs(20),
        "b: CatalogReachable False",
        || async { reachable(&env, "b").await.filter(|(s, _)| s == "False") },
    )
    .await;
    assert!(
        message.contains("catalog down")
            && message.contains(&format!("JDBC 127.0.0.1:{down_port}")),
        "{message}"
    );
    assert!(!message.contains("catalog up"), "{message}");
    eventually(
        Duration::from_secs(20),
        "a: CatalogReachable True",
        || async { reachable(&env, "a").await.filter(|(s, _)| s == "True") },
    )
    .await;

    // The database comes up: the condition clears.
    let _now_up = tokio::net::TcpListener::bind(("127.0.0.1", down_port))
        .await
        .expect("bind the closed port");
    eventually(
        Duration::from_secs(20),
        "b: CatalogReachable True",
        || async { reachable(&env, "b").await.filter(|(s, _)| s == "True") },
    )
    .await;
    drop(up);
}
