//! Issue 5: the dashboard in headless Chromium against the real control plane and agent
//! binaries (Kubernetes and Presto stand-ins in the test process), the viewer role, CSRF,
//! cookie flags, CSP, the audit trail and usage metering.
//!
//! Screenshots of every page land in `target/tmp/dashboard-screenshots/` (the CI keeps
//! them as artefacts).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tether_tests::harness::presto_env::{NAMESPACE, PrestoEnv, glue_catalog};
use tether_tests::harness::webdriver::Browser;
use tether_tests::harness::{
    ControlPlaneOptions, ControlPlaneProc, TenantFixture, eventually, init,
};
use tether_tests::standins::presto::{PrestoOptions, PrestoStandIn, Workload};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

/// Marks the page so a reload is detectable: a reload drops the mark.
async fn mark(b: &Browser) {
    b.execute("window.__tetherMark = 'same page'; return null;")
        .await;
}

async fn still_marked(b: &Browser) -> bool {
    b.execute("return window.__tetherMark || null;").await == "same page"
}

async fn sign_in(b: &Browser, http: &str, token: &str) {
    b.goto(&format!("http://{http}/login")).await;
    b.fill("#token", token).await;
    let submit = b.must("section.signin button[type=submit]").await;
    b.click(&submit).await;
    b.wait_for(Duration::from_secs(10), "signed in", || async {
        b.url().await.contains("/ui/").then_some(())
    })
    .await;
}

/// Clicks `css` and waits until the browser has left the current page.
async fn submit(b: &Browser, css: &str) {
    b.execute("window.__leaving = true; return null;").await;
    let e = b.must(css).await;
    b.click(&e).await;
    b.wait_for(Duration::from_secs(10), "the next page", || async {
        (b.execute("return window.__leaving || null;")
            .await
            .is_null()
            && b.execute("return document.readyState;").await == "complete")
            .then_some(())
    })
    .await;
}

/// A token of `role` for the fixture's tenant, and its id (from the audit log later).
async fn token(env: &PrestoEnv, role: &str) -> String {
    let v = env
        .api()
        .ok_post(
            &format!("/tenants/{}/tokens", env.fx.tenant_id),
            &json!({"role": role}),
        )
        .await;
    v["token"].as_str().expect("token").to_owned()
}

async fn audit(env: &PrestoEnv) -> Vec<Value> {
    let v = env.api().ok_get("/audit-log?limit=1000").await;
    v["entries"].as_array().cloned().unwrap_or_default()
}

