//! Signed desired state, end to end with the real binaries: the agent applies only
//! documents signed for its compute plane by the key it pinned at enrollment (or one a
//! rotation statement from that key introduced), and never an older generation than one
//! it applied — also when the document is the one in its own state dir.

use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::presto_env::{PrestoEnv, cluster_spec, glue_catalog};
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, eventually, init};

const STATE_FILE: &str = "desired-state.json";

fn worker_replicas(env: &PrestoEnv) -> Value {
    env.object("apps/v1", "deployments", "analytics-worker")
        .map(|d| d["spec"]["replicas"].clone())
        .unwrap_or(Value::Null)
}

async fn stop_agent(env: &mut PrestoEnv) {
    if let Some(mut a) = env.agent.take() {
        a.terminate();
        a.wait_exit(Duration::from_secs(10)).await;
    }
}

/// An environment whose cluster `analytics` runs `workers` workers with catalog `lake`.
async fn analytics_running(workers: u32) -> PrestoEnv {
    init();
    let env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(workers, &["lake"]))
        .await;
    env.running("analytics", u64::from(workers), 15).await;
    env
}

/// Starts the control plane again on its data dir and addresses.
async fn restart_control_plane(
    env: &mut PrestoEnv,
    data_dir: std::path::PathBuf,
    http: String,
    grpc: String,
) {
    env.cp = ControlPlaneProc::start(ControlPlaneOptions {
        data_dir: Some(data_dir),
        http_listen: http,
        grpc_listen: grpc,
        ..Default::default()
    })
    .await;
}

