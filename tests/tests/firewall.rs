//! Issue 6, acceptance 4 and 5, for real (root; CI runs as root): the agent in a network
//! namespace whose firewall drops every new inbound connection still enrolls, receives
//! desired state, reports status and ships telemetry, while nothing on the control plane's
//! side can open a connection into it; and in a namespace whose only way out is the
//! corporate proxy (tinyproxy), the agent works with `HTTPS_PROXY` and fails clearly
//! without it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::netns::{NetNs, can_connect};
use tether_tests::harness::presto_env::{FAST_AGENT, cluster_spec, glue_catalog};
use tether_tests::harness::tinyproxy::Tinyproxy;
use tether_tests::harness::{
    AgentOptions, AgentProc, Api, ControlPlaneOptions, ControlPlaneProc, TenantFixture, bin_path,
    eventually, init,
};

/// The stand-ins (Kubernetes API, Presto) inside the namespace; killed on drop.
struct StandIns {
    child: Child,
    kube_port: u16,
}

impl Drop for StandIns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn standins_in(ns: &NetNs, kubeconfig: &std::path::Path, service: &str) -> StandIns {
    let mut child = ns
        .command(&bin_path("tether-standins"))
        .args(["--kube-listen", "0.0.0.0:0", "--presto-service", service])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tether-standins");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("READY"))
        }),
    )
    .await
    .expect("stand-ins ready in time")
    .expect("reader")
    .expect("READY line");
    let kube_port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kube="))
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("kube port");
    StandIns { child, kube_port }
}

/// The control plane in the root namespace, its gRPC port on the namespace's gateway
/// address (and that address in its certificate).
async fn control_plane_for(ns: &NetNs) -> ControlPlaneProc {
    ControlPlaneProc::start(ControlPlaneOptions {
        grpc_listen: format!("{}:0", ns.host_addr),
        extra_args: vec!["--tls-san".into(), ns.host_addr.clone()],
        ..ControlPlaneOptions::default()
    })
    .await
}

async fn connected(api: &Api, fx: &TenantFixture, agent: &AgentProc, secs: u64) {
    let api = api.as_token(&fx.admin_token);
    for _ in 0..secs * 5 {
        let v = api.ok_get(&format!("/compute-planes/{}", fx.cp_id)).await;
        if v["agent"]["connected"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("agent did not connect; its log:\n{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_only_namespace_works_and_admits_no_connection() {
    init();
    let ns = NetNs::create();
    ns.drop_inbound();
    let cp = control_plane_for(&ns).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let admin = api.as_token(&fx.admin_token);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let standins = standins_in(&ns, &kubeconfig, "etl").await;

    let token = fx.enrollment_token(&api, 600).await;
    let agent = AgentProc::start(
        AgentOptions {
            netns: Some(ns.name.clone()),
            ..AgentOptions::for_control_plane(&cp, dir.path().join("agent"), Some(token))
        }
        .with_args(&FAST_AGENT)
        .with_args(&["--metrics-listen", "0.0.0.0:9464"])
        .with_args(&["--kubeconfig", &kubeconfig.display().to_string()]),
    );
    // Enrollment and the session, dialled out through the firewall.
    connected(&api, &fx, &agent, 20).await;
    // Desired state in, status out.
    let cp_path = format!("/compute-planes/{}", fx.cp_id);
    let (s, v) = admin
        .put(&format!("{cp_path}/catalogs/lake"), &glue_catalog())
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = admin
        .put(
            &format!("{cp_path}/clusters/etl"),
            &cluster_spec(1, &["lake"]),
        )
        .await;
    assert!(s.is_success(), "{v}");
    eventually(Duration::from_secs(30), "cluster Running", || async {
        let c = admin.ok_get(&format!("{cp_path}/clusters/etl")).await;
        (c["status"]["phase"] == "Running" && c["observed_generation"] == c["generation"])
            .then_some(())
    })
    .await;
    // Telemetry out: query records and metrics.
    let log: Value = eventually(Duration::from_secs(40), "query records", || async {
        let l = admin.ok_get(&format!("{cp_path}/query-log")).await;
        l["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
            .then_some(l)
    })
    .await;
    assert_eq!(log["records"][0]["cluster"], "etl");
    let m = admin
        .ok_get(&format!("{cp_path}/metrics?name=running_queries"))
        .await;
    assert!(m["series"].as_array().is_some_and(|s| !s.is_empty()), "{m}");

    // Nothing gets in: the agent's metrics port, the Kubernetes API, common ports.
    let listening = [9464, standins.kube_port];
    for port in listening {
        assert!(
            ns.can_connect_from_inside(&ns.ns_addr, port),
            "port {port} listens inside the namespace (so the probe below means something)"
        );
    }
    let probes = listening
        .iter()
        .copied()
        .chain([22, 80, 443, 8080, 8443, 10250]);
    for port in probes {
        assert!(
            !can_connect(&ns.ns_addr, port, Duration::from_millis(1500)).await,
            "a connection into the agent's namespace opened on port {port}"
        );
    }
    // And the session is still up after the probes.
    let v = admin.ok_get(&cp_path).await;
    assert_eq!(v["agent"]["connected"], true);
    drop(agent);
    drop(standins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_only_through_the_proxy() {
    init();
    let ns = NetNs::create();
    ns.drop_inbound();
    let cp = control_plane_for(&ns).await;
    let grpc_port: u16 = cp
        .grpc
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("grpc port");
    let proxy = Tinyproxy::start_on(&ns.host_addr, &ns.ns_addr, &[grpc_port]).await;
    let proxy_port: u16 = proxy
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("proxy port");
    // The namespace may talk to the proxy and nothing else.
    ns.egress_only_to(&ns.host_addr, proxy_port);
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let dir = tempfile::tempdir().expect("tempdir");

    // Without the proxy: a clear error, no connection, retrying.
    let token = fx.enrollment_token(&api, 600).await;
    let direct = AgentProc::start(AgentOptions {
        netns: Some(ns.name.clone()),
        ..AgentOptions::for_control_plane(&cp, dir.path().join("direct"), Some(token.clone()))
    });
    let reason = eventually(
        Duration::from_secs(20),
        "the direct agent's error",
        || async {
            let log = direct.log();
            log.lines()
                .find(|l| l.contains("enrollment failed, will retry"))
                .map(str::to_owned)
        },
    )
    .await;
    assert!(
        reason.contains(&format!("cannot reach control plane at {}", ns.host_addr))
            && reason.contains("HTTPS_PROXY"),
        "the error names the control plane and why: {reason}"
    );
    drop(direct);

    // With HTTPS_PROXY: enrolled and connected, through the proxy.
    let mut opts = AgentOptions {
        netns: Some(ns.name.clone()),
        ..AgentOptions::for_control_plane(&cp, dir.path().join("proxied"), Some(token))
    };
    opts.env = vec![("HTTPS_PROXY".into(), proxy.url.clone())];
    let agent = AgentProc::start(opts);
    connected(&api, &fx, &agent, 20).await;
    let v = api
        .as_token(&fx.admin_token)
        .ok_get(&format!("/compute-planes/{}", fx.cp_id))
        .await;
    assert!(
        v["agent"]["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with(&ns.host_addr)),
        "the control plane sees the proxy, not the agent: {v}"
    );
    assert!(
        proxy.log().contains("CONNECT"),
        "tinyproxy carried the session:\n{}",
        proxy.log()
    );
}
