//! The control plane as a fleet: several real replica processes on one real PostgreSQL,
//! real agents dialling any of them, the Kubernetes and Presto stand-ins behind the agent.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_tests::harness::fleet::{Fleet, TEST_REPLICA_ARGS, write_secret_key};
use tether_tests::harness::grpc::{enroll_raw, open_session, raw_client};
use tether_tests::harness::presto_env::{FAST_AGENT, NAMESPACE, cluster_spec, glue_catalog, prom};
use tether_tests::harness::{
    AgentOptions, AgentProc, Api, ControlPlaneOptions, ControlPlaneProc, TenantFixture, bin_path,
    eventually, init, postgres,
};
use tether_tests::standins::kube::{KubeOptions, KubeStandIn, ObjectKey};
use tether_tests::standins::presto::{PrestoOptions, PrestoStandIn, Workload};

/// A fleet, a tenant with a compute plane, and the agent's Kubernetes stand-in.
struct FleetEnv {
    fleet: Fleet,
    fx: TenantFixture,
    kube: KubeStandIn,
    kubeconfig: PathBuf,
    agent_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl FleetEnv {
    async fn start(pg: &postgres::PgServer, replicas: usize) -> Self {
        let fleet = Fleet::start(pg, replicas, &TEST_REPLICA_ARGS).await;
        let fx = TenantFixture::create(&fleet.api(0), "acme").await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let kube = KubeStandIn::start(KubeOptions::default())
            .await
            .expect("kube stand-in");
        let kubeconfig = tmp.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Self {
            fleet,
            fx,
            kube,
            kubeconfig,
            agent_dir: tmp.path().join("agent"),
            _tmp: tmp,
        }
    }

    /// The API of replica `i` as the tenant's admin.
    fn api(&self, i: usize) -> Api {
        self.fleet.api(i).as_token(&self.fx.admin_token)
    }

    /// Starts the agent against the replicas `which`, enrolling through the first.
    async fn agent(&self, which: &[usize]) -> AgentProc {
        let token = self.fx.enrollment_token(&self.fleet.api(0), 600).await;
        AgentProc::start(
            AgentOptions {
                control_plane: self.fleet.urls(which),
                ca_file: self.fleet.replicas[0].ca_file(),
                state_dir: self.agent_dir.clone(),
                enrollment_token: Some(token),
                ..AgentOptions::default()
            }
            .with_args(&FAST_AGENT)
            .with_args(&[
                "--kubeconfig",
                &self.kubeconfig.display().to_string(),
                "--backoff-max",
                "1s",
            ]),
        )
    }

    fn path(&self, rest: &str) -> String {
        format!("/compute-planes/{}{rest}", self.fx.cp_id)
    }

    /// Waits until replica `i` shows `name` Running with `workers`, reconciled at the
    /// compute plane's current generation.
    async fn running(&self, i: usize, name: &str, workers: u64, secs: u64) -> Value {
        let api = self.api(i);
        let path = self.path(&format!("/clusters/{name}"));
        eventually(
            Duration::from_secs(secs),
            &format!("{name} Running with {workers} workers, seen on r{}", i + 1),
            || async {
                let (_, c) = api.get(&path).await;
                let ok = c["status"]["phase"] == "Running"
                    && c["observed_generation"] == c["generation"]
                    && c["status"]["ready_workers"].as_u64() == Some(workers);
                ok.then_some(c)
            },
        )
        .await
    }
}

/// The stand-in's copy of a namespaced object.
fn object(kube: &KubeStandIn, api_version: &str, plural: &str, name: &str) -> Option<Value> {
    kube.object(&ObjectKey::new(api_version, plural, Some(NAMESPACE), name))
}

/// A change written on one replica is applied by the agent connected to another; a
/// revocation on a third closes that session within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_revocations_reach_the_agent_through_any_replica() {
    init();
    let env = FleetEnv::start(postgres::shared(), 3).await;
    let replicas = env.fleet.api(2).ok_get("/replicas").await;
    let names: Vec<&str> = replicas["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["r1", "r2", "r3"], "{replicas}");
    // Only a platform admin lists replicas.
    let (status, _) = env.api(0).get("/replicas").await;
    assert_eq!(status.as_u16(), 403);

    let agent = env.agent(&[1]).await;
    Fleet::held_by(&env.api(0), &env.fx.cp_id, "r2", 20).await;

    // Written on r3, applied by the agent on r2.
    env.api(2)
        .ok_put(&env.path("/catalogs/lake"), &glue_catalog())
        .await;
    env.api(2)
        .ok_put(&env.path("/clusters/etl"), &cluster_spec(2, &["lake"]))
        .await;
    env.running(0, "etl", 2, 30).await;
    assert!(object(&env.kube, "apps/v1", "deployments", "etl-worker").is_some());

    // Revoked on r1, the session on r2 ends at once.
    let revoked_at = Instant::now();
    env.api(0)
        .ok_post(&env.path("/revoke-agent"), &json!({}))
        .await;
    eventually(
        Duration::from_secs(1),
        "the agent on r2 told it is revoked",
        || async { agent.log().contains("revoked").then_some(()) },
    )
    .await;
    eprintln!(
        "revocation reached the other replica's agent in {:?}",
        revoked_at.elapsed()
    );
    let log = env.fleet.replicas[1].log();
    assert!(
        log.contains("session ended by another replica"),
        "r2 ended the session on r1's word: {log}"
    );
}

/// SIGKILL of the replica that holds the agent's session: the agent comes back on another
/// one, a change written while it was away is applied, and the dead replica's lease
/// expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_agent_comes_back_on_another_and_loses_no_change() {
    init();
    let mut env = FleetEnv::start(postgres::shared(), 3).await;
    let _agent = env.agent(&[0, 1, 2]).await;
    let holder = Fleet::holder(&env.api(0), &env.fx.cp_id, 20).await;
    let dead = Fleet::index(&holder);
    let alive = (dead + 1) % 3;
    env.api(alive)
        .ok_put(&env.path("/catalogs/lake"), &glue_catalog())
        .await;
    env.api(alive)
        .ok_put(&env.path("/clusters/etl"), &cluster_spec(1, &["lake"]))
        .await;
    env.running(alive, "etl", 1, 30).await;

