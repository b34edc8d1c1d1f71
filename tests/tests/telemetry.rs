//! Issue 4 end to end: query metadata and metrics from a Presto stand-in, scraped by the
//! real agent through the Kubernetes stand-in's service proxy, delivered exactly once over
//! cut connections and killed processes, with literals redacted inside the "VPC".

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{PrestoEnv, env_with_presto};
use tether_tests::harness::relay::Relay;
use tether_tests::harness::{AgentOptions, AgentProc, ControlPlaneProc, eventually, init};
use tether_tests::standins::presto::{PrestoOptions, PrestoStandIn, Workload};

const SECRETS: [&str; 3] = ["alice@example.com", "4111111111111111", "2024-01-02"];

fn secret_texts() -> Vec<String> {
    vec![
        "SELECT name FROM customers WHERE email = 'alice@example.com'".into(),
        "SELECT * FROM payments WHERE card = 4111111111111111 AND day = DATE '2024-01-02'".into(),
        "SELECT CAST('alice@example.com' AS INTEGER) /* FAIL on purpose */".into(),
    ]
}

/// Every query-log record of the compute plane, through the paginated API.
async fn all_records(env: &PrestoEnv) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/compute-planes/{}/query-log?limit=1000", env.fx.cp_id);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = env.api().ok_get(&path).await;
        out.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

const CLIENT: &str = r#"
import sys, prestodb
conn = prestodb.dbapi.connect(host="127.0.0.1", port=int(sys.argv[1]), user="analyst", catalog="hive", schema="default")
cur = conn.cursor()
cur.execute("SELECT * FROM payments WHERE card = 4111111111111111 AND email = 'alice@example.com' AND day = DATE '2024-01-02'")
print("ROWS", len(cur.fetchall()))
try:
    cur = conn.cursor()
    cur.execute("SELECT CAST('alice@example.com' AS INTEGER) -- FAIL")
    cur.fetchall()
except prestodb.exceptions.PrestoUserError as e:
    print("FAILED", e.error_name)
"#;

/// Runs two queries through `presto-python-client` against the stand-in.
async fn presto_client(presto: &PrestoStandIn) -> String {
    let out = tokio::process::Command::new("python3")
        .args(["-c", CLIENT, &presto.addr().port().to_string()])
        .env("NO_PROXY", "*")
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs (presto-python-client: pip install presto-python-client)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn files_contain(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        if let Ok(bytes) = std::fs::read(&entry)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
    }
    out
}

