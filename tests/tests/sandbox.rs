//! The README's first command: `tether-sandbox` brings up a control plane with a demo
//! tenant and a connected agent, tells the newcomer where to look, and stops on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tether_tests::harness::{Api, bin_path, init};

/// Kills the sandbox if the test fails before stopping it.
struct Sandbox(Option<std::process::Child>);

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test]
async fn sandbox_starts_a_connected_demo_and_stops_on_ctrl_c() {
    init();
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new(bin_path("tether-sandbox"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--kube-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sandbox");
    let mut sandbox = Sandbox(Some(child));
    let stdout = sandbox
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Ctrl-C stops everything");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("banner in time")
        .expect("reader");
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| panic!("{name} missing from banner: {lines:#?}"))
    };
    let api_url = field("REST API");
    let dashboard = field("Dashboard");
    let login = reqwest::get(&dashboard).await.expect("dashboard answers");
    assert!(login.url().path().ends_with("/login"), "{}", login.url());
    assert!(login.text().await.unwrap_or_default().contains("Sign in"));
    // Single sign-on for the demo tenant through the demo provider (Node is on this
    // machine and scripts/test installs the package).
    let sso = field("SSO (demo)");
    assert!(sso.ends_with("/ui/login/demo"), "{lines:#?}");
    let base = dashboard.trim_end_matches('/').to_owned();
    let mut web = tether_tests::harness::web::WebClient::new();
    let back = tether_tests::harness::oidc::sign_in_through(
        &mut web,
        &format!("{base}/ui/login/demo"),
        "alice",
        &format!("{base}/ui/oidc/callback/demo"),
    )
    .await;
    assert_eq!(web.get(&back).await.status, reqwest::StatusCode::OK);
    let me = web.get(&format!("{base}/ui/me")).await;
    assert!(
        me.body.contains("alice@demo.example via oidc"),
        "{}",
        me.body
    );
    let token = field("admin token");
    let cp_id = field("compute plane");
    assert!(lines.iter().any(|l| l.contains("(agent connected)")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Presto cluster  demo  (Running")),
        "{lines:#?}"
    );
    let addr = api_url
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1");
    let api = Api::new(addr, &token);
    let cp = api.ok_get(&format!("/compute-planes/{cp_id}")).await;
    assert_eq!(cp["agent"]["connected"], true, "{cp}");
    assert_eq!(cp["name"], "demo");
    let demo = api
        .ok_get(&format!("/compute-planes/{cp_id}/clusters/demo"))
        .await;
    assert_eq!(demo["status"]["phase"], "Running", "{demo}");
    assert_eq!(demo["status"]["ready_workers"], 2);
    // The endpoint the cluster reports answers as Presto (its Service, through the
    // Kubernetes stand-in), and so does the stand-in the banner names.
    let presto_url = lines
        .iter()
        .find(|l| l.contains("(stand-in with simulated queries"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("Presto URL missing from banner: {lines:#?}"))
        .to_owned();
    let answers_as_presto = |url: String| async move {
        let info: serde_json::Value = reqwest::get(format!("{url}/v1/info"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (info["coordinator"] == true).then_some(())
    };
    let endpoint = demo["status"]["endpoint"].as_str().unwrap_or("").to_owned();
    answers_as_presto(endpoint.clone())
        .await
        .unwrap_or_else(|| panic!("the demo endpoint {endpoint} answers as Presto"));
    answers_as_presto(presto_url.clone())
        .await
        .expect("the banner's Presto answers");

    // A cluster a newcomer creates gets a Presto of its own: its endpoint answers, and its
    // queries reach the query log attributed to it.
    let (status, body) = api
        .put(
            &format!("/compute-planes/{cp_id}/clusters/second"),
            &serde_json::json!({"presto_version": "0.293", "workers": {"count": 1}, "catalogs": ["lake"]}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let second = tether_tests::harness::eventually(
        Duration::from_secs(30),
        "cluster second Running",
        || async {
            let c = api
                .ok_get(&format!("/compute-planes/{cp_id}/clusters/second"))
                .await;
            (c["status"]["phase"] == "Running").then_some(c)
        },
    )
    .await;
    let endpoint = second["status"]["endpoint"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert_ne!(endpoint, demo["status"]["endpoint"].as_str().unwrap_or(""));
    tether_tests::harness::eventually(
        Duration::from_secs(20),
        "the second cluster's endpoint answers as Presto",
        || answers_as_presto(endpoint.clone()),
    )
    .await;
    tether_tests::harness::eventually(
        Duration::from_secs(60),
        "a query of the second cluster in the query log",
        || async {
            let page = api
                .ok_get(&format!("/compute-planes/{cp_id}/query-log?limit=1000"))
                .await;
            page["records"]
                .as_array()
                .is_some_and(|r| r.iter().any(|q| q["cluster"] == "second"))
                .then_some(())
        },
    )
    .await;
    // Simulated queries arrive in the query log (redacted), scraped through the proxy.
    let log =
        tether_tests::harness::eventually(Duration::from_secs(30), "sandbox query log", || async {
            let page = api
                .ok_get(&format!("/compute-planes/{cp_id}/query-log"))
                .await;
            (page["records"].as_array().is_some_and(|r| !r.is_empty())).then_some(page)
        })
        .await;
    assert!(
        log["records"][0]["query"]
            .as_str()
            .is_some_and(|q| q.contains('?')),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("admin-token"))
            .expect("token")
            .trim(),
        token
    );

    let mut child = sandbox.0.take().expect("still running");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}