/// The records of the agent's `STATE_DIR/audit.log`.
fn audit_records(env: &PrestoEnv) -> Vec<Value> {
    let text = std::fs::read_to_string(env.agent_dir.join("audit.log")).expect("audit.log");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Waits until the agent's log says `what`, and returns the log.
async fn agent_logged(env: &PrestoEnv, what: &str) -> String {
    eventually(Duration::from_secs(15), what, || async {
        let log = env.agent.as_ref().map(|a| a.log()).unwrap_or_default();
        log.contains(what).then_some(log)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_replayed_state_file_is_refused_and_the_clusters_stay() {
    let mut env = analytics_running(3).await;
    let state_file = env.agent_dir.join(STATE_FILE);
    let older = std::fs::read_to_string(&state_file).expect("persisted state");
    let changed = env
        .put_cluster("analytics", cluster_spec(4, &["lake"]))
        .await;
    let generation = changed["generation"].as_i64().expect("generation");
    env.running("analytics", 4, 15).await;
    let current = std::fs::read_to_string(&state_file).expect("persisted state");
    assert!(current.contains("\"signature\""), "{current}");

    // Without the control plane, so only the state dir can tell the agent what to do.
    stop_agent(&mut env).await;
    let (http, grpc, data_dir) = (
        env.cp.http.clone(),
        env.cp.grpc.clone(),
        env.cp.data_dir.clone(),
    );
    env.cp.kill();

    // A document edited in the state dir: 4 workers become 9.
    let tampered = current.replace(r#"\"count\":4"#, r#"\"count\":9"#);
    assert_ne!(tampered, current, "the edit hit the worker count");
    std::fs::write(&state_file, &tampered).expect("tamper");
    env.start_agent(None);
    let log = agent_logged(&env, "refusing the persisted desired state").await;
    assert!(log.contains("signature does not match"), "{log}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(worker_replicas(&env), 4, "the clusters stay as they are");
    assert!(
        env.object("apps/v1", "deployments", "analytics-coordinator")
            .is_some(),
        "nothing is deleted"
    );
    stop_agent(&mut env).await;

    // A validly signed, older document put back.
    std::fs::write(&state_file, &older).expect("replay");
    env.start_agent(None);
    let log = agent_logged(&env, "refusing the persisted desired state").await;
    assert!(
        log.contains(&format!("older than generation {generation}")),
        "{log}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        worker_replicas(&env),
        4,
        "the replayed document is not applied"
    );

    // The control plane returns: its current document is applied again.
    restart_control_plane(&mut env, data_dir, http, grpc).await;
    eventually(
        Duration::from_secs(30),
        "the current document persisted again",
        || async {
            let persisted = std::fs::read_to_string(&state_file).ok()?;
            persisted
                .contains(&format!("\"generation\": {generation}"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(worker_replicas(&env), 4);

    // The customer's own record holds all of it.
    let audit = audit_records(&env);
    for action in [
        "enrolled",
        "session.opened",
        "desired_state.accepted",
        "desired_state.applied",
        "session.ended",
    ] {
        assert!(
            audit.iter().any(|r| r["action"] == action),
            "{action}: {audit:?}"
        );
    }
    let refusals: Vec<&Value> = audit
        .iter()
        .filter(|r| r["action"] == "desired_state.refused")
        .collect();
    assert!(
        refusals.iter().any(|r| r["reason"] == "BadSignature")
            && refusals.iter().any(|r| r["reason"] == "Rollback"),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_of_a_key_the_agent_did_not_pin_are_refused_and_a_rotation_is_followed() {
    let mut env = analytics_running(2).await;
    let key_file = env.agent_dir.join("signing-key.pem");
    let pinned = std::fs::read_to_string(&key_file).expect("the key pinned at enrollment");

    // The agent trusts another key: everything this control plane signs is refused.
    stop_agent(&mut env).await;
    let stranger = tether_shared::signing::SigningKey::from_pkcs8(
        &tether_shared::signing::SigningKey::generate_pkcs8(),
    )
    .expect("key");
    std::fs::write(&key_file, stranger.public().to_pem()).expect("pin another key");
    env.start_agent(None);
    env.put_cluster("analytics", cluster_spec(5, &["lake"]))
        .await;
    let api = env.api();
    let cp_path = format!("/compute-planes/{}", env.fx.cp_id);
    let refused = eventually(
        Duration::from_secs(20),
        "the refusal in the API",
        || async {
            let v = api.as_token(&env.fx.admin_token).ok_get(&cp_path).await;
            v["applied_conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "DesiredStateRefused")
                .cloned()
        },
    )
    .await;
    assert_eq!(refused["reason"], "BadSignature", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains(stranger.public().key_id())),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        worker_replicas(&env),
        2,
        "nothing of the refused document applied"
    );

    // Back to the real key; then the control plane rotates its key. The agent follows the
    // statement the old key signed, and applies what the new key signs.
    stop_agent(&mut env).await;
    std::fs::write(&key_file, &pinned).expect("pin the real key");
    env.start_agent(None);
    env.running("analytics", 5, 30).await;
    stop_agent(&mut env).await;
    let (http, grpc, data_dir) = (
        env.cp.http.clone(),
        env.cp.grpc.clone(),
        env.cp.data_dir.clone(),
    );
    env.cp.terminate();
    let out = std::process::Command::new(tether_tests::harness::bin_path("tether-control-plane"))
        .args(["rotate-signing-key", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("rotate-signing-key");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("->"), "{stdout}");
    restart_control_plane(&mut env, data_dir, http, grpc).await;
    env.start_agent(None);
    agent_logged(&env, "following a signing key rotation").await;
    env.put_cluster("analytics", cluster_spec(3, &["lake"]))
        .await;
    env.running("analytics", 3, 30).await;
    let now_pinned = std::fs::read_to_string(&key_file).expect("pinned key");
    assert_ne!(now_pinned, pinned, "the new key is pinned");
    // Without the control plane, the state dir's document verifies under the new key.
    stop_agent(&mut env).await;
    env.cp.kill();
    env.start_agent(None);
    let log = agent_logged(&env, "loaded persisted desired state").await;
    assert!(!log.contains("refusing the persisted"), "{log}");
    let audit = audit_records(&env);
    for action in ["signing_key.untrusted", "signing_key.rotated"] {
        assert!(
            audit.iter().any(|r| r["action"] == action),
            "{action}: {audit:?}"
        );
    }
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "desired_state.refused" && r["reason"] == "BadSignature"),
        "{audit:?}"
    );
}