/// Acceptance 2 and 3: literals never reach the control plane (database files and logs,
/// searched byte-wise); modes none and full; metrics match the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_metadata_arrives_redacted_and_metrics_match() {
    init();
    let (env, presto) = env_with_presto(PrestoOptions::default()).await;
    let workload = presto.start_workload(Workload {
        count: Some(30),
        per_second: 50.0,
        run_time: Duration::from_millis(100),
        fail_ratio: 0.0,
        texts: secret_texts(),
        ..Workload::default()
    });
    // And through a real Presto client (the client protocol), one query failing with a
    // message that quotes a value.
    let client = presto_client(&presto).await;
    assert!(
        client.contains("ROWS") && client.contains("FAILED"),
        "python client: {client}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let r = all_records(&env).await;
        if r.len() == 32 {
            break r;
        }
        if Instant::now() > deadline {
            let log = env.agent.as_ref().map(|a| a.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{} records after 30 s; agent log tail:\n{}\ncp log tail:\n{}",
                r.len(),
                tail.join("\n"),
                env.cp
                    .log()
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(workload.is_done());
    let failed: Vec<&Value> = records.iter().filter(|r| r["state"] == "FAILED").collect();
    assert!(!failed.is_empty(), "some queries failed");
    assert!(
        failed
            .iter()
            .all(|r| !r["error_code"].as_str().unwrap_or("").is_empty())
    );
    assert!(
        records
            .iter()
            .all(|r| r["query"].as_str().is_some_and(|q| q.contains('?'))),
        "redacted text present"
    );
    assert!(
        records
            .iter()
            .all(|r| r["user"] == "analyst" && r["cluster"] == "analytics")
    );
    let fps: HashSet<&str> = records
        .iter()
        .filter_map(|r| r["fingerprint"].as_str())
        .collect();
    // Three workload shapes plus the client's payments query; the client's CAST query
    // differs from the workload's only in its comment, so it shares that fingerprint.
    assert_eq!(fps.len(), 4, "one fingerprint per query shape: {fps:?}");

    // Metrics reach the API and match the coordinator.
    let api = env.api();
    let active = presto.cluster_stats()["activeWorkers"]
        .as_f64()
        .expect("activeWorkers");
    eventually(Duration::from_secs(5), "active_workers metric", || async {
        let m = api
            .ok_get(&format!(
                "/compute-planes/{}/metrics?name=active_workers&step=1s",
                env.fx.cp_id
            ))
            .await;
        let last = m["series"][0]["points"].as_array()?.last()?[1].as_f64()?;
        (last == active).then_some(())
    })
    .await;

    // Mode none: no text at all. Mode full: text unchanged.
    let settings = format!("/compute-planes/{}/settings", env.fx.cp_id);
    api.put(&settings, &json!({"query_text_redaction": "none"}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = presto.submit("bob", None, None, None, "SELECT 'bob-none-marker'");
    let r = eventually(Duration::from_secs(15), "mode none record", || async {
        all_records(&env)
            .await
            .into_iter()
            .find(|r| r["query_id"] == id.as_str())
    })
    .await;
    assert_eq!(r["query"], "", "mode none sends no text: {r}");
    assert_eq!(r["fingerprint"], "");
    api.put(&settings, &json!({"query_text_redaction": "full"}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = presto.submit("bob", None, None, None, "SELECT 'bob-full-marker'");
    let r = eventually(Duration::from_secs(15), "mode full record", || async {
        all_records(&env)
            .await
            .into_iter()
            .find(|r| r["query_id"] == id.as_str())
    })
    .await;
    assert_eq!(r["query"], "SELECT 'bob-full-marker'");

    // Byte-wise: no literal of the redacted-mode queries anywhere on the control plane.
    for secret in SECRETS {
        let hits = files_contain(&env.cp.data_dir, secret);
        assert!(hits.is_empty(), "{secret} found in {hits:?}");
        assert!(
            !env.cp.log().contains(secret),
            "{secret} in the control plane log"
        );
    }
}

/// Acceptance 1: 10,000 queries, exactly 10,000 records, across 20 cut connections, one
/// SIGKILL of the control plane and one of the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_queries_arrive_exactly_once_through_failures() {
    init();
    let total: u64 = 10_000;
    let (mut env, presto) = env_with_presto(PrestoOptions {
        max_history: 200,
        min_expire_age: Duration::from_secs(6),
        ..PrestoOptions::default()
    })
    .await;
    // Route the agent through a relay the test can cut.
    if let Some(mut a) = env.agent.take() {
        a.terminate();
        a.wait_exit(Duration::from_secs(10)).await;
    }
    let relay = Relay::start(env.cp.grpc.parse().expect("grpc addr")).await;
    let start_agent = |env: &PrestoEnv| {
        AgentProc::start(
            AgentOptions {
                control_plane: format!("https://{}", relay.addr()),
                ca_file: env.cp.ca_file(),
                state_dir: env.agent_dir.clone(),
                ..AgentOptions::default()
            }
            .with_args(&tether_tests::harness::presto_env::FAST_AGENT)
            .with_args(&[
                "--kubeconfig",
                &env.kubeconfig.display().to_string(),
                "--backoff-max",
                "2s",
            ]),
        )
    };
    let mut agent = start_agent(&env);
    env.fx.connected(&env.cp.api(), 15).await;

    let workload = presto.start_workload(Workload {
        count: Some(total),
        per_second: 500.0,
        run_time: Duration::from_millis(200),
        fail_ratio: 0.05,
        ..Workload::default()
    });
    let started = Instant::now();
    let mut cuts = 0;
    let mut killed_cp = false;
    let mut killed_agent = false;
    while !workload.is_done() || cuts < 20 {
        tokio::time::sleep(Duration::from_millis(300 + rand_ms(700))).await;
        if cuts < 20 && relay.cut() > 0 {
            cuts += 1;
        }
        if !killed_cp && started.elapsed() > Duration::from_secs(6) {
            let again = env.cp.same_place();
            env.cp.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            env.cp = ControlPlaneProc::start(again).await;
            killed_cp = true;
        }
        if !killed_agent && started.elapsed() > Duration::from_secs(12) {
            drop(agent);
            agent = start_agent(&env);
            killed_agent = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "workload did not finish"
        );
    }
    assert!(
        killed_cp && killed_agent && cuts >= 20,
        "faults injected: cuts {cuts}"
    );
    let expected: HashSet<String> = presto.finished_ids().into_iter().collect();
    assert_eq!(expected.len() as u64, total);
    let records = eventually(Duration::from_secs(60), "all 10,000 records", || async {
        let r = all_records(&env).await;
        (r.len() as u64 >= total).then_some(r)
    })
    .await;
    let ids: HashSet<String> = records
        .iter()
        .filter_map(|r| r["query_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(records.len() as u64, total, "exactly once");
    assert_eq!(ids, expected, "the same queries");
    drop(agent);
}

fn rand_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max);
    h.finish() % max.max(1)
}

/// The `CoordinatorReachable` condition of cluster `name`, as the API shows it.
async fn reachable(env: &PrestoEnv, name: &str) -> Option<(String, String)> {
    let c = env.cluster(name).await;
    c["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "CoordinatorReachable")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["message"].as_str().unwrap_or("").to_owned(),
            )
        })
}

/// Records attributed to `cluster`.
fn of_cluster<'a>(records: &'a [Value], cluster: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["cluster"] == cluster).collect()
}

/// One cluster's coordinator that cannot be reached — no Presto behind its Service yet, or
/// one that accepts connections and never answers — does not hold up another cluster's
/// query log; each is a condition on its own cluster, and a coordinator that appears later
/// is collected from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_coordinator_stops_only_its_own_cluster() {
    init();
    let (env, presto) = env_with_presto(PrestoOptions::default()).await;
    // A coordinator that accepts and then never says a word (a hung JVM).
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hung_addr = hung.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            held.push(s);
        }
    });
    env.kube.register_service_backend(
        tether_tests::harness::presto_env::NAMESPACE,
        "stuck",
        hung_addr,
    );
    for name in ["stuck", "fresh"] {
        env.put_cluster(
            name,
            tether_tests::harness::presto_env::cluster_spec(1, &["lake"]),
        )
        .await;
    }
    for name in ["stuck", "fresh"] {
        let (status, message) = eventually(
            Duration::from_secs(30),
            &format!("{name}: CoordinatorReachable False"),
            || async { reachable(&env, name).await.filter(|(s, _)| s == "False") },
        )
        .await;
        assert_eq!(status, "False");
        assert!(!message.is_empty(), "{name}: the condition says why");
    }
    assert_eq!(
        reachable(&env, "analytics")
            .await
            .map(|(s, _)| s)
            .as_deref(),
        Some("True")
    );

    // The reachable cluster's queries arrive meanwhile.
    let workload = presto.start_workload(Workload {
        count: Some(20),
        per_second: 40.0,
        run_time: Duration::from_millis(100),
        fail_ratio: 0.0,
        ..Workload::default()
    });
    let records = eventually(
        Duration::from_secs(20),
        "the 20 queries of analytics",
        || async {
            let r = all_records(&env).await;
            (workload.is_done() && of_cluster(&r, "analytics").len() == 20).then_some(r)
        },
    )
    .await;
    assert!(of_cluster(&records, "fresh").is_empty());
    assert!(of_cluster(&records, "stuck").is_empty());

    // Presto behind `fresh` now: collected from then on, attributed to it.
    let second = PrestoStandIn::start(PrestoOptions::default())
        .await
        .expect("presto stand-in");
    env.kube.register_service_backend(
        tether_tests::harness::presto_env::NAMESPACE,
        "fresh",
        second.addr(),
    );
    let more = second.start_workload(Workload {
        count: Some(5),
        per_second: 20.0,
        run_time: Duration::from_millis(100),
        fail_ratio: 0.0,
        ..Workload::default()
    });
    eventually(
        Duration::from_secs(30),
        "the 5 queries of fresh",
        || async {
            let r = all_records(&env).await;
            (more.is_done() && of_cluster(&r, "fresh").len() == 5).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "fresh: CoordinatorReachable True",
        || async { reachable(&env, "fresh").await.filter(|(s, _)| s == "True") },
    )
    .await;
    assert_eq!(
        reachable(&env, "stuck").await.map(|(s, _)| s).as_deref(),
        Some("False")
    );
    holder.abort();
}