/// Acceptance 1 and 4: sign in, create a cluster through the form, watch it become Running
/// without reloading, scale it, see query-log rows appear and a chart with data; every
/// mutating action is in the audit log with the right actor and result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_creates_scales_and_watches_a_cluster_in_the_browser() {
    init();
    let env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    // The cluster's coordinator Service will lead to this Presto stand-in, with traffic.
    let presto = PrestoStandIn::start(PrestoOptions::default())
        .await
        .expect("presto stand-in");
    env.kube
        .register_service_backend(NAMESPACE, "etl", presto.addr());
    let _traffic = presto.start_workload(Workload {
        count: None,
        per_second: 4.0,
        ..Workload::default()
    });
    let operator = token(&env, "operator").await;
    let http = env.cp.http.clone();
    let cp = env.fx.cp_id.clone();
    let b = Browser::start().await;

    sign_in(&b, &http, &operator).await;
    b.screenshot(&shots().join("01-compute-planes.png")).await;
    assert!(
        b.text_of("#compute-planes").await.contains("connected"),
        "the agent shows as connected"
    );

    // Create a cluster through the form.
    b.goto(&format!("http://{http}/ui/cp/{cp}/clusters")).await;
    b.fill("#cluster-name", "etl").await;
    b.fill("#cluster-workers", "2").await;
    let lake = b
        .must("#create-cluster input[name=catalogs][value=lake]")
        .await;
    b.click(&lake).await;
    b.screenshot(&shots().join("02-create-cluster.png")).await;
    submit(&b, "#create-cluster-submit").await;
    assert!(
        b.url()
            .await
            .ends_with(&format!("/ui/cp/{cp}/clusters/etl"))
    );

    // Running, live, without a reload.
    mark(&b).await;
    b.wait_for(Duration::from_secs(30), "phase Running", || async {
        (b.text_of("#phase").await == "Running" && b.text_of("#ready-workers").await == "2 / 2")
            .then_some(())
    })
    .await;
    assert!(still_marked(&b).await, "the page updated itself, no reload");
    b.screenshot(&shots().join("03-cluster-running.png")).await;

    // Scale to 3; the page follows the agent's report live.
    b.fill("#scale-workers", "3").await;
    submit(&b, "#scale-submit").await;
    mark(&b).await;
    b.wait_for(Duration::from_secs(30), "3 workers ready", || async {
        (b.text_of("#ready-workers").await == "3 / 3"
            && b.text_of("#observed-generation").await == b.text_of("#generation").await)
            .then_some(())
    })
    .await;
    assert!(still_marked(&b).await, "no reload while scaling");
    b.screenshot(&shots().join("04-cluster-scaled.png")).await;

    // Query-log rows appear (live).
    b.goto(&format!("http://{http}/ui/cp/{cp}/queries")).await;
    mark(&b).await;
    let rows = b
        .wait_for(Duration::from_secs(40), "query-log rows", || async {
            let rows = b.find_all("#queries tbody tr").await;
            (rows.len() >= 3).then_some(rows)
        })
        .await;
    assert!(still_marked(&b).await, "rows arrived without a reload");
    let first = b.text(&rows[0]).await;
    assert!(first.contains("etl"), "{first}");
    b.screenshot(&shots().join("05-query-log.png")).await;

    // A chart with data.
    b.goto(&format!("http://{http}/ui/cp/{cp}/metrics?range=15m"))
        .await;
    b.wait_for(Duration::from_secs(30), "a chart with data", || async {
        let n = b
            .execute(
                "var m = 0; document.querySelectorAll('svg[data-points]').forEach(function (s) { \
                 m = Math.max(m, parseInt(s.getAttribute('data-points'), 10)); }); return m;",
            )
            .await;
        (n.as_i64().unwrap_or(0) >= 2).then_some(())
    })
    .await;
    assert!(b.find("svg polyline.series").await.is_some());
    b.screenshot(&shots().join("06-metrics.png")).await;

    // Overview and audit pages render for the record.
    b.goto(&format!("http://{http}/ui/cp/{cp}")).await;
    b.screenshot(&shots().join("07-overview.png")).await;

    // Acceptance 4: every mutating action of this test, with actor and result.
    let entries = audit(&env).await;
    let operator_id = entries
        .iter()
        .find(|e| e["action"] == "sign-in" && e["role"] == "operator")
        .and_then(|e| e["token_id"].as_str())
        .expect("operator sign-in audited")
        .to_owned();
    let mine: Vec<&Value> = entries
        .iter()
        .filter(|e| e["token_id"] == operator_id.as_str())
        .collect();
    let puts: Vec<&&Value> = mine
        .iter()
        .filter(|e| e["action"] == "PUT /compute-planes/{cp}/clusters/{name}")
        .collect();
    assert_eq!(puts.len(), 2, "create and scale: {mine:#?}");
    for e in &puts {
        assert_eq!(e["result"], "ok");
        assert_eq!(e["via"], "dashboard");
        assert_eq!(e["role"], "operator");
        assert_eq!(e["tenant_id"], env.fx.tenant_id.as_str());
        assert_eq!(e["target"], format!("/compute-planes/{cp}/clusters/etl"));
        assert_eq!(e["client_addr"], "127.0.0.1");
    }
    drop(b);
}

/// A plain HTTP client of the dashboard that keeps its cookies by hand.
struct Client {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Client {
    fn new(addr: &str) -> Self {
        Client {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: format!("http://{addr}"),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) -> Vec<String> {
        let raw: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &raw {
            if let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('=')) {
                self.cookies.retain(|(n, _)| n != k);
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        raw
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&resp);
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, resp.text().await.unwrap_or_default(), headers)
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Vec<String>) {
        self.post_from(path, form, None).await
    }

