//! `tether-agent doctor`, end to end with the real binaries: every check passes for a
//! healthy agent (whose running session the probe leaves alone), and the failing step is
//! named, with what to do, for a wrong CA, a dead proxy, a missing Kubernetes permission,
//! a skewed clock (libfaketime), an expired certificate and a revoked one.

use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::presto_env::{FAST_AGENT, PrestoEnv};
use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, doctor, init,
};

/// The checks of a report by name.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

/// The names of the checks that failed.
fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["status"] == "FAIL")
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn opts(env: &PrestoEnv) -> AgentOptions {
    AgentOptions::for_control_plane(&env.cp, env.agent_dir.clone(), None)
        .with_args(&FAST_AGENT)
        .with_args(&["--kubeconfig", &env.kubeconfig.display().to_string()])
}

async fn session_id(env: &PrestoEnv) -> Value {
    env.fx.get(&env.cp.api()).await["agent"]["session_id"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_agent_passes_and_each_broken_step_is_named() {
    init();
    let env = PrestoEnv::start().await;
    let before = session_id(&env).await;

    let (code, report) = doctor(&opts(&env), &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    for name in [
        "ca-file",
        "certificate",
        "dns",
        "tcp",
        "tls",
        "revocation",
        "session",
        "clock",
        "kubernetes.api",
        "kubernetes.auth",
        "kubernetes.permission deployments.apps",
        "kubernetes.permission pods/log",
        "kubernetes.permission secrets tether-presto-ca",
    ] {
        assert_eq!(check(&report, name)["status"], "PASS", "{name}: {report:#}");
    }
    assert_eq!(check(&report, "cloudwatch")["status"], "SKIP");
    assert_eq!(check(&report, "sts")["status"], "SKIP");
    // The probe superseded nothing: the agent's session is the one it had.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(session_id(&env).await, before);
    assert_eq!(env.fx.get(&env.cp.api()).await["agent"]["connected"], true);

    // A CA that did not sign the control plane's certificate.
    let other_ca =
        rcgen::generate_simple_self_signed(vec!["other-ca.example".to_owned()]).expect("a CA");
    let wrong = env.dir().join("wrong-ca.pem");
    std::fs::write(&wrong, other_ca.cert.pem()).expect("write");
    let mut o = opts(&env);
    o.ca_file = wrong;
    let (code, report) = doctor(&o, &[]);
    assert_eq!(code, Some(1));
    let tls = check(&report, "tls");
    assert_eq!(tls["status"], "FAIL", "{report:#}");
    assert!(
        tls["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not signed by the CA in --ca-file")),
        "{tls}"
    );
    assert!(
        tls["fix"].as_str().is_some_and(|f| f.contains("--ca-file")),
        "{tls}"
    );
    assert_eq!(check(&report, "session")["status"], "SKIP");

    // A proxy that is not there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let o = opts(&env).with_env(&[("HTTPS_PROXY", &format!("http://{dead}"))]);
    let (code, report) = doctor(&o, &[]);
    assert_eq!(code, Some(1));
    let proxy = check(&report, "proxy");
    assert_eq!(proxy["status"], "FAIL", "{report:#}");
    assert!(
        proxy["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&dead.to_string())),
        "{proxy}"
    );
    assert!(
        proxy["fix"]
            .as_str()
            .is_some_and(|f| f.contains("HTTPS_PROXY")),
        "{proxy}"
    );
    assert_eq!(check(&report, "dns")["status"], "SKIP");

    // A permission the agent needs, taken away.
    env.kube.rbac().deny("apps", "deployments", "patch");
    let (code, report) = doctor(&opts(&env), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        failed(&report),
        ["kubernetes.permission deployments.apps"],
        "{report:#}"
    );
    let perm = check(&report, "kubernetes.permission deployments.apps");
    assert!(
        perm["detail"]
            .as_str()
            .is_some_and(|d| d.contains("may not patch deployments.apps in namespace tether")),
        "{perm}"
    );
    assert!(
        perm["fix"]
            .as_str()
            .is_some_and(|f| f.contains("tether-agent.yaml")),
        "{perm}"
    );
    env.kube.rbac().allow_all();

    // A clock ten minutes ahead (libfaketime; the monotonic clock is left alone).
    let o = opts(&env).with_env(&[("FAKETIME_DONT_FAKE_MONOTONIC", "1")]);
    let (code, report) = doctor(&o, &["faketime", "-f", "+600s"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(failed(&report), ["clock"], "{report:#}");
    let clock = check(&report, "clock");
    assert!(
        clock["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ahead of the control plane")),
        "{clock}"
    );
    assert!(
        clock["fix"].as_str().is_some_and(|f| f.contains("NTP")),
        "{clock}"
    );

    // Revoked: the session says so.
    env.api()
        .ok_post(
            &format!("/compute-planes/{}/revoke-agent", env.fx.cp_id),
            &serde_json::json!({}),
        )
        .await;
    let (code, report) = doctor(&opts(&env), &[]);
    assert_eq!(code, Some(1));
    let revoked = check(&report, "revocation");
    assert_eq!(revoked["status"], "FAIL", "{report:#}");
    assert!(
        revoked["fix"]
            .as_str()
            .is_some_and(|f| f.contains("enrollment token")),
        "{revoked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_named_with_what_to_do() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        extra_args: vec!["--agent-cert-ttl".into(), "3s".into()],
        ..ControlPlaneOptions::default()
    })
    .await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("agent");
    let mut agent = AgentProc::start(AgentOptions::for_control_plane(
        &cp,
        state.clone(),
        Some(token),
    ));
    fx.connected(&api, 15).await;
    agent.terminate();
    agent.wait_exit(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let (code, report) = doctor(&AgentOptions::for_control_plane(&cp, state, None), &[]);
    assert_eq!(code, Some(1));
    let cert = check(&report, "certificate");
    assert_eq!(cert["status"], "FAIL", "{report:#}");
    assert!(
        cert["detail"]
            .as_str()
            .is_some_and(|d| d.contains("expired at")),
        "{cert}"
    );
    assert!(
        cert["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--enrollment-token")),
        "{cert}"
    );
    assert_eq!(
        check(&report, "tls")["status"],
        "PASS",
        "the server side is fine: {report:#}"
    );
    assert_eq!(check(&report, "kubernetes")["status"], "SKIP");
}
