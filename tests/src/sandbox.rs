//! `tether-sandbox`: the whole system on one machine for a first look. The control plane
//! (SQLite, in DIR) and an enrolled agent run in this process, each through its own
//! library exactly as its binary would run it; the demo tenant and compute plane are made
//! through the REST API like an operator would.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tether_control_plane::state::SessionSettings;
use tether_control_plane::{Config as CpConfig, ControlPlane};

use crate::standins::kube::{KubeOptions, KubeStandIn, Services};
use crate::standins::presto::{PrestoOptions, PrestoStandIn, Workload, WorkloadHandle};

/// Flags of `tether-sandbox`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tether-sandbox",
    version,
    about = "Tether on one machine: control plane, agent, demo tenant"
)]
pub struct Args {
    /// Data dir of the control plane (ca.pem, admin-token, database; agent state under
    /// agent/). A temporary dir when omitted.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// REST API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// gRPC (agent) address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub grpc_listen: SocketAddr,
    /// Kubernetes API stand-in address (`kubectl --server http://ADDR` can look).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub kube_listen: SocketAddr,
}

/// Runs the sandbox until `shutdown` resolves.
pub async fn run(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (_tmp, dir) = match &args.data_dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new()
                .prefix("tether-sandbox-")
                .tempdir()?;
            let d = t.path().to_owned();
            (Some(t), d)
        }
    };
    let cp = ControlPlane::open(CpConfig {
        data_dir: dir.clone(),
        database: None,
        secret_key_file: None,
        fleet: Default::default(),
        // The demo sign-in's callback is registered at the demo provider under this address.
        identity: tether_control_plane::state::IdentitySettings {
            public_url: (args.http_listen.port() != 0)
                .then(|| format!("http://{}", args.http_listen)),
            platform_oidc: None,
            // The demo provider runs on loopback.
            allow_loopback: true,
        },
        public_grpc_endpoint: None,
        sts_endpoint: "https://sts.amazonaws.com".into(),
        tls_sans: vec![],
        session: SessionSettings::default(),
        telemetry_retention: Duration::from_secs(30 * 24 * 3600),
    })
    .await
    .context("starting the control plane")?;
    let http = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (another sandbox running? use --http-listen)",
                args.http_listen
            )
        })?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("binding {} (use --grpc-listen)", args.grpc_listen))?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
    let admin_token = std::fs::read_to_string(cp.admin_token_path())?
        .trim()
        .to_owned();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let cp_task = tokio::spawn(cp.run(http, grpc, wait_stop(stop_rx.clone())));

    let api = Client {
        base: format!("http://{http_addr}/api/v1"),
        token: admin_token.clone(),
        http: reqwest::Client::new(),
    };
    let tenant = find_or_create(&api, "/tenants", "tenants", &json!({"name": "demo"})).await?;
    let tenant_id = tenant["id"].as_str().context("tenant id")?.to_owned();
    let cp_json = find_or_create(
        &api,
        &format!("/tenants/{tenant_id}/compute-planes"),
        "compute_planes",
        &json!({"name": "demo", "region": "us-east-1"}),
    )
    .await?;
    let cp_id = cp_json["id"]
        .as_str()
        .context("compute plane id")?
        .to_owned();

    let kube = KubeStandIn::start(KubeOptions {
        listen: args.kube_listen,
        ..KubeOptions::default()
    })
    .await
    .with_context(|| {
        format!(
            "starting the Kubernetes stand-in on {} (use --kube-listen)",
            args.kube_listen
        )
    })?;
    let kubeconfig = dir.join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig)?;
    // Every cluster's coordinator: a Presto stand-in behind its Service (with a trickle of
    // simulated queries that the agent scrapes through the service proxy), started when
    // the cluster's Service appears, for the demo cluster and any cluster made later. A
    // cluster's endpoint is its Service through the Kubernetes API (the stand-in's service
    // proxy), so each answers as its own Presto.
    let presto = PrestoStandIn::start(PrestoOptions::default()).await?;
    let endpoint = tether_agent::reconcile::EndpointTemplate::parse(&format!(
        "{}/api/v1/namespaces/{{namespace}}/services/{{service}}:{{port}}/proxy",
        kube.url()
    ))
    .map_err(anyhow::Error::msg)?;

    let state_dir = dir.join("agent");
    let enrollment_token = if state_dir
        .join(tether_agent::identity_store::IDENTITY_FILE)
        .exists()
    {
        None
    } else {
        let r = api
            .post(
                &format!("/compute-planes/{cp_id}/enrollment-tokens"),
                &json!({"ttl_seconds": 600}),
            )
            .await?;
        Some(r["token"].as_str().context("enrollment token")?.to_owned())
    };
    let agent_config = tether_agent::Config {
        control_plane: format!("https://{grpc_addr}"),
        ca_file: dir.join("ca.pem"),
        state_dir,
        enrollment_token,
        compute_plane_id: Some(cp_id.clone()),
        retry: tether_agent::retry::RetryPolicy::default(),
        kubeconfig: Some(kubeconfig),
        namespace: "tether".into(),
        resync_interval: Duration::from_secs(10),
        drain_grace: Duration::from_secs(2),
        presto_role_arn: None,
        secrets: tether_agent::secrets::SecretsSettings::default(),
        // The sandbox has no AWS to reach; every check would only say so.
        catalog_checks: tether_agent::reach::CatalogChecks::Off,
        metastore_db: None,
        presto_tls: Default::default(),
        catalog_check_interval: Duration::from_secs(60),
        coordinator_access: tether_agent::collect::CoordinatorAccess::ApiProxy,
        scrape_interval: Duration::from_secs(5),
        spool_max_bytes: 64 << 20,
        metrics_listen: None,
        pod_logs: None,
        endpoint,
        account_binding: None,
        eks: None,
        policy_file: None,
        cloudwatch: None,
    };
    let (agent_stop_tx, agent_stop_rx) = tokio::sync::watch::channel(false);
    let agent_task = tokio::spawn(tether_agent::run(agent_config, wait_stop(agent_stop_rx)));

    let mut connected = false;
    for _ in 0..100 {
        let v = api.get(&format!("/compute-planes/{cp_id}")).await?;
        if v["agent"]["connected"] == true {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !connected {
        bail!("the sandbox agent did not connect within 10 s; see the log above");
    }
    api.put(
        &format!("/compute-planes/{cp_id}/catalogs/lake"),
        &json!({"connector": "hive", "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "us-east-1"}}),
    )
    .await?;
    api.put(
        &format!("/compute-planes/{cp_id}/clusters/demo"),
        &json!({"presto_version": "0.293", "workers": {"count": 2}, "catalogs": ["lake"],
                "coordinator": {"cpu": "2", "memory": "8Gi"}, "worker": {"cpu": "4", "memory": "16Gi"}}),
    )
    .await?;
    let mut phase = String::new();
    for _ in 0..300 {
        let c = api
            .get(&format!("/compute-planes/{cp_id}/clusters/demo"))
            .await?;
        phase = c["status"]["phase"].as_str().unwrap_or("").to_owned();
        if phase == "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_demo_idp, sso_line) = demo_sign_in(&api, &tenant_id, http_addr).await;
    let presto_url = presto.url();
    let (prestos_stop, prestos_stopped) = tokio::sync::watch::channel(false);
    let prestos = tokio::spawn(presto_for_every_cluster(
        kube.services(),
        presto,
        prestos_stopped,
    ));
    println!(
        "\n  Tether sandbox is running.\n\n  \
         Dashboard       http://{http_addr}/  (sign in with the admin token)\n  \
         {sso_line}\n  \
         REST API        http://{http_addr}/api/v1\n  \
         admin token     {admin_token}\n  \
         agent gRPC      https://{grpc_addr}  (CA: {ca})\n  \
         data dir        {dir}\n  \
         demo tenant     {tenant_id}\n  \
         compute plane   {cp_id}  (agent connected)\n  \
         Presto cluster  demo  ({phase}, 2 workers, catalog lake)\n  \
         Kubernetes      {kube_url}  (stand-in)\n  \
         Presto          {presto_url}  (stand-in with simulated queries; every cluster you create gets one)\n\n  \
         Try:\n    curl -s -H 'Authorization: Bearer {admin_token}' http://{http_addr}/api/v1/compute-planes/{cp_id}/clusters/demo\n    \
         kubectl --server {kube_url} get deployments -A\n    \
         curl -s -H 'Authorization: Bearer {admin_token}' http://{http_addr}/api/v1/compute-planes/{cp_id}/query-log\n\n  \
         Ctrl-C stops everything.\n",
        ca = dir.join("ca.pem").display(),
        kube_url = kube.url(),
        dir = dir.display(),
    );

    shutdown.await;
    // Not println!: stdout may be a closed pipe by now, and that must not turn a clean
    // stop into a panic.
    let _ = writeln!(std::io::stdout(), "stopping…");
    // The agent first, so it says goodbye to a control plane that is still there.
    agent_stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), agent_task).await;
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), cp_task).await;
    prestos_stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), prestos).await;
    kube.shutdown().await;
    Ok(())
}

