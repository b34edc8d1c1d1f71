//! Customer guardrails, end to end with the real binaries: the agent's `--policy-file`
//! keeps what exceeds it from being applied (the cluster keeps running as it was, a
//! `GuardrailRefused` condition in the API and the dashboard names the rule and the
//! value) while the rest of the same document is applied; a delete under
//! `local-approval` waits for `tether-agent approve delete` in the VPC; a bad policy is
//! a start-up error naming the line, and a bad change at run time keeps the previous one.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::bin_path;
use tether_tests::harness::presto_env::{FAST_AGENT, PrestoEnv, cluster_spec, glue_catalog};
use tether_tests::harness::web::{WebClient, form_of};
use tether_tests::harness::{eventually, init};

fn replicas(env: &PrestoEnv, cluster: &str) -> Option<u64> {
    env.object("apps/v1", "deployments", &format!("{cluster}-worker"))
        .and_then(|d| d["spec"]["replicas"].as_u64())
}

async fn stop_agent(env: &mut PrestoEnv) {
    if let Some(mut a) = env.agent.take() {
        a.terminate();
        a.wait_exit(Duration::from_secs(10)).await;
    }
}

/// Restarts the agent with `policy` as its policy file.
async fn with_policy(env: &mut PrestoEnv, policy: &str) -> std::path::PathBuf {
    stop_agent(env).await;
    let path = env.dir().join("policy.toml");
    std::fs::write(&path, policy).expect("policy file");
    let mut args: Vec<&str> = FAST_AGENT.to_vec();
    let p = path.display().to_string();
    args.extend(["--policy-file", p.as_str()]);
    env.start_agent_with(None, &args);
    env.fx.connected(&env.cp.api(), 15).await;
    path
}

