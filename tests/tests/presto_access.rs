//! Who may query Presto, end to end through the real binaries: a rules document put through
//! the API reaches every cluster of the compute plane as the agent's `<cluster>-access`
//! ConfigMap and `access-control.properties`; a change to the catalog rules is only a
//! ConfigMap update (Presto re-reads the file every `security.refresh-period`), so no pod is
//! replaced; removing the document prunes it. Bad documents are refused with the field named
//! and nothing changes.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{PrestoEnv, cluster_spec, glue_catalog};
use tether_tests::harness::{eventually, init};

fn rules(alice: &str) -> Value {
    json!({
        "authentication": {"kind": "none"},
        "rules": {"catalogs": [
            {"user": "alice", "catalog": "lake", "allow": alice},
            {"catalog": "system", "allow": "read-only"}
        ]},
        "table_rules": {"lake": [
            {"user": "alice", "schema": "sales", "privileges": ["SELECT"]}
        ]}
    })
}

/// The `rules.json` of the cluster's access ConfigMap, parsed.
fn rules_json(env: &PrestoEnv, cluster: &str) -> Option<Value> {
    let cm = env.object("v1", "configmaps", &format!("{cluster}-access"))?;
    serde_json::from_str(cm["data"]["rules.json"].as_str()?).ok()
}

/// The uids of the pods in the stand-in's namespace.
fn pods(env: &PrestoEnv) -> Vec<String> {
    let mut names: Vec<String> = env
        .kube
        .list("v1", "pods", Some("tether"))
        .iter()
        .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The pod uids once two clusters' pods (`count` in all) have stopped changing: a
/// coordinator roll from an earlier change has finished.
async fn settled_pods(env: &PrestoEnv, count: usize) -> Vec<String> {
    eventually(Duration::from_secs(30), "pods settled", || async {
        let first = pods(env);
        tokio::time::sleep(Duration::from_secs(2)).await;
        (first.len() == count && pods(env) == first).then_some(first)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_reach_every_cluster_and_change_without_restarts() {
    init();
    let env = PrestoEnv::start().await;
    let cp = env.fx.cp_id.clone();
    let path = format!("/compute-planes/{cp}/presto-access");
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(1, &["lake"]))
        .await;
    env.put_cluster("adhoc", cluster_spec(1, &["lake"])).await;
    env.running("analytics", 1, 30).await;
    env.running("adhoc", 1, 30).await;
    assert_eq!(
        env.api().get(&path).await.0,
        404,
        "no document until one is put"
    );

    // Refusals name the field and change nothing.
    let mut bad = rules("read-only");
    bad["rules"]["catalogs"][0]["allow"] = json!("everything");
    let (s, v) = env.api().put(&path, &bad).await;
    assert_eq!(s, 400, "{v}");
    let mut bad = rules("read-only");
    bad["table_rules"] = json!({"nowhere": [{"privileges": ["SELECT"]}]});
    let (s, v) = env.api().put(&path, &bad).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "table_rules.nowhere", "{v}");
    let mut bad = rules("read-only");
    bad["authentication"] = json!({"kind": "ldap", "url": "ldap://dir.corp:389", "user_bind_pattern": "uid=${USER},ou=people"});
    let (s, v) = env.api().put(&path, &bad).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "authentication.url", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ldaps://"),
        "{v}"
    );
    // Below admin: 403.
    let viewer = env
        .cp
        .api()
        .ok_post(
            &format!("/tenants/{}/tokens", env.fx.tenant_id),
            &json!({"role": "operator"}),
        )
        .await;
    let operator = env
        .cp
        .api()
        .as_token(viewer["token"].as_str().expect("token"));
    assert_eq!(operator.put(&path, &rules("read-only")).await.0, 403);
    assert_eq!(operator.get(&path).await.0, 404, "operators may read it");
    // Another tenant cannot see or write this compute plane.
    let other = tether_tests::harness::TenantFixture::create(&env.cp.api(), "globex").await;
    let other = env.cp.api().as_token(&other.admin_token);
    assert_eq!(other.put(&path, &rules("all")).await.0, 404);
    assert!(env.object("v1", "configmaps", "analytics-access").is_none());

    // The document reaches both clusters.
    let put = env.api().ok_put(&path, &rules("read-only")).await;
    assert!(put["generation"].as_u64().is_some(), "{put}");
    for cluster in ["analytics", "adhoc"] {
        let r = eventually(
            Duration::from_secs(20),
            &format!("{cluster}-access rendered"),
            || async { rules_json(&env, cluster) },
        )
        .await;
        assert_eq!(r["catalogs"][0]["user"], "alice");
        assert_eq!(r["catalogs"][0]["allow"], "read-only");
        let coordinator = env
            .object("v1", "configmaps", &format!("{cluster}-coordinator"))
            .expect("coordinator config");
        let props = coordinator["data"]["access-control.properties"]
            .as_str()
            .unwrap_or("");
        assert!(props.contains("access-control.name=file"), "{props}");
        assert!(props.contains("security.refresh-period="), "{props}");
        let tables = env
            .object("v1", "configmaps", &format!("{cluster}-access"))
            .expect("access")["data"]["lake-tables.json"]
            .clone();
        assert!(tables.as_str().unwrap_or("").contains("sales"), "{tables}");
    }
    env.running("analytics", 1, 30).await;
    env.running("adhoc", 1, 30).await;
    let got = env.api().ok_get(&path).await;
    let want = rules("read-only");
    assert_eq!(
        got["presto_access"]["rules"]["catalogs"], want["rules"]["catalogs"],
        "{got}"
    );
    assert_eq!(
        got["presto_access"]["table_rules"], want["table_rules"],
        "{got}"
    );

    // A catalog the table rules name cannot be deleted.
    let (s, v) = env
        .api()
        .delete(&format!("/compute-planes/{cp}/catalogs/lake"))
        .await;
    assert_eq!(s, 409, "{v}");

    // A change to the catalog rules: the ConfigMap changes, no pod is replaced.
    let before = settled_pods(&env, 4).await;
    env.api().ok_put(&path, &rules("none")).await;
    eventually(Duration::from_secs(20), "the new rule applied", || async {
        (rules_json(&env, "analytics")?["catalogs"][0]["allow"] == "none").then_some(())
    })
    .await;
    env.running("analytics", 1, 30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pods(&env), before, "no pod replaced by a rule change");

    // Removed: the ConfigMaps go, and so does the access-control file.
    let (s, _) = env.api().delete(&path).await;
    assert_eq!(s, 204);
    eventually(
        Duration::from_secs(20),
        "access ConfigMaps pruned",
        || async {
            (env.object("v1", "configmaps", "analytics-access").is_none()
                && env.object("v1", "configmaps", "adhoc-access").is_none())
            .then_some(())
        },
    )
    .await;
    let coordinator = env
        .object("v1", "configmaps", "analytics-coordinator")
        .expect("coordinator config");
    assert!(
        coordinator["data"]
            .get("access-control.properties")
            .is_none()
    );
    assert_eq!(env.api().get(&path).await.0, 404);
    // And with no table rules left, the catalog may go.
    env.put_cluster("analytics", cluster_spec(1, &[])).await;
    env.put_cluster("adhoc", cluster_spec(1, &[])).await;
    let (s, v) = env
        .api()
        .delete(&format!("/compute-planes/{cp}/catalogs/lake"))
        .await;
    assert_eq!(s, 204, "{v}");
}