/// The sandbox's Presto coordinators: `demo` for the demo cluster, and a new stand-in for
/// every other cluster's coordinator Service as it appears (stopped when it goes), each
/// with a trickle of simulated queries, until `stop`.
async fn presto_for_every_cluster(
    services: Services,
    demo: PrestoStandIn,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const NS: &str = "tether";
    let traffic = || Workload {
        count: None,
        per_second: 0.5,
        ..Workload::default()
    };
    let mut running: std::collections::BTreeMap<String, (PrestoStandIn, WorkloadHandle)> =
        std::collections::BTreeMap::new();
    services.register(NS, "demo", demo.addr());
    let demo_traffic = demo.start_workload(traffic());
    running.insert("demo".into(), (demo, demo_traffic));
    let coordinator = [
        ("app.kubernetes.io/managed-by", "tether"),
        ("app.kubernetes.io/component", "coordinator"),
    ];
    loop {
        let now: std::collections::BTreeSet<String> =
            services.named(NS, &coordinator).into_iter().collect();
        let new: Vec<String> = now
            .iter()
            .filter(|n| !running.contains_key(*n))
            .cloned()
            .collect();
        for name in &new {
            match PrestoStandIn::start(PrestoOptions::default()).await {
                Ok(p) => {
                    services.register(NS, name, p.addr());
                    let _ = writeln!(
                        std::io::stdout(),
                        "  Presto stand-in for cluster {name}: {}",
                        p.url()
                    );
                    let t = p.start_workload(traffic());
                    running.insert(name.clone(), (p, t));
                }
                Err(e) => tracing::warn!(cluster = name, "cannot start a Presto stand-in: {e}"),
            }
        }
        let gone: Vec<String> = running
            .keys()
            .filter(|n| *n != "demo" && !now.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            services.unregister(NS, &name);
            if let Some((p, t)) = running.remove(&name) {
                drop(t);
                p.shutdown().await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, (p, t)) in running {
        drop(t);
        p.shutdown().await;
    }
}

/// The demo tenant signs in through a demo OpenID provider (the npm `oidc-provider`, its
/// development login: any password) when Node and the package are there; the line for
/// the banner says how to sign in, or how to get it.
async fn demo_sign_in(
    api: &Client,
    tenant_id: &str,
    http_addr: SocketAddr,
) -> (Option<crate::harness::oidc::OidcProvider>, String) {
    let secret = tether_shared::tokens::random_hex(16);
    let accounts = json!({
        "alice": {"email": "alice@demo.example", "groups": ["demo-admins"]},
        "bob": {"email": "bob@demo.example", "groups": ["demo-analysts"]},
    });
    let callback = format!("http://{http_addr}/ui/oidc/callback/demo");
    let idp = match crate::harness::oidc::OidcProvider::try_start(
        "tether-sandbox",
        &secret,
        &callback,
        accounts,
        false,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            return (None, format!("SSO (demo)      not started: {e}"));
        }
    };
    let config = json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "tether-sandbox",
        "client_secret": secret, "role_mapping": {"demo-admins": "admin", "demo-analysts": "viewer"}});
    match api
        .put(&format!("/tenants/{tenant_id}/identity-provider"), &config)
        .await
    {
        Ok(_) => (
            Some(idp),
            format!(
                "SSO (demo)      http://{http_addr}/ui/login/demo  (user alice: admin, bob: viewer; any password)"
            ),
        ),
        Err(e) => (None, format!("SSO (demo)      not configured: {e}")),
    }
}

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// The object named `body.name` in the list at `path`, created if absent (so a sandbox
/// restarted on the same data dir reuses its demo objects).
async fn find_or_create(
    api: &Client,
    path: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let list = api.get(path).await?;
    if let Some(found) = list[key]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == body["name"]))
    {
        return Ok(found.clone());
    }
    api.post(path, body).await
}