/// The compute plane's `applied_conditions` of type `GuardrailRefused`.
async fn refusals(env: &PrestoEnv) -> Vec<Value> {
    let cp = env
        .api()
        .ok_get(&format!("/compute-planes/{}", env.fx.cp_id))
        .await;
    cp["applied_conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["type"] == "GuardrailRefused")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for a refusal of `cluster` by `reason` and returns it.
async fn refused(env: &PrestoEnv, cluster: &str, reason: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("GuardrailRefused {reason} of {cluster}"),
        || async {
            refusals(env)
                .await
                .into_iter()
                .find(|c| c["cluster"] == cluster && c["reason"] == reason)
        },
    )
    .await
}

fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The dashboard's overview page of the compute plane, signed in as the tenant admin.
async fn overview(env: &PrestoEnv) -> String {
    let base = format!("http://{}", env.cp.http);
    let mut web = WebClient::new();
    let login = web.get(&format!("{base}/login")).await;
    let (action, mut form) = form_of(&login.url, &login.body);
    form.push(("token".into(), env.fx.admin_token.clone()));
    let signed_in = web.post(&action, &form).await;
    assert!(signed_in.status.is_redirection(), "{}", signed_in.body);
    let page = web.get(&format!("{base}/ui/cp/{}", env.fx.cp_id)).await;
    assert!(page.status.is_success(), "{}", page.status);
    page.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_keeps_the_cluster_while_the_rest_of_the_document_applies() {
    init();
    let mut env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(2, &["lake"]))
        .await;
    env.put_cluster("reports", cluster_spec(1, &["lake"])).await;
    env.running("analytics", 2, 15).await;
    env.running("reports", 1, 15).await;
    let policy = with_policy(&mut env, "max_workers_per_cluster = 4\n").await;

    // One document asks for both: analytics beyond the limit, reports within it.
    env.put_cluster("analytics", cluster_spec(6, &["lake"]))
        .await;
    env.put_cluster("reports", cluster_spec(3, &["lake"])).await;
    env.running("reports", 3, 20).await;
    let c = refused(&env, "analytics", "MaxWorkersPerCluster").await;
    let message = c["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_workers_per_cluster (6)") && message.contains("limit of 4"),
        "{message}"
    );
    assert_eq!(replicas(&env, "analytics"), Some(2), "kept as it was");
    assert_eq!(replicas(&env, "reports"), Some(3), "the allowed change");
    // The cluster's own status names it too, and the dashboard shows it.
    let analytics = env.cluster("analytics").await;
    assert!(
        analytics["status"]["conditions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["type"] == "GuardrailRefused")),
        "{analytics}"
    );
    let page = overview(&env).await;
    assert!(
        page.contains("GuardrailRefused") && page.contains("MaxWorkersPerCluster"),
        "{page}"
    );

    // A restart keeps it as it was: the held spec is in the state dir.
    let args: Vec<String> = FAST_AGENT
        .iter()
        .map(|s| (*s).to_owned())
        .chain(["--policy-file".into(), policy.display().to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stop_agent(&mut env).await;
    env.start_agent_with(None, &args);
    env.fx.connected(&env.cp.api(), 15).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replicas(&env, "analytics"),
        Some(2),
        "still held after a restart"
    );

    // A policy change that does not parse keeps the previous policy, and says so.
    std::fs::write(&policy, "max_workers_per_cluster = 4\nmax_wrkers = 8\n").expect("edit");
    eventually(
        Duration::from_secs(15),
        "the bad policy noticed",
        || async {
            let log = env.agent.as_ref().map(|a| a.log()).unwrap_or_default();
            (log.contains("keeping the previous policy") && log.contains("line 2")).then_some(())
        },
    )
    .await;
    assert_eq!(replicas(&env, "analytics"), Some(2));

    // A valid, looser policy lets the change through.
    std::fs::write(&policy, "max_workers_per_cluster = 8\n").expect("edit");
    env.running("analytics", 6, 20).await;
    eventually(Duration::from_secs(15), "the refusal cleared", || async {
        refusals(&env).await.is_empty().then_some(())
    })
    .await;

    let records = audit(&env.agent_dir);
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "guardrail.refused")
        .collect();
    assert!(
        refused.iter().any(|r| r["cluster"] == "analytics"
            && r["rule"] == "max_workers_per_cluster"
            && r["value"] == "6"),
        "{records:?}"
    );
    assert!(records.iter().any(|r| r["action"] == "policy.invalid"));
    assert!(
        records
            .iter()
            .filter(|r| r["action"] == "policy.loaded")
            .count()
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_waits_for_local_approval() {
    init();
    let mut env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(2, &["lake"]))
        .await;
    env.running("analytics", 2, 15).await;
    with_policy(&mut env, "deletes = \"local-approval\"\n").await;

    let approve = |cluster: &str| {
        std::process::Command::new(bin_path("tether-agent"))
            .args(["approve", "delete", cluster, "--state-dir"])
            .arg(&env.agent_dir)
            .output()
            .expect("tether-agent approve")
    };
    // Nothing waits yet: an approval is refused, and names why.
    let early = approve("analytics");
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("no delete is waiting"),
        "{early:?}"
    );

    let (s, v) = env
        .api()
        .delete(&format!(
            "/compute-planes/{}/clusters/analytics",
            env.fx.cp_id
        ))
        .await;
    assert!(s.is_success(), "{s} {v}");
    let c = refused(&env, "analytics", "Deletes").await;
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("tether-agent approve delete analytics")),
        "{c}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&env, "analytics"), Some(2), "still running");

    let wrong = approve("reports");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("waiting: analytics"),
        "{wrong:?}"
    );
    let ok = approve("analytics");
    assert!(ok.status.success(), "{ok:?}");
    eventually(Duration::from_secs(20), "the cluster deleted", || async {
        env.object("apps/v1", "deployments", "analytics-coordinator")
            .is_none()
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(15), "the refusal cleared", || async {
        refusals(&env).await.is_empty().then_some(())
    })
    .await;
    let records = audit(&env.agent_dir);
    for action in ["delete.approved", "guardrail.delete_approved"] {
        assert!(
            records
                .iter()
                .any(|r| r["action"] == action && r["cluster"] == "analytics"),
            "{action}: {records:?}"
        );
    }
    // The approval is used once.
    assert!(!env.agent_dir.join("approvals/delete-analytics").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_file_stops_the_start_naming_the_line() {
    init();
    let mut env = PrestoEnv::start().await;
    stop_agent(&mut env).await;
    let path = env.dir().join("policy.toml");
    std::fs::write(
        &path,
        "max_workers_total = 10\n\nallowed_catalog_hosts = [\"db.example.com\", \"not a host\"]\n",
    )
    .expect("policy");
    let mut args: Vec<&str> = FAST_AGENT.to_vec();
    let p = path.display().to_string();
    args.extend(["--policy-file", p.as_str()]);
    env.start_agent_with(None, &args);
    let agent = env.agent.as_mut().expect("agent");
    let status = agent.wait_exit(Duration::from_secs(15)).await;
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains("line 3") && log.contains("not a host") && log.contains("policy.toml"),
        "{log}"
    );
}
