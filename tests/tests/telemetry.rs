//! Issue 4 end to end: query metadata and metrics from a Presto stand-in, scraped by the
//! real agent through the Kubernetes stand-in's service proxy, delivered exactly once over
//! cut connections and killed processes, with literals redacted inside the "VPC".

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{NAMESPACE, PrestoEnv, cluster_spec, glue_catalog};
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

/// A running cluster `analytics` whose coordinator is a Presto stand-in.
async fn env_with_presto(opts: PrestoOptions) -> (PrestoEnv, PrestoStandIn) {
    let env = PrestoEnv::start().await;
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(2, &["lake"]))
        .await;
    env.running("analytics", 2, 15).await;
    let presto = PrestoStandIn::start(opts).await.expect("presto stand-in");
    env.kube
        .register_service_backend(NAMESPACE, "analytics", presto.addr());
    (env, presto)
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

/// Reads one sample from a Prometheus text endpoint.
async fn prom(url: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|v| v as u64)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Acceptance 4: with the control plane down and a 1 MiB spool, the agent's memory stays
/// bounded, and after reconnect delivered + reported-dropped equals produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_are_counted_and_memory_stays_bounded() {
    init();
    let (mut env, presto) = env_with_presto(PrestoOptions {
        max_history: 100,
        min_expire_age: Duration::from_secs(2),
        ..PrestoOptions::default()
    })
    .await;
    if let Some(mut a) = env.agent.take() {
        a.terminate();
        a.wait_exit(Duration::from_secs(10)).await;
    }
    // Long texts of identifiers (they survive redaction): 20,000 records of ~3 KB would be
    // ~60 MB if the agent kept them in memory instead of its 1 MiB spool.
    let columns: Vec<String> = (0..120)
        .map(|i| format!("customer_attribute_{i:03}"))
        .collect();
    let long_text = format!(
        "SELECT {} FROM warehouse.customers WHERE id = 42",
        columns.join(", ")
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let agent = AgentProc::start(
        AgentOptions::for_control_plane(&env.cp, env.agent_dir.clone(), None)
            .with_args(&tether_tests::harness::presto_env::FAST_AGENT)
            .with_args(&[
                "--kubeconfig",
                &env.kubeconfig.display().to_string(),
                "--spool-max",
                "1Mi",
                "--metrics-listen",
                &format!("127.0.0.1:{port}"),
                "--backoff-max",
                "2s",
            ]),
    );
    env.fx.connected(&env.cp.api(), 15).await;
    // Everything so far is delivered: the baseline.
    let (p0, d0) = eventually(Duration::from_secs(15), "agent caught up", || async {
        let produced = prom(&metrics, "tether_agent_telemetry_records_total").await?;
        let acked = prom(&metrics, "tether_agent_telemetry_acked_seq").await?;
        let dropped = prom(&metrics, "tether_agent_telemetry_dropped_total").await?;
        (produced > 0 && acked == produced).then_some((produced, dropped))
    })
    .await;

    let again = env.cp.same_place();
    env.cp.kill();
    let rss_before = rss_kib(agent.pid());
    // 20,000 queries keep CI quick; TETHER_SPOOL_TEST_QUERIES=100000 runs the full-scale
    // variant (about two minutes).
    let queries: u64 = std::env::var("TETHER_SPOOL_TEST_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let workload = presto.start_workload(Workload {
        count: Some(queries),
        per_second: 1000.0,
        run_time: Duration::from_millis(50),
        fail_ratio: 0.0,
        texts: vec![long_text],
        ..Workload::default()
    });
    // Peak memory in the first and in the second half of the outage: it must not keep
    // growing with the amount of telemetry produced while the control plane is away.
    let outage_start = Instant::now();
    let (mut early_peak, mut late_peak) = (rss_before, 0u64);
    while !workload.is_done() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let rss = rss_kib(agent.pid());
        if outage_start.elapsed() < Duration::from_secs(queries / 2000) {
            early_peak = early_peak.max(rss);
        } else {
            late_peak = late_peak.max(rss);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // the last finished queries get scraped
    let spool_bytes = prom(&metrics, "tether_agent_spool_bytes")
        .await
        .expect("spool bytes");
    assert!(
        spool_bytes <= 1_200_000,
        "spool bounded: {spool_bytes} bytes"
    );
    // Quiescent memory after the burst (Presto's history has shrunk back, transient
    // buffers are freed): holding the records in memory instead of the 1 MiB spool would
    // add ~3 KB per query (~60 MB for 20,000) on top of the ~30 MiB the allocator and the
    // seen-id set keep after a burst.
    let mut quiescent = u64::MAX;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        quiescent = quiescent.min(rss_kib(agent.pid()));
    }
    assert!(
        quiescent < rss_before + 48 * 1024,
        "memory bounded: {rss_before} KiB before, {quiescent} KiB after the burst (peaks {early_peak}/{late_peak} KiB)"
    );

    env.cp = ControlPlaneProc::start(again).await;
    let cp_metrics = format!("http://{}/metrics", env.cp.http);
    let (p1, d1) = eventually(
        Duration::from_secs(60),
        "agent caught up after reconnect",
        || async {
            let produced = prom(&metrics, "tether_agent_telemetry_records_total").await?;
            let acked = prom(&metrics, "tether_agent_telemetry_acked_seq").await?;
            let dropped = prom(&metrics, "tether_agent_telemetry_dropped_total").await?;
            (acked == produced).then_some((produced, dropped))
        },
    )
    .await;
    // New records after the restart, as the control plane counted them. (Records produced
    // after the agent caught up are also counted by both sides, so the sums match exactly.)
    let delivered = prom(&cp_metrics, "tether_telemetry_records_total")
        .await
        .expect("cp metric");
    assert!(d1 > d0, "the 1 MiB spool had to drop records");
    eprintln!(
        "spool test: produced {}, delivered {delivered}, dropped {}, agent RSS {rss_before} KiB before, {quiescent} KiB after, peaks {early_peak}/{late_peak} KiB",
        p1 - p0,
        d1 - d0
    );
    assert!(
        p1 - p0 >= queries,
        "at least one record per query was produced: {}",
        p1 - p0
    );
    assert_eq!(
        delivered + (d1 - d0),
        p1 - p0,
        "delivered + dropped = produced"
    );
    let page = env
        .api()
        .ok_get(&format!(
            "/compute-planes/{}/query-log?limit=1",
            env.fx.cp_id
        ))
        .await;
    assert_eq!(
        page["dropped_records"].as_u64(),
        Some(d1),
        "drops are shown in the API"
    );
    drop(agent);
}