    /// A form post, optionally with an `Origin` header.
    async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, Vec<String>) {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let resp = req
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("POST");
        let set = self.keep(&resp);
        (resp.status(), set)
    }
}

/// The value of the first `name="csrf"` hidden input of a page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF field on the page")
        .to_owned()
}

/// Acceptance 2 and 4: a viewer sees no mutating control, and forged form posts are refused
/// (403) and audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_sees_no_controls_and_forged_posts_are_refused_and_audited() {
    init();
    let env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster(
        "etl",
        tether_tests::harness::presto_env::cluster_spec(1, &["lake"]),
    )
    .await;
    let viewer = token(&env, "viewer").await;
    let http = env.cp.http.clone();
    let cp = env.fx.cp_id.clone();

    let b = Browser::start().await;
    sign_in(&b, &http, &viewer).await;
    for (page, shot) in [
        (format!("/ui/tenants/{}", env.fx.tenant_id), "v1-tenant.png"),
        (format!("/ui/cp/{cp}"), "v2-overview.png"),
        (format!("/ui/cp/{cp}/clusters"), "v3-clusters.png"),
        (format!("/ui/cp/{cp}/clusters/etl"), "v4-cluster.png"),
        (format!("/ui/cp/{cp}/catalogs"), "v5-catalogs.png"),
    ] {
        b.goto(&format!("http://{http}{page}")).await;
        b.screenshot(&shots().join(shot)).await;
        // The only form a viewer gets is signing out (and GET filters).
        let posts = b.find_all("form[method=post]").await;
        assert_eq!(posts.len(), 1, "{page}: only the sign-out form");
        assert!(b.find("form[action='/logout']").await.is_some());
        assert!(b.find("#delete-cluster").await.is_none(), "{page}");
    }
    assert_eq!(b.text_of("span.role").await, "viewer");
    drop(b);

    // Forged posts with the viewer's own valid session and CSRF token: the server refuses.
    let mut c = Client::new(&http);
    let (_, login, _) = c.get("/login").await;
    let (s, _) = c
        .post("/login", &[("csrf", &csrf_of(&login)), ("token", &viewer)])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, page, _) = c.get(&format!("/ui/cp/{cp}/clusters")).await;
    let csrf = csrf_of(&page);
    let forged = [
        (
            format!("/ui/cp/{cp}/clusters"),
            vec![
                ("csrf", csrf.as_str()),
                ("name", "sneaky"),
                ("workers", "9"),
                ("presto_version", "0.293"),
            ],
        ),
        (
            format!("/ui/cp/{cp}/clusters/etl/delete"),
            vec![("csrf", csrf.as_str()), ("confirm", "etl")],
        ),
        (
            format!("/ui/cp/{cp}/enrollment-token"),
            vec![("csrf", csrf.as_str())],
        ),
    ];
    for (path, form) in &forged {
        let (s, _) = c.post(path, form).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _) = env
        .api()
        .get(&format!("/compute-planes/{cp}/clusters/sneaky"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was created");
    assert_ne!(env.cluster("etl").await["status"]["phase"], "Deleting");

    let entries = audit(&env).await;
    let viewer_id = entries
        .iter()
        .find(|e| e["action"] == "sign-in" && e["role"] == "viewer")
        .and_then(|e| e["token_id"].as_str())
        .expect("viewer sign-in audited")
        .to_owned();
    let denied: Vec<&Value> = entries
        .iter()
        .filter(|e| e["token_id"] == viewer_id.as_str() && e["result"] == "denied")
        .collect();
    let actions: Vec<&str> = denied.iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"PUT /compute-planes/{cp}/clusters/{name}")
            && actions.contains(&"DELETE /compute-planes/{cp}/clusters/{name}")
            && actions.contains(&"POST /compute-planes/{cp}/enrollment-tokens"),
        "{denied:#?}"
    );
    assert!(
        denied
            .iter()
            .all(|e| e["status"] == 403 && e["role"] == "viewer")
    );
}