    env.fleet.replicas[dead].kill();
    // Written while the agent has no session.
    env.api(alive)
        .ok_put(&env.path("/clusters/etl"), &cluster_spec(3, &["lake"]))
        .await;
    let now = eventually(
        Duration::from_secs(30),
        "the agent connected to a live replica",
        || async {
            let (_, v) = env.api(alive).get(&env.path("")).await;
            let on = v["agent"]["replica"].as_str().unwrap_or("");
            (v["agent"]["connected"] == true && on != holder).then(|| on.to_owned())
        },
    )
    .await;
    assert_ne!(now, holder);
    env.running(alive, "etl", 3, 30).await;
    // The dead replica's lease runs out (3 s) and it leaves the list.
    eventually(
        Duration::from_secs(15),
        "dead replica gone from /replicas",
        || async {
            let v = env.fleet.api(alive).ok_get("/replicas").await;
            let names: Vec<String> = v["replicas"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (!names.contains(&holder) && names.len() == 2).then_some(())
        },
    )
    .await;
}

/// SIGTERM: the replica stops admitting, says Goodbye "draining", and its agent goes to
/// another replica; `/readyz` said not ready while it drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_hands_agents_to_the_other_replica() {
    init();
    let mut env = FleetEnv::start(postgres::shared(), 2).await;
    let agent = env.agent(&[0, 1]).await;
    let holder = Fleet::holder(&env.api(0), &env.fx.cp_id, 20).await;
    let draining = Fleet::index(&holder);
    let other = 1 - draining;
    let status = env.fleet.replicas[draining]
        .terminate()
        .expect("exit status");
    assert!(status.success(), "{}", env.fleet.replicas[draining].log());
    assert!(env.fleet.replicas[draining].log().contains("draining"));
    let next = Fleet::holder(&env.api(other), &env.fx.cp_id, 20).await;
    assert_eq!(next, format!("r{}", other + 1));
    assert!(
        agent.log().contains("draining"),
        "the agent was told why: {}",
        agent.log()
    );
    // The drained replica removed its lease on the way out.
    let v = env.fleet.api(other).ok_get("/replicas").await;
    assert_eq!(v["replicas"].as_array().map(Vec::len), Some(1), "{v}");
}

