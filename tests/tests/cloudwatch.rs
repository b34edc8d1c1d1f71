//! Issue 4, acceptance 5 with the real agent binary: its log lines are readable back from
//! CloudWatch Logs (moto_server).

use std::time::Duration;

use tether_tests::harness::moto::Moto;
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
    let mut agent = AgentProc::start(opts);
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
    // A clean stop flushes what is buffered.
    agent.terminate();
    agent.wait_exit(Duration::from_secs(15)).await;
    let after = moto.log_messages("/tether/acme-prod", "agent-test").await;
    assert!(
        after.iter().any(|l| l.contains("agent stopped")),
        "final lines flushed: {after:#?}"
    );
}