/// Acceptance 3: no CSRF token, no post; the cookie's flags; the CSP on every response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_cookie_flags_and_csp() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let mut c = Client::new(&cp.http);

    // Sign-in needs the double-submit token too.
    let (s, _) = c.post("/login", &[("token", &fx.admin_token)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, login, headers) = c.get("/login").await;
    assert_eq!(s, StatusCode::OK);
    let csp = headers
        .get(CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!login.contains("<script>"), "no inline script");
    let (s, set) = c
        .post(
            "/login",
            &[("csrf", &csrf_of(&login)), ("token", &fx.admin_token)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let session = set
        .iter()
        .find(|c| c.starts_with("tether_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://{}/login", cp.http))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("GET /login");
    let login_cookie = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");

    // A form post without (or with a wrong) CSRF token is refused and changes nothing.
    let path = format!("/ui/tenants/{}/compute-planes", fx.tenant_id);
    let (s, _) = c
        .post(&path, &[("name", "sneaky"), ("region", "us-east-1")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = c
        .post(
            &path,
            &[
                ("csrf", "0000"),
                ("name", "sneaky"),
                ("region", "us-east-1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let planes = api
        .ok_get(&format!("/tenants/{}/compute-planes", fx.tenant_id))
        .await;
    assert!(
        !planes.to_string().contains("sneaky"),
        "nothing created: {planes}"
    );
    // With the token it works (so the refusals above were about the token).
    let (_, page, headers) = c.get(&format!("/ui/tenants/{}", fx.tenant_id)).await;
    assert!(headers.get(CONTENT_SECURITY_POLICY).is_some());
    // A valid token from another site (a foreign Origin) is refused too.
    let (s, _) = c
        .post_from(
            &path,
            &[
                ("csrf", &csrf_of(&page)),
                ("name", "sneaky"),
                ("region", "us-east-1"),
            ],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "foreign Origin");
    // Another tenant's pages do not exist for this session.
    let other = TenantFixture::create(&api, "globex").await;
    for p in [
        format!("/ui/cp/{}", other.cp_id),
        format!("/ui/cp/{}/clusters", other.cp_id),
        format!("/ui/tenants/{}", other.tenant_id),
    ] {
        let (s, body, _) = c.get(&p).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
        assert!(
            !body.contains(&other.cp_id) || p.contains(&other.cp_id),
            "{p}"
        );
    }
    let (s, _) = c
        .post(
            &path,
            &[
                ("csrf", &csrf_of(&page)),
                ("name", "second"),
                ("region", "us-east-1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // API responses carry the CSP too.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{}/api/v1/tenants", cp.http))
        .bearer_auth(&fx.admin_token)
        .send()
        .await
        .expect("GET");
    assert!(resp.headers().get(CONTENT_SECURITY_POLICY).is_some());
    // The refused posts are audited as denied.
    let log = api.ok_get("/audit-log?result=denied").await;
    let n = log["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["via"] == "dashboard").count());
    assert!(n >= 3, "{log}");
}

/// Acceptance 5: a cluster with 3 workers (and its coordinator) reported ready for an hour
/// is billed about 4 node-hours; what is computed is the reported pods, not the spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_reported_ready_pods_over_a_simulated_hour() {
    use tether_proto::v1::{MetricSample, TelemetryBatch, TelemetryRecord, telemetry_record};
    use tether_tests::harness::grpc::{enroll_raw, open_session, raw_client};

    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let url = format!("https://{}", cp.grpc);
    let (cert, key) = enroll_raw(&url, &cp.ca_file(), &token).await;
    let mut client = raw_client(&url, &cp.ca_file(), Some((&cert, &key)))
        .await
        .expect("mTLS");
    let (_session, _inbound) = open_session(&mut client).await.expect("session");

    // One sample of each series every 15 s for one hour, two hours ago: 3 ready workers
    // and a ready coordinator. The spec (there is none) plays no part.
    let start = tether_shared::timestamps::now_unix_ms() / 3_600_000 * 3_600_000 - 2 * 3_600_000;
    let mut records = Vec::new();
    let mut seq = 0;
    for i in 0..=240 {
        let ts = start + i * 15_000;
        for (name, value) in [("ready_workers", 3.0), ("coordinator_ready", 1.0)] {
            seq += 1;
            records.push(TelemetryRecord {
                seq,
                kind: Some(telemetry_record::Kind::Metric(MetricSample {
                    cluster: "etl".into(),
                    name: name.into(),
                    value,
                    timestamp_unix_ms: ts,
                })),
            });
        }
    }
    let batches: Vec<TelemetryBatch> = records
        .chunks(100)
        .map(|c| TelemetryBatch {
            records: c.to_vec(),
            dropped_records_total: 0,
            dropped_by_class: None,
        })
        .collect();
    let mut acks = client
        .telemetry(tokio_stream::iter(batches))
        .await
        .expect("telemetry stream")
        .into_inner();
    while let Ok(Some(ack)) = acks.message().await {
        if ack.through_seq >= seq {
            break;
        }
    }
    let since = tether_shared::timestamps::rfc3339_from_ms(start - 3_600_000).expect("time");
    let until = tether_shared::timestamps::rfc3339_from_ms(start + 3 * 3_600_000).expect("time");
    let usage = eventually(Duration::from_secs(10), "usage", || async {
        let u = api
            .ok_get(&format!(
                "/tenants/{}/usage?since={since}&until={until}",
                fx.tenant_id
            ))
            .await;
        (u["total_node_hours"].as_f64()? > 0.0).then_some(u)
    })
    .await;
    let total = usage["total_node_hours"].as_f64().expect("total");
    assert!((total - 4.0).abs() < 0.05, "about 4 node-hours: {usage}");
    let hourly = usage["hourly"].as_array().expect("hourly");
    assert_eq!(hourly.len(), 1, "one whole hour: {usage}");
    assert_eq!(hourly[0]["cluster"], "etl");
    assert_eq!(usage["monthly"].as_array().map(Vec::len), Some(1));

    // Another tenant cannot read it.
    let other = TenantFixture::create(&api, "globex").await;
    let (s, _) = api
        .as_token(&other.admin_token)
        .get(&format!("/tenants/{}/usage", fx.tenant_id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Chooses `value` in the `<select>` at `css` as a user would (the change event fires).
async fn choose(b: &Browser, css: &str, value: &str) {
    let option = b.must(&format!("{css} option[value={value}]")).await;
    b.click(&option).await;
}

/// The text of the catalogs table's row for `name`, if any.
async fn catalog_row(b: &Browser, name: &str) -> Option<String> {
    let row = b
        .find(&format!("#catalogs tr[data-catalog={name}]"))
        .await?;
    Some(b.text(&row).await)
}

/// The catalog form asks per source for what it needs, refuses a bad field by name while
/// keeping what was typed, shows each catalog's reachability from the VPC as the agent
/// reports it (live), and catalogs and clusters are deleted from the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_by_source_with_reachability_and_deletes_in_the_browser() {
    init();
    let env = PrestoEnv::start().await;
    // A database that answers, and a port where nothing listens.
    let db = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let db_port = db.local_addr().expect("addr").port().to_string();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port().to_string()
    };
    let _accept = tokio::spawn(async move {
        while let Ok((s, _)) = db.accept().await {
            drop(s);
        }
    });
    let operator = token(&env, "operator").await;
    let http = env.cp.http.clone();
    let cp = env.fx.cp_id.clone();
    let b = Browser::start().await;
    sign_in(&b, &http, &operator).await;
    b.goto(&format!("http://{http}/ui/cp/{cp}/catalogs")).await;

    // Only the chosen source's fields are shown.
    choose(&b, "#catalog-kind", "mysql").await;
    assert_eq!(
        b.execute("return document.querySelector('fieldset[data-kind=glue]').hidden;")
            .await,
        true
    );
    b.fill("#catalog-name", "orders").await;
    b.fill("#catalog-host", "127.0.0.1").await;
    b.fill("#catalog-port", &db_port).await;
    b.fill("#catalog-secret", "k8s:orders-db-credentials").await;
    b.screenshot(&shots().join("10-catalog-form.png")).await;
    submit(&b, "#create-catalog-submit").await;
    assert!(b.text_of(".flash").await.contains("Catalog orders saved."));
    let row = catalog_row(&b, "orders").await.expect("orders row");
    assert!(
        row.contains(&format!("jdbc:mysql://127.0.0.1:{db_port}")),
        "{row}"
    );

    // A bad port: refused naming the field, what was typed kept, nothing saved.
    choose(&b, "#catalog-kind", "postgresql").await;
    b.fill("#catalog-name", "crm").await;
    b.fill("#catalog-host", "127.0.0.1").await;
    b.fill("#catalog-port", "99999").await;
    b.fill("#catalog-database", "crm").await;
    b.fill("#catalog-secret", "k8s:orders-db-credentials").await;
    submit(&b, "#create-catalog-submit").await;
    let flash = b.text_of(".flash").await;
    assert!(flash.starts_with("Port:"), "{flash}");
    assert_eq!(
        b.execute("return document.getElementById('catalog-host').value;")
            .await,
        "127.0.0.1"
    );
    let (s, _) = env
        .api()
        .get(&format!("/compute-planes/{cp}/catalogs/crm"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The API's own validation still applies behind the form (a Glue catalog in a region
    // the form accepts, then a PostgreSQL one on the closed port).
    b.fill("#catalog-port", &closed).await;
    submit(&b, "#create-catalog-submit").await;
    assert!(b.text_of(".flash").await.contains("Catalog crm saved."));
    choose(&b, "#catalog-kind", "glue").await;
    b.fill("#catalog-name", "lake").await;
    b.fill("#catalog-glue-region", "us-east-1").await;
    submit(&b, "#create-catalog-submit").await;
    assert!(
        catalog_row(&b, "lake")
            .await
            .is_some_and(|r| r.contains("Glue, us-east-1"))
    );
    assert!(
        catalog_row(&b, "orders")
            .await
            .is_some_and(|r| r.contains("checked once a cluster uses it"))
    );

    // Reachability as the agent reports it, arriving without a reload.
    env.put_cluster(
        "etl",
        tether_tests::harness::presto_env::cluster_spec(1, &["orders", "crm", "lake"]),
    )
    .await;
    mark(&b).await;
    b.wait_for(Duration::from_secs(40), "reachability shown", || async {
        let orders = catalog_row(&b, "orders").await?;
        let crm = catalog_row(&b, "crm").await?;
        (orders.contains("reachable")
            && !orders.contains("unreachable")
            && crm.contains("unreachable")
            && crm.contains(&closed))
        .then_some(())
    })
    .await;
    assert!(still_marked(&b).await, "updated live");
    b.screenshot(&shots().join("11-catalog-reachability.png"))
        .await;

    // Delete the cluster from its page, with the name typed again.
    env.running("etl", 1, 30).await;
    b.goto(&format!("http://{http}/ui/cp/{cp}/clusters/etl"))
        .await;
    submit(&b, "#delete-cluster").await;
    b.fill("#confirm-name", "etl").await;
    submit(&b, "#confirm-delete-submit").await;
    assert!(b.text_of(".flash").await.contains("Deleting cluster etl."));
    eventually(Duration::from_secs(30), "the cluster gone", || async {
        (env.api()
            .get(&format!("/compute-planes/{cp}/clusters/etl"))
            .await
            .0
            == StatusCode::NOT_FOUND)
            .then_some(())
    })
    .await;
    assert!(env.object("apps/v1", "deployments", "etl-worker").is_none());

    // And a catalog from the list.
    b.goto(&format!("http://{http}/ui/cp/{cp}/catalogs")).await;
    submit(&b, "#catalogs tr[data-catalog=lake] button").await;
    assert!(b.text_of(".flash").await.contains("Catalog lake deleted."));
    assert!(catalog_row(&b, "lake").await.is_none());
    let puts = audit(&env)
        .await
        .into_iter()
        .filter(|e| {
            e["action"] == "PUT /compute-planes/{cp}/catalogs/{name}" && e["via"] == "dashboard"
        })
        .count();
    assert_eq!(
        puts, 3,
        "the three saves, audited (the refused one never reached the API)"
    );
    drop(b);
}
