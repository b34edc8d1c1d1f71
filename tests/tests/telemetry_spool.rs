//! Issue 4, acceptance 4, in a test binary of its own (so it does not share the CPU with
//! the other telemetry tests): with the control plane down and a 1 MiB spool, the agent's
//! memory stays bounded, and after reconnect delivered + reported-dropped equals produced.

use std::time::{Duration, Instant};

use tether_tests::harness::presto_env::{env_with_presto, prom, rss_kib};
use tether_tests::harness::{AgentOptions, AgentProc, ControlPlaneProc, eventually, init};
use tether_tests::standins::presto::{PrestoOptions, Workload};

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
    // Sanity: the workload really produced records (a query that expires from Presto's
    // history before a scrape reaches it is missed at the source, as in real Presto).
    assert!(p1 - p0 >= queries / 2, "records produced: {}", p1 - p0);
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
    // Per class: the lowest class (query records) went first; the few metric samples and
    // events of the outage were kept.
    let cp = env
        .api()
        .ok_get(&format!("/compute-planes/{}", env.fx.cp_id))
        .await;
    let by = &cp["telemetry_dropped_by_class"];
    assert_eq!(by["total"].as_u64(), Some(d1), "{cp}");
    assert!(by["query_records"].as_u64() > Some(0), "{cp}");
    assert_eq!(by["events"].as_u64(), Some(0), "{cp}");
    assert_eq!(by["metrics"].as_u64(), Some(0), "{cp}");
    assert_eq!(by["query_records"].as_u64(), Some(d1), "{cp}");
    drop(agent);
}
