//! Support without access, end to end with the real binaries: the control plane asks for a
//! diagnostic bundle; the agent prepares it and lists it for the customer; nothing is sent
//! until `tether-agent support approve`; what arrives is what the customer saw, holds none
//! of a set of planted secrets, and every step is audited on both sides. An unapproved
//! request expires and can no longer be approved; another tenant sees nothing.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{cluster_spec, env_with_presto, mysql_catalog};
use tether_tests::harness::{TenantFixture, bin_path, eventually, init};
use tether_tests::standins::presto::{PrestoOptions, Workload};

fn support(args: &[&str], state_dir: &std::path::Path) -> Output {
    std::process::Command::new(bin_path("tether-agent"))
        .arg("support")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("tether-agent support")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn audit_actions(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_sent_only_after_approval_and_holds_no_secret() {
    init();
    let (env, presto) = env_with_presto(PrestoOptions::default()).await;
    // Planted: a catalog password in a Kubernetes Secret (the harness creates
    // orders-db-credentials with password hunter2), a query literal, the agent's private key,
    // the tenant's API token.
    env.put_catalog("orders", mysql_catalog()).await;
    env.put_cluster("analytics", cluster_spec(2, &["lake", "orders"]))
        .await;
    env.running("analytics", 2, 20).await;
    let literal = "planted-literal-9f3c1e";
    let workload = presto.start_workload(Workload {
        count: Some(3),
        per_second: 10.0,
        run_time: Duration::from_millis(50),
        fail_ratio: 0.0,
        texts: vec![format!("SELECT * FROM orders WHERE note = '{literal}'")],
        ..Workload::default()
    });
    while !workload.is_done() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let identity = std::fs::read_to_string(env.agent_dir.join("identity.pem")).expect("identity");
    let key_line = identity
        .split("PRIVATE KEY-----")
        .nth(1)
        .and_then(|k| k.lines().find(|l| l.len() > 40))
        .expect("a line of the private key")
        .to_owned();
    let planted = [
        "hunter2",
        literal,
        key_line.as_str(),
        env.fx.admin_token.as_str(),
    ];

    let path = format!("/compute-planes/{}/support-requests", env.fx.cp_id);
    let created = env
        .api()
        .ok_post(&path, &json!({"reason": "workers restart every hour"}))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["status"], "pending", "{created}");

    // The customer sees it, with what it holds, before anything is sent.
    let listed = eventually(
        Duration::from_secs(30),
        "the request listed in the VPC",
        || async {
            let out = stdout(&support(&["list"], &env.agent_dir));
            (out.contains(&id)
                && out.contains("waiting for approval")
                && out.contains("doctor.txt"))
            .then_some(out)
        },
    )
    .await;
    assert!(listed.contains("workers restart every hour"), "{listed}");
    let shown = support(&["show", &id], &env.agent_dir);
    assert!(shown.status.success(), "{shown:?}");
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("the bundle as JSON");
    let names: Vec<&str> = shown["files"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    for name in [
        "request.json",
        "doctor.txt",
        "agent.log",
        "report.json",
        "objects.json",
        "pods.json",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, body) = env.api().get(&format!("{path}/{id}/bundle")).await;
    assert_eq!(s.as_u16(), 409, "not sent before approval: {body}");
    let requests = env.api().ok_get(&path).await;
    assert_eq!(requests[0]["status"], "pending", "{requests}");

    // Another tenant sees neither the requests nor the bundle.
    let other = TenantFixture::create(&env.cp.api(), "other").await;
    let theirs = env.cp.api().as_token(&other.admin_token);
    assert_eq!(theirs.get(&path).await.0.as_u16(), 404);
    assert_eq!(
        theirs.get(&format!("{path}/{id}/bundle")).await.0.as_u16(),
        404
    );

    let wrong = support(&["approve", "sr-0123"], &env.agent_dir);
    assert!(!wrong.status.success());
    let approved = support(&["approve", &id], &env.agent_dir);
    assert!(approved.status.success(), "{approved:?}");
    assert!(stdout(&approved).contains("approved"), "{approved:?}");
    let bundle = eventually(Duration::from_secs(30), "the bundle received", || async {
        let (s, b) = env.api().get(&format!("{path}/{id}/bundle")).await;
        s.is_success().then_some(b)
    })
    .await;
    assert_eq!(
        bundle["files"], shown["files"],
        "what arrived is what the customer saw"
    );
    let text = bundle.to_string();
    for secret in planted {
        assert!(
            !text.contains(secret),
            "the bundle holds a planted secret ({secret})"
        );
    }
    let doctor = bundle["files"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == "doctor.txt"))
        .and_then(|f| f["content"].as_str())
        .unwrap_or_default();
    assert!(doctor.contains("PASS  session"), "{doctor}");
    let objects = bundle["files"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == "objects.json"))
        .and_then(|f| f["content"].as_str())
        .unwrap_or_default();
    assert!(objects.contains("analytics-coordinator"), "{objects}");
    let requests = env.api().ok_get(&path).await;
    assert_eq!(requests[0]["status"], "received", "{requests}");

    // Audited on both sides.
    let agent_audit = audit_actions(&env.agent_dir);
    for action in [
        "support.requested",
        "support.approved",
        "support.bundle_sent",
    ] {
        assert!(
            agent_audit
                .iter()
                .any(|r| r["action"] == action && r["id"] == id.as_str()),
            "{action}: {agent_audit:?}"
        );
    }
    let log = env.api().ok_get("/audit-log?limit=1000").await;
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "POST /compute-planes/{cp}/support-requests"),
        "{log:#}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "support bundle received"
                && e["target"].as_str().is_some_and(|t| t.ends_with(&id))),
        "{log:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapproved_request_expires_and_bad_requests_are_refused() {
    init();
    let (env, _presto) = env_with_presto(PrestoOptions::default()).await;
    let path = format!("/compute-planes/{}/support-requests", env.fx.cp_id);
    for bad in [
        json!({"reason": ""}),
        json!({"reason": "x", "expires_in_seconds": 5}),
        json!({"reason": "x", "expires_in_seconds": 9_999_999}),
        json!({"reason": "x", "extra": 1}),
    ] {
        let (s, body) = env.api().post(&path, &bad).await;
        assert_eq!(s.as_u16(), 400, "{bad}: {body}");
    }
    assert_eq!(
        env.api().ok_get(&path).await.as_array().map(Vec::len),
        Some(0),
        "nothing was created"
    );
    let created = env
        .api()
        .ok_post(
            &path,
            &json!({"reason": "short-lived", "expires_in_seconds": 10}),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(20), "the request listed", || async {
        stdout(&support(&["list"], &env.agent_dir))
            .contains(&id)
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "the request expired", || async {
        let out = stdout(&support(&["list"], &env.agent_dir));
        out.lines()
            .any(|l| l.contains(&id) && l.contains("expired"))
            .then_some(())
    })
    .await;
    let late = support(&["approve", &id], &env.agent_dir);
    assert!(!late.status.success());
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("expired"),
        "{late:?}"
    );
    assert!(
        !support(&["show", &id], &env.agent_dir).status.success(),
        "its bundle is deleted"
    );
    let requests = env.api().ok_get(&path).await;
    assert_eq!(requests[0]["status"], "expired", "{requests}");
    assert!(
        audit_actions(&env.agent_dir)
            .iter()
            .any(|r| r["action"] == "support.expired" && r["id"] == id.as_str())
    );
}