/// Two replicas starting at once on an empty database: migrations once, one CA, one
/// platform admin token; a replica with another key or none is refused clearly; the
/// `admin-token` command mints a working token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_agree() {
    init();
    let pg = postgres::shared();
    let db = pg.create_database().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("secret-key");
    write_secret_key(&key);
    let start = |name: &str| {
        ControlPlaneProc::start(ControlPlaneOptions {
            data_dir: Some(tmp.path().join(name)),
            extra_args: tether_tests::harness::fleet::replica_args(&db, &key, name)
                .into_iter()
                .chain(TEST_REPLICA_ARGS.map(str::to_owned))
                .collect(),
            ..ControlPlaneOptions::default()
        })
    };
    let (a, b) = tokio::join!(start("a"), start("b"));
    let ca = |p: &ControlPlaneProc| std::fs::read_to_string(p.ca_file()).expect("ca.pem");
    assert_eq!(ca(&a), ca(&b), "one CA");
    let tokens: Vec<bool> = [&a, &b]
        .iter()
        .map(|p| p.data_dir.join("admin-token").exists())
        .collect();
    assert_eq!(
        tokens.iter().filter(|t| **t).count(),
        1,
        "exactly one replica wrote the admin token: {tokens:?}"
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .expect("connect");
    let (admins,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM api_tokens WHERE role = 'platform_admin'")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(admins, 1);
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../control-plane/migrations/postgres"
    ))
    .expect("migrations dir")
    .count() as i64;
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("migrations");
    assert_eq!(applied, migrations, "each migration ran once");
    // The CA key is in the database only sealed.
    let (sealed,): (Vec<u8>,) = sqlx::query_as("SELECT sealed FROM secrets WHERE name = 'ca'")
        .fetch_one(&mut conn)
        .await
        .expect("sealed CA");
    assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));

    // Another key, or none: a clear refusal, nothing changed.
    let other_key = tmp.path().join("other-key");
    write_secret_key(&other_key);
    let run = |args: &[&str]| {
        let out = Command::new(bin_path("tether-control-plane"))
            .args(args)
            .output()
            .expect("run");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir_c = tmp.path().join("c").display().to_string();
    let (status, err) = run(&[
        "serve",
        "--data-dir",
        &dir_c,
        "--database",
        &db,
        "--secret-key-file",
        &other_key.display().to_string(),
        "--http-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
    ]);
    assert!(!status.success());
    assert!(err.contains("does not match"), "{err}");
    let (status, err) = run(&["serve", "--data-dir", &dir_c, "--database", &db]);
    assert!(!status.success());
    assert!(err.contains("--secret-key-file"), "{err}");

    let out = Command::new(bin_path("tether-control-plane"))
        .args(["admin-token", "--data-dir", &dir_c, "--database", &db])
        .args(["--secret-key-file", &key.display().to_string()])
        .output()
        .expect("admin-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (status, _) = Api::new(&b.http, &minted).get("/tenants").await;
    assert_eq!(
        status.as_u16(),
        200,
        "the minted token works on any replica"
    );
}

/// A reconnect to another replica resumes the TLS session with a ticket of the first
/// (the shared ticket secret); resuming with a revoked certificate is refused at the
/// session start, although rustls does not check the certificate again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_tls_sessions_work_across_replicas_and_a_revoked_certificate_is_refused() {
    init();
    let fleet = Fleet::start(postgres::shared(), 2, &TEST_REPLICA_ARGS).await;
    let fx = TenantFixture::create(&fleet.api(0), "acme").await;
    let token = fx.enrollment_token(&fleet.api(0), 600).await;
    let (r1, r2) = (&fleet.replicas[0], &fleet.replicas[1]);
    let (cert, key) = enroll_raw(&r1.grpc_url(), &r1.ca_file(), &token).await;
    let resumed = |p: &ControlPlaneProc| {
        let url = format!("http://{}/metrics", p.http);
        async move {
            prom(&url, "tether_tls_handshakes_total{kind=\"resumed\"}")
                .await
                .unwrap_or(0)
        }
    };
    let session = |p: &ControlPlaneProc| {
        let (url, ca) = (p.grpc_url(), p.ca_file());
        let (cert, key) = (cert.clone(), key.clone());
        async move {
            let mut c = raw_client(&url, &ca, Some((&cert, &key)))
                .await
                .expect("mTLS");
            let (tx, mut inbound) = open_session(&mut c).await?;
            // The Welcome; the session tickets arrive with it.
            let first = inbound.message().await?;
            drop(tx);
            Ok::<_, tonic::Status>(first)
        }
    };
    session(r1).await.expect("first session, full handshake");
    let before = resumed(r2).await;
    session(r2)
        .await
        .expect("second session, on the other replica");
    assert!(
        resumed(r2).await > before,
        "r2 resumed r1's TLS session: {}",
        r2.log()
    );

    fleet
        .api(0)
        .as_token(&fx.admin_token)
        .ok_post(
            &format!("/compute-planes/{}/revoke-agent", fx.cp_id),
            &json!({}),
        )
        .await;
    let before = resumed(r1).await;
    let refused = session(r1).await.expect_err("revoked");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(
        resumed(r1).await > before,
        "the refused connection was a resumed one"
    );
}

