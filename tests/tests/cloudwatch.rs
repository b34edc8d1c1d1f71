//! Issue 4, acceptance 5 with the real agent binary: its own log lines and the Presto pods'
//! logs are readable back from CloudWatch Logs (moto_server).

use std::time::Duration;

use tether_tests::harness::moto::Moto;
use tether_tests::harness::presto_env::{FAST_AGENT, NAMESPACE, PrestoEnv, cluster_spec};
use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, eventually, init,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_logs_reach_cloudwatch() {
    init();
    let moto = Moto::start().await;
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = AgentOptions::for_control_plane(&cp, dir.path().join("agent"), Some(token))
        .with_args(&[
            "--cloudwatch-log-group",
            "/tether/acme-prod",
            "--cloudwatch-log-stream",
            "agent-test",
            "--cloudwatch-endpoint",
            &moto.url,
            "--cloudwatch-region",
            "us-east-1",
        ]);
    opts.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
    ];
    let mut agent = AgentProc::start(opts.clone());
    fx.connected(&api, 10).await;
    let lines = eventually(
        Duration::from_secs(20),
        "agent log lines in CloudWatch",
        || async {
            let m = moto.log_messages("/tether/acme-prod", "agent-test").await;
            m.iter()
                .any(|l| l.contains("connected to control plane"))
                .then_some(m)
        },
    )
    .await;
    assert!(lines.iter().any(|l| l.contains("enrolled")), "{lines:#?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("structured JSON lines");
    assert!(
        first["level"].is_string() && first["message"].is_string(),
        "{first}"
    );
    // The customer's audit trail has a stream of its own in the same log group.
    let audit = eventually(
        Duration::from_secs(20),
        "audit records in CloudWatch",
        || async {
            let m = moto
                .log_messages("/tether/acme-prod", "audit/agent-test")
                .await;
            let actions: Vec<String> = m
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|r| r["action"].as_str().map(str::to_owned))
                .collect();
            (actions.iter().any(|a| a == "enrolled")
                && actions.iter().any(|a| a == "session.opened"))
            .then_some(actions)
        },
    )
    .await;
    assert!(!audit.is_empty());

    // The doctor checks the log group, and STS, the way the agent reaches them.
    let mut doc = opts.clone();
    doc.enrollment_token = None;
    doc.extra_args.extend([
        "--account-binding".to_owned(),
        "--sts-endpoint".to_owned(),
        moto.url.clone(),
        "--aws-region".to_owned(),
        "us-east-1".to_owned(),
    ]);
    let (code, report) = tether_tests::harness::doctor(&doc, &[]);
    let by_name = |n: &str| {
        report["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == n).cloned())
            .unwrap_or_default()
    };
    assert_eq!(by_name("cloudwatch")["status"], "PASS", "{report:#}");
    assert!(
        by_name("cloudwatch")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/tether/acme-prod exists")),
        "{report:#}"
    );
    assert_eq!(by_name("sts")["status"], "PASS", "{report:#}");
    assert!(
        by_name("sts")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("account ")),
        "{report:#}"
    );
    assert_eq!(code, Some(0), "{report:#}");

    // A clean stop flushes what is buffered.
    agent.terminate();
    agent.wait_exit(Duration::from_secs(15)).await;
    let after = moto.log_messages("/tether/acme-prod", "agent-test").await;
    assert!(
        after.iter().any(|l| l.contains("agent stopped")),
        "final lines flushed: {after:#?}"
    );
    let audit = moto
        .log_messages("/tether/acme-prod", "audit/agent-test")
        .await;
    assert!(
        audit.iter().any(|l| l.contains("\"session.ended\"")),
        "the last audit records flushed: {audit:#?}"
    );
}

/// The Presto pods' logs, read through the Kubernetes API, land in one stream per pod
/// container; a restarted agent ships what was written while it was down, and nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presto_pod_logs_reach_cloudwatch_once_across_restarts() {
    init();
    let moto = Moto::start().await;
    let mut env = PrestoEnv::start().await;
    if let Some(mut a) = env.agent.take() {
        a.terminate();
        a.wait_exit(Duration::from_secs(10)).await;
    }
    let group = "/tether/acme-pods";
    let start_agent = |env: &PrestoEnv| {
        let mut opts = AgentOptions::for_control_plane(&env.cp, env.agent_dir.clone(), None)
            .with_args(&FAST_AGENT)
            .with_args(&[
                "--kubeconfig",
                &env.kubeconfig.display().to_string(),
                "--cloudwatch-log-group",
                group,
                "--cloudwatch-endpoint",
                &moto.url,
                "--cloudwatch-region",
                "us-east-1",
            ]);
        opts.env = vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ];
        AgentProc::start(opts)
    };
    let mut agent = start_agent(&env);
    env.fx.connected(&env.cp.api(), 15).await;
    env.put_cluster("etl", cluster_spec(2, &[])).await;
    env.running("etl", 2, 30).await;

    let pods = env.kube.list("v1", "pods", Some(NAMESPACE));
    assert_eq!(pods.len(), 3, "a coordinator and two workers");
    let streams: Vec<(String, String, String)> = pods
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().expect("pod name").to_owned();
            let container = p["spec"]["containers"][0]["name"]
                .as_str()
                .expect("container")
                .to_owned();
            let stream = format!("presto/{name}/{container}");
            (name, container, stream)
        })
        .collect();
    for (_, _, stream) in &streams {
        eventually(Duration::from_secs(20), stream, || async {
            let m = moto.log_messages(group, stream).await;
            m.iter()
                .any(|l| l.ends_with("======== SERVER STARTED ========"))
                .then_some(())
        })
        .await;
    }

    // Followed live; then written while the agent is down; then after it is back.
    let (pod, container, stream) = &streams[0];
    env.kube
        .append_pod_log(NAMESPACE, pod, container, "marker one: live");
    let arrived = |marker: &'static str| {
        let moto = &moto;
        async move {
            eventually(Duration::from_secs(20), marker, || async {
                let m = moto.log_messages(group, stream).await;
                m.iter().any(|l| l == marker).then_some(())
            })
            .await
        }
    };
    arrived("marker one: live").await;
    agent.terminate();
    agent.wait_exit(Duration::from_secs(15)).await;
    env.kube
        .append_pod_log(NAMESPACE, pod, container, "marker two: while down");
    agent = start_agent(&env);
    env.fx.connected(&env.cp.api(), 15).await;
    arrived("marker two: while down").await;
    env.kube
        .append_pod_log(NAMESPACE, pod, container, "marker three: after restart");
    arrived("marker three: after restart").await;

    let messages = moto.log_messages(group, stream).await;
    let started = messages
        .iter()
        .filter(|l| l.ends_with("SERVER STARTED ========"))
        .count();
    assert_eq!(started, 1, "no line twice: {messages:#?}");
    assert_eq!(
        messages.len(),
        6,
        "three startup lines and three markers: {messages:#?}"
    );
    assert!(
        messages[0].contains("\tINFO\t"),
        "lines as Presto wrote them, without the API's timestamp prefix: {messages:#?}"
    );
    drop(agent);
}
