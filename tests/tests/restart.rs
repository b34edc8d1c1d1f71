//! Acceptance 5: the control plane goes away and comes back; the agent backs off while it
//! is gone and reconnects by itself.

use std::time::Duration;

use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, eventually, init,
};

/// A control plane on `data/cp` with tenant `acme` and a connected agent.
async fn connected_setup(
    data: &tempfile::TempDir,
    agent_dir: &tempfile::TempDir,
    agent_args: &[&str],
) -> (
    ControlPlaneProc,
    TenantFixture,
    AgentProc,
    serde_json::Value,
) {
    let cp = restart_on(data, "127.0.0.1:0", "127.0.0.1:0").await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let opts = AgentOptions::for_control_plane(&cp, agent_dir.path().join("agent"), Some(token));
    let agent = AgentProc::start(opts.with_args(agent_args));
    let shown = fx.connected(&api, 5).await;
    (cp, fx, agent, shown)
}

/// A control plane on `data/cp` (the same CA, token and database across restarts).
async fn restart_on(data: &tempfile::TempDir, http: &str, grpc: &str) -> ControlPlaneProc {
    ControlPlaneProc::start(ControlPlaneOptions {
        data_dir: Some(data.path().join("cp")),
        http_listen: http.to_owned(),
        grpc_listen: grpc.to_owned(),
        ..ControlPlaneOptions::default()
    })
    .await
}

#[tokio::test]
async fn agent_backs_off_while_the_control_plane_is_down_and_reconnects() {
    init();
    let data = tempfile::tempdir().expect("tempdir");
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let backoff = ["--backoff-initial", "1s", "--backoff-max", "5s"];
    let (mut cp, fx, agent, before) = connected_setup(&data, &agent_dir, &backoff).await;

    // Crash (no goodbye) and stay down for 10 s.
    let (http, grpc) = (cp.http.clone(), cp.grpc.clone());
    cp.kill();
    let dials_at_kill = agent.count("dialing control plane");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = agent.count("dialing control plane") - dials_at_kill;
    assert!(
        (2..=15).contains(&attempts),
        "expected a bounded, backing-off number of attempts in 10 s, got {attempts}:\n{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("cannot reach control plane at 127.0.0.1"),
        "clear error: {}",
        agent.log()
    );

    // Back on the same addresses and data dir: the agent returns by itself.
    let cp2 = restart_on(&data, &http, &grpc).await;
    let api2 = cp2.api();
    let after = eventually(
        Duration::from_secs(15),
        "reconnected after restart",
        || async {
            let v = fx.get(&api2).await;
            (v["agent"]["connected"] == true).then_some(v)
        },
    )
    .await;
    assert_ne!(after["agent"]["session_id"], before["agent"]["session_id"]);
    assert_eq!(
        after["agent"]["certificate_serial"],
        before["agent"]["certificate_serial"]
    );
}

/// A graceful stop says Goodbye with a retry_after; the agent honours it and comes back.
#[tokio::test]
async fn graceful_restart_sends_goodbye_with_retry_after() {
    init();
    let data = tempfile::tempdir().expect("tempdir");
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let (mut cp, fx, mut agent, _) = connected_setup(&data, &agent_dir, &[]).await;
    let (http, grpc) = (cp.http.clone(), cp.grpc.clone());
    let status = cp.terminate().expect("exit status");
    assert!(
        status.success(),
        "SIGTERM is a clean stop: {status:?}\n{}",
        cp.log()
    );
    assert!(cp.log().contains("shutting down"));
    eventually(Duration::from_secs(5), "agent got goodbye", || async {
        (agent.count("control plane ended the session") == 1).then_some(())
    })
    .await;
    assert!(
        agent.log().contains("draining") && agent.log().contains("retry_after_ms"),
        "{}",
        agent.log()
    );

    let cp2 = restart_on(&data, &http, &grpc).await;
    let api2 = cp2.api();
    fx.connected(&api2, 20).await;
    // The agent waited at least Goodbye.retry_after before dialing again.
    let events = agent.events();
    let bye = events
        .iter()
        .find(|e| e["fields"]["message"] == "control plane ended the session")
        .expect("goodbye event");
    let retry_after = bye["fields"]["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    let redial = events
        .iter()
        .filter(|e| e["fields"]["message"] == "dialing control plane")
        .map(ts_ms)
        .find(|t| *t > ts_ms(bye))
        .expect("dialed again");
    assert!(
        redial - ts_ms(bye) + 5 >= retry_after as i64,
        "redialed {} ms after a goodbye asking for {retry_after} ms",
        redial - ts_ms(bye)
    );

    // SIGTERM to the agent: it says goodbye and exits 0; the API shows it disconnected.
    agent.terminate();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.code(),
        Some(0),
        "{}",
        agent.log()
    );
    eventually(
        Duration::from_secs(5),
        "disconnected after agent stop",
        || async { (fx.get(&api2).await["agent"]["connected"] == false).then_some(()) },
    )
    .await;
    assert!(cp2.log().contains("agent said goodbye"), "{}", cp2.log());
}

fn ts_ms(event: &serde_json::Value) -> i64 {
    let ts = event["timestamp"].as_str().expect("timestamp");
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