/// 10,000 query records while the replica holding the agent's session is SIGKILLed:
/// every record arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_records_survive_the_kill_of_the_replica_holding_the_session() {
    init();
    let total: u64 = 10_000;
    let mut env = FleetEnv::start(postgres::shared(), 3).await;
    let _agent = env.agent(&[0, 1, 2]).await;
    let holder = Fleet::holder(&env.api(0), &env.fx.cp_id, 20).await;
    let dead = Fleet::index(&holder);
    let alive = (dead + 1) % 3;
    env.api(alive)
        .ok_put(&env.path("/catalogs/lake"), &glue_catalog())
        .await;
    env.api(alive)
        .ok_put(
            &env.path("/clusters/analytics"),
            &cluster_spec(1, &["lake"]),
        )
        .await;
    env.running(alive, "analytics", 1, 30).await;
    let presto = PrestoStandIn::start(PrestoOptions {
        max_history: 200,
        min_expire_age: Duration::from_secs(6),
        ..PrestoOptions::default()
    })
    .await
    .expect("presto stand-in");
    env.kube
        .register_service_backend(NAMESPACE, "analytics", presto.addr());
    let workload = presto.start_workload(Workload {
        count: Some(total),
        per_second: 700.0,
        run_time: Duration::from_millis(200),
        ..Workload::default()
    });
    let started = Instant::now();
    let mut killed = false;
    while !workload.is_done() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !killed && started.elapsed() > Duration::from_secs(5) {
            env.fleet.replicas[dead].kill();
            killed = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "workload did not finish"
        );
    }
    assert!(killed);
    let expected: HashSet<String> = presto.finished_ids().into_iter().collect();
    assert_eq!(expected.len() as u64, total);
    let api = env.api(alive);
    let records = eventually(Duration::from_secs(90), "all 10,000 records", || async {
        let r = all_records(&api, &env.fx.cp_id).await;
        (r.len() as u64 >= total).then_some(r)
    })
    .await;
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| r["query_id"].as_str().map(str::to_owned))
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "no record twice");
    assert_eq!(unique, expected, "every record once");
}

/// PostgreSQL stopped for 10 s: the replicas stay up, say not ready, answer 503 with a
/// clear error; the agent keeps its cluster and spools telemetry; all of it arrives when
/// the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_ridden_out_and_caught_up() {
    init();
    let mut pg = postgres::PgServer::start();
    let env = FleetEnv::start(&pg, 2).await;
    let mut agent = env.agent(&[0, 1]).await;
    let holder = Fleet::index(&Fleet::holder(&env.api(0), &env.fx.cp_id, 20).await);
    env.api(0)
        .ok_put(&env.path("/catalogs/lake"), &glue_catalog())
        .await;
    env.api(0)
        .ok_put(
            &env.path("/clusters/analytics"),
            &cluster_spec(1, &["lake"]),
        )
        .await;
    env.running(0, "analytics", 1, 30).await;
    let presto = PrestoStandIn::start(PrestoOptions::default())
        .await
        .expect("presto stand-in");
    env.kube
        .register_service_backend(NAMESPACE, "analytics", presto.addr());
    let before = object(&env.kube, "apps/v1", "deployments", "analytics-worker");

    pg.stop();
    let outage = Instant::now();
    let workload = presto.start_workload(Workload {
        count: Some(200),
        per_second: 50.0,
        run_time: Duration::from_millis(100),
        ..Workload::default()
    });
    for i in 0..2 {
        let http = &env.fleet.replicas[i].http;
        let ready = reqwest::get(format!("http://{http}/readyz"))
            .await
            .expect("readyz answers");
        assert_eq!(ready.status().as_u16(), 503, "r{} not ready", i + 1);
        let (status, body) = env.api(i).get(&env.path("/clusters/analytics")).await;
        assert_eq!(status.as_u16(), 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("database")),
            "{body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
    // The cluster is left as it was; the agent never saw a reason to touch it.
    let uid = |o: Option<Value>| o.map(|o| o["metadata"]["uid"].clone());
    assert_eq!(
        uid(object(
            &env.kube,
            "apps/v1",
            "deployments",
            "analytics-worker"
        )),
        uid(before)
    );
    assert!(agent.exited().is_none(), "the agent is still running");
    pg.restart();
    eventually(Duration::from_secs(30), "ready again", || async {
        let http = &env.fleet.replicas[holder].http;
        let r = reqwest::get(format!("http://{http}/readyz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    while !workload.is_done() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: HashSet<String> = presto.finished_ids().into_iter().collect();
    let api = env.api(0);
    let records = eventually(Duration::from_secs(60), "every query record", || async {
        let r = all_records(&api, &env.fx.cp_id).await;
        (r.len() >= expected.len()).then_some(r)
    })
    .await;
    let ids: HashSet<String> = records
        .iter()
        .filter_map(|r| r["query_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(records.len(), expected.len(), "none twice");
    assert!(
        env.fleet.replicas[holder]
            .log()
            .contains("database unavailable"),
        "the outage was logged as such"
    );
}

async fn all_records(api: &Api, cp: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/compute-planes/{cp}/query-log?limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = api.get(&path).await;
        if !status.is_success() {
            return out;
        }
        out.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}
