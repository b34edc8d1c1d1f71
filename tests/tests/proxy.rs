//! Acceptance 7: through tinyproxy as the only egress (HTTPS_PROXY) the agent connects;
//! a proxy that refuses the port gets a clear error naming the proxy, and retries.

use std::time::Duration;

use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, Tinyproxy,
    eventually, init,
};

fn grpc_port(cp: &ControlPlaneProc) -> u16 {
    cp.grpc
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("grpc port")
}

#[tokio::test]
async fn agent_connects_through_an_http_connect_proxy() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let proxy = Tinyproxy::start(&[grpc_port(&cp)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let _agent = AgentProc::start(AgentOptions {
        control_plane: cp.grpc_url(),
        ca_file: cp.ca_file(),
        state_dir: dir.path().join("agent"),
        enrollment_token: Some(token),
        env: vec![("HTTPS_PROXY".into(), proxy.url.clone())],
        ..AgentOptions::default()
    });
    eventually(
        Duration::from_secs(10),
        "connected through the proxy",
        || async { (fx.get(&api).await["agent"]["connected"] == true).then_some(()) },
    )
    .await;
    // Enrollment and the session each went through a CONNECT tunnel.
    let tunnels = proxy.log().matches(&format!("CONNECT {}", cp.grpc)).count();
    assert!(
        tunnels >= 2,
        "expected CONNECTs in the proxy log:\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn a_proxy_that_refuses_the_port_is_named_and_retried() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    // CONNECT allowed only to some other port.
    let proxy = Tinyproxy::start(&[grpc_port(&cp).wrapping_add(1).max(1)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(AgentOptions {
        control_plane: cp.grpc_url(),
        ca_file: cp.ca_file(),
        state_dir: dir.path().join("agent"),
        enrollment_token: Some(token),
        env: vec![("HTTPS_PROXY".into(), proxy.url.clone())],
        extra_args: vec![
            "--backoff-initial".into(),
            "200ms".into(),
            "--backoff-max".into(),
            "1s".into(),
        ],
        ..AgentOptions::default()
    });
    let expected = format!("proxy {} refused CONNECT to {}", proxy.url, cp.grpc);
    eventually(
        Duration::from_secs(15),
        "repeated clear proxy errors",
        || async { (agent.log().matches(&expected).count() >= 2).then_some(()) },
    )
    .await;
    assert!(
        agent.exited().is_none(),
        "the agent keeps retrying instead of exiting"
    );
    assert_eq!(fx.get(&api).await["agent"]["connected"], false);

    // NO_PROXY for the control plane's host bypasses the proxy.
    let d2 = tempfile::tempdir().expect("tempdir");
    let token2 = fx.enrollment_token(&api, 600).await;
    let _direct = AgentProc::start(AgentOptions {
        control_plane: cp.grpc_url(),
        ca_file: cp.ca_file(),
        state_dir: d2.path().join("agent"),
        enrollment_token: Some(token2),
        env: vec![
            ("HTTPS_PROXY".into(), proxy.url.clone()),
            ("NO_PROXY".into(), "127.0.0.1".into()),
        ],
        ..AgentOptions::default()
    });
    eventually(
        Duration::from_secs(10),
        "connected directly with NO_PROXY",
        || async { (fx.get(&api).await["agent"]["connected"] == true).then_some(()) },
    )
    .await;
}

/// Wrong CA and unreachable endpoint: one clear line each, and retries (not exits).
#[tokio::test]
async fn installer_mistakes_get_clear_errors() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;

    // The CA of some other control plane.
    let other = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wrong_ca = AgentProc::start(AgentOptions {
        control_plane: cp.grpc_url(),
        ca_file: other.ca_file(),
        state_dir: dir.path().join("agent"),
        enrollment_token: Some(token.clone()),
        ..AgentOptions::default()
    });
    eventually(Duration::from_secs(10), "wrong-CA error", || async {
        wrong_ca
            .log()
            .contains("is not signed by the CA in --ca-file")
            .then_some(())
    })
    .await;
    assert!(wrong_ca.exited().is_none());

    // Nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let d2 = tempfile::tempdir().expect("tempdir");
    let unreachable = AgentProc::start(AgentOptions {
        control_plane: format!("https://{closed}"),
        ca_file: cp.ca_file(),
        state_dir: d2.path().join("agent"),
        enrollment_token: Some(token.clone()),
        ..AgentOptions::default()
    });
    eventually(Duration::from_secs(10), "unreachable error", || async {
        unreachable
            .log()
            .contains(&format!("cannot reach control plane at {closed}"))
            .then_some(())
    })
    .await;

    // Plaintext URLs are refused outright.
    let d3 = tempfile::tempdir().expect("tempdir");
    let mut plain = AgentProc::start(AgentOptions {
        control_plane: format!("http://{}", cp.grpc),
        ca_file: cp.ca_file(),
        state_dir: d3.path().join("agent"),
        enrollment_token: Some(token),
        ..AgentOptions::default()
    });
    assert_ne!(
        plain.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    assert!(
        plain.log().contains("use https://HOST:PORT"),
        "{}",
        plain.log()
    );
    // None of them used the token up: it still enrolls.
    assert_eq!(
        fx.get(&api).await["agent"]["certificate_serial"],
        serde_json::Value::Null
    );
}
