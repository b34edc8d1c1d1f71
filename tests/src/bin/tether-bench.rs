//! `tether-bench`: how many agents one control plane holds, how fast desired state reaches
//! them, how fast telemetry is made durable, how the fleet recovers from a control-plane
//! SIGKILL, and what the real agent costs when idle. Writes `--out` (JSON) and prints a
//! Markdown table. `--short` runs a seconds-long version (CI).

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use tether_tests::bench::{self, Running};
use tether_tests::harness::presto_env::{PRODUCTION_AGENT, PrestoEnv, cluster_spec, glue_catalog};
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc};

#[derive(Parser, Debug)]
#[command(about = "Scale benchmark of the Tether control plane")]
struct Args {
    /// Seconds-long run for CI (small N); results go to --out as usual.
    #[arg(long)]
    short: bool,
    /// Session counts to hold, ascending.
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 10000])]
    sessions: Vec<usize>,
    /// Agents used for propagation.
    #[arg(long, default_value_t = 1000)]
    propagation_agents: usize,
    /// Desired-state changes measured.
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// Agents streaming telemetry.
    #[arg(long, default_value_t = 100)]
    ingest_agents: usize,
    /// Seconds of telemetry streaming (and of the raw baseline).
    #[arg(long, default_value_t = 10.0)]
    ingest_seconds: f64,
    /// Records per telemetry batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Seconds the real agent's idle CPU is measured over.
    #[arg(long, default_value_t = 30)]
    agent_idle_seconds: u64,
    /// Phases to run (sessions always run): propagation, fanout, ingest, reconnect, agent,
    /// replicas.
    #[arg(long, value_delimiter = ',', default_values_t = ["propagation".to_owned(), "fanout".into(), "ingest".into(), "reconnect".into(), "agent".into(), "replicas".into()])]
    phases: Vec<String>,
    /// Replicas of the control plane on PostgreSQL in the replica phase.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Sessions held across the replicas in the replica phase.
    #[arg(long, default_value_t = 30_000)]
    replica_sessions: usize,
    /// (Internal) run as a worker process of simulated agents: their identities' file.
    #[arg(long, hide = true)]
    worker: Option<std::path::PathBuf>,
    /// (Internal) the control-plane URLs of a worker.
    #[arg(long, hide = true, default_value = "")]
    worker_urls: String,
    /// Where the JSON results go.
    #[arg(long, default_value = "benchmarks/results.json")]
    out: std::path::PathBuf,
}

fn raise_nofile() -> u64 {
    // As root the hard limit can rise too (children inherit it); else up to the hard limit.
    let want = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1_048_576)
        .min(1_048_576);
    if rlimit::Resource::NOFILE.set(want, want).is_ok() {
        return want;
    }
    match rlimit::increase_nofile_limit(1_048_576) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("warning: cannot raise the open-file limit: {e}");
            0
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut a = Args::parse();
    if let Some(file) = &a.worker {
        raise_nofile();
        return bench::workers::worker_main(file, &a.worker_urls).await;
    }
    if a.short {
        a.sessions = vec![200];
        a.propagation_agents = 100;
        a.changes = 100;
        a.ingest_agents = 10;
        a.ingest_seconds = 1.0;
        a.agent_idle_seconds = 3;
        a.replica_sessions = 300;
    }
    a.sessions.sort_unstable();
    let nofile = raise_nofile();
    let started = Instant::now();
    let mut notes = serde_json::Map::new();
    let mut r = serde_json::Map::new();

    eprintln!("== control plane");
    let mut cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let max_n = a.sessions.last().copied().unwrap_or(0);
    eprintln!("== provisioning {max_n} compute planes and agent identities");
    let t = Instant::now();
    let ids = bench::provision(&cp, max_n, "provisioning").await;
    eprintln!("  {} enrolled in {:.1?}", ids.len(), t.elapsed());
    r.insert(
        "enroll_per_s".into(),
        json!((ids.len() as f64 / t.elapsed().as_secs_f64()).round()),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = bench::rss_kib(cp.pid());

    // Sessions held, and control-plane memory per idle session.
    let mut fleet = Running::new(&cp.grpc_url());
    let mut held = Vec::new();
    let mut from = 0;
    for &n in &a.sessions {
        let n = n.min(ids.len());
        eprintln!("== holding {n} sessions");
        let took = fleet.add(&ids[from..n], Duration::from_secs(300)).await;
        from = n;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let live = fleet.fleet.live.load(std::sync::atomic::Ordering::SeqCst);
        let rss = bench::rss_kib(cp.pid());
        let per = (rss.saturating_sub(rss_before)) as f64 / live.max(1) as f64;
        eprintln!(
            "  {live} live after {took:.1?}; control plane RSS {rss} KiB ({per:.1} KiB per session)"
        );
        held.push(
            json!({"target": n, "live": live, "connect_s": took.map(|d| d.as_secs_f64()),
                         "cp_rss_kib": rss, "cp_rss_per_session_kib": (per * 10.0).round() / 10.0}),
        );
    }
    let last = held.last().cloned().unwrap_or(Value::Null);
    r.insert("sessions_held".into(), last["live"].clone());
    r.insert(
        "cp_rss_per_session_kib".into(),
        last["cp_rss_per_session_kib"].clone(),
    );
    r.insert("sessions".into(), json!(held));

    let run = |p: &str| a.phases.iter().any(|x| x == p);
    // Propagation.
    if run("propagation") {
        eprintln!(
            "== propagation: {} changes over {} agents",
            a.changes, a.propagation_agents
        );
        let lat = bench::propagation(&api, &fleet, a.propagation_agents, a.changes).await;
        let p = |q| (bench::percentile(&lat, q) * 100.0).round() / 100.0;
        eprintln!(
            "  p50 {} ms, p99 {} ms ({} measured)",
            p(50.0),
            p(99.0),
            lat.len()
        );
        r.insert("propagation_p50_ms".into(), json!(p(50.0)));
        r.insert("propagation_p99_ms".into(), json!(p(99.0)));
        r.insert("propagation_measured".into(), json!(lat.len()));
    }

    // Fan-out to every held agent: one tenant-wide change, a few times.
    if run("fanout") {
        let n = fleet.ids.len();
        eprintln!("== fan-out: one tenant-wide settings change to {n} agents, 5 times");
        let tenant = ids.first().map(|i| i.tenant_id.clone()).unwrap_or_default();
        let mut times = Vec::new();
        for i in 0..5 {
            let fan = bench::fanout(&api, &fleet, &tenant, i).await;
            eprintln!("  all {n} had it after {fan:?} ms");
            times.extend(fan);
            // Let the 10,000 applied acks of this change be written before the next one.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        for line in cp
            .log()
            .lines()
            .filter(|l| l.contains("tenant settings changed"))
        {
            if let Ok(e) = serde_json::from_str::<Value>(line) {
                let f = &e["fields"];
                eprintln!(
                    "  control plane: write {} ms, read and push {} ms",
                    f["write_ms"], f["push_ms"]
                );
            }
        }
        times.sort_by(f64::total_cmp);
        let median = (times.len() == 5).then(|| times[2].round());
        r.insert(format!("fanout_{n}_ms"), json!(median));
        r.insert(
            "fanout_10k_ms".into(),
            json!(if n == 10_000 { median } else { None }),
        );
        r.insert("fanout_runs_ms".into(), json!(times));
        r.insert("fanout_100k_ms".into(), Value::Null);
        notes.insert("fanout".into(), json!("PUT /tenants/{t}/settings, a setting of every compute plane of the tenant; time from the call until every agent received its new document; the median of 5 changes"));
    }

    // Telemetry ingest and the transport's limit.
    if run("ingest") {
        let k = a.ingest_agents.min(ids.len());
        eprintln!("== telemetry ingest: {k} agents for {} s", a.ingest_seconds);
        let ingest = bench::ingest(&cp.grpc_url(), &ids[..k], a.batch, 4, a.ingest_seconds).await;
        eprintln!("  {ingest:.0} records/s durable");
        let raw = bench::raw_stream(a.batch, 4, a.ingest_seconds).await;
        eprintln!("  raw stream: {raw:.0} records/s");
        r.insert("ingest_records_per_s".into(), json!(ingest.round()));
        r.insert("raw_stream_records_per_s".into(), json!(raw.round()));
        r.insert(
            "ingest_vs_raw".into(),
            json!((ingest / raw.max(1.0) * 1000.0).round() / 1000.0),
        );
        notes.insert("raw_stream".into(), json!("one tonic bidirectional stream, plain HTTP/2 on loopback, same batches, a server that acks without storing"));
    }

    // Reconnect storm.
    if run("reconnect") {
        let n = fleet.ids.len();
        eprintln!("== reconnect storm: SIGKILL and restart with {n} agents connected");
        eprintln!("  failures so far: {}", fleet.fleet.failure_summary());
        let again = cp.same_place();
        cp.kill();
        let t0 = Instant::now();
        cp = ControlPlaneProc::start(again).await;
        let pid = cp.pid();
        let (mut peak_rss, mut cpu_prev, mut wall_prev, mut peak_cpu) =
            (0u64, bench::cpu_seconds(pid), Instant::now(), 0f64);
        let back = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak_rss = peak_rss.max(bench::rss_kib(pid));
            let (cpu, wall) = (bench::cpu_seconds(pid), Instant::now());
            peak_cpu = peak_cpu.max((cpu - cpu_prev) / (wall - wall_prev).as_secs_f64() * 100.0);
            (cpu_prev, wall_prev) = (cpu, wall);
            if fleet.fleet.live.load(std::sync::atomic::Ordering::SeqCst) >= n {
                break Some(t0.elapsed());
            }
            let live = fleet.fleet.live.load(std::sync::atomic::Ordering::SeqCst);
            if t0.elapsed().as_millis() % 10_000 < 250 {
                eprintln!(
                    "  {:.0?}: {live} of {n} back; failures: {}",
                    t0.elapsed(),
                    fleet.fleet.failure_summary()
                );
            }
            if t0.elapsed() > Duration::from_secs(180) {
                r.insert("reconnect_live_at_timeout".into(), json!(live));
                break None;
            }
        };
        eprintln!("  back in {back:.1?}; peak RSS {peak_rss} KiB, peak CPU {peak_cpu:.0}%");
        eprintln!("  failures: {}", fleet.fleet.failure_summary());
        let metrics = reqwest::get(format!("{}/metrics", api.base())).await.ok();
        let metrics = match metrics {
            Some(m) => m.text().await.unwrap_or_default(),
            None => String::new(),
        };
        let counter = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        let deferred = counter("tether_sessions_deferred_total ");
        let queued = counter("tether_tls_handshakes_queued_total ");
        eprintln!(
            "  session starts deferred (Goodbye overloaded): {deferred:?}; handshakes that queued: {queued:?}"
        );
        r.insert("reconnect_sessions_deferred".into(), json!(deferred));
        r.insert("reconnect_handshakes_queued".into(), json!(queued));
        for (what, n) in cp.warnings() {
            eprintln!("  control plane warned {n}x: {what}");
        }
        let key = if n == 10_000 {
            "reconnect_10k_s".to_owned()
        } else {
            format!("reconnect_{n}_s")
        };
        r.insert(
            key,
            json!(back.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0)),
        );
        r.entry("reconnect_10k_s").or_insert(Value::Null);
        r.insert("reconnect_100k_s".into(), Value::Null);
        r.insert("reconnect_peak_rss_kib".into(), json!(peak_rss));
        r.insert("reconnect_peak_cpu_percent".into(), json!(peak_cpu.round()));
    }
    fleet.stop();
    drop(cp);

    // The real agent, idle with one reconciled cluster.
    if run("agent") {
        eprintln!("== the real agent, idle with one Running cluster");
        let mut env = PrestoEnv::start().await;
        env.put_catalog("lake", glue_catalog()).await;
        env.put_cluster("etl", cluster_spec(2, &["lake"])).await;
        env.running("etl", 2, 60).await;
        // Then the same agent (same state dir) with the production intervals.
        env.start_agent_with(None, &PRODUCTION_AGENT);
        env.fx.connected(&env.api(), 30).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let agent_pid = env.agent.as_ref().map(|a| a.pid()).unwrap_or(0);
        let (c0, w0) = (bench::cpu_seconds(agent_pid), Instant::now());
        tokio::time::sleep(Duration::from_secs(a.agent_idle_seconds)).await;
        let cpu_pct = (bench::cpu_seconds(agent_pid) - c0) / w0.elapsed().as_secs_f64() * 100.0;
        let agent_rss = bench::rss_kib(agent_pid);
        let (anon, file) = (
            bench::status_kib(agent_pid, "RssAnon"),
            bench::status_kib(agent_pid, "RssFile"),
        );
        eprintln!(
            "  agent RSS {agent_rss} KiB ({anon} KiB private memory, {file} KiB mapped from its binary and libraries), CPU {cpu_pct:.3}%"
        );
        r.insert(
            "agent_idle_rss_anon_mib".into(),
            json!((anon as f64 / 1024.0 * 10.0).round() / 10.0),
        );
        r.insert(
            "agent_idle_rss_file_mib".into(),
            json!((file as f64 / 1024.0 * 10.0).round() / 10.0),
        );
        r.insert(
            "agent_idle_rss_mib".into(),
            json!((agent_rss as f64 / 1024.0 * 10.0).round() / 10.0),
        );
        r.insert(
            "agent_idle_cpu_percent".into(),
            json!((cpu_pct * 1000.0).round() / 1000.0),
        );
        notes.insert("agent_idle".into(), json!("the tether-agent binary next to tether-bench (release when run from target/release) with one Running cluster of 2 workers against the Kubernetes stand-in, restarted with the production intervals (15 s scrape, 30 s resync) and measured from 10 s after it reconnected"));
        drop(env);
    }

    if run("replicas") {
        replicas_phase(&a, &mut r, &mut notes).await;
    }

    r.insert("machine".into(), bench::machine());
    r.insert(
        "command".into(),
        json!(std::env::args().collect::<Vec<_>>().join(" ")),
    );
    r.insert(
        "date".into(),
        json!(tether_shared::timestamps::rfc3339_from_ms(
            tether_shared::timestamps::now_unix_ms()
        )),
    );
    r.insert("mode".into(), json!(if a.short { "short" } else { "full" }));
    r.insert("open_file_limit".into(), json!(nofile));
    r.insert("duration_s".into(), json!(started.elapsed().as_secs()));
    r.insert("notes".into(), Value::Object(notes));
    let out = Value::Object(r);
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&out)? + "\n")?;
    println!("| figure | value |\n|---|---|");
    if let Some(m) = out.as_object() {
        for (k, v) in m {
            if !matches!(k.as_str(), "sessions" | "notes" | "machine" | "command") {
                println!("| {k} | {v} |");
            }
        }
    }
    eprintln!("== wrote {} in {:.0?}", a.out.display(), started.elapsed());
    Ok(())
}

/// Starts a replica; `None` if it did not listen in time (an overloaded machine) instead
/// of ending the whole run.
async fn start_replica(
    opts: tether_tests::harness::ControlPlaneOptions,
) -> Option<ControlPlaneProc> {
    tokio::spawn(ControlPlaneProc::start(opts)).await.ok()
}

/// Sum of a counter over the replicas' `/metrics`.
async fn counter_sum(replicas: &[ControlPlaneProc], line: &str) -> u64 {
    let mut sum = 0;
    for p in replicas {
        let url = format!("http://{}/metrics", p.http);
        if let Some(text) = match reqwest::get(&url).await {
            Ok(resp) => resp.text().await.ok(),
            Err(_) => None,
        } {
            sum += text
                .lines()
                .find_map(|l| l.strip_prefix(line)?.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    sum
}

/// The fleet on PostgreSQL: propagation from one replica to agents on another, sessions
/// held across replicas, a tenant-wide fan-out, ingest through all of them, full and
/// resumed TLS handshakes, a SIGKILL of one replica and a restart of all of them.
async fn replicas_phase(
    a: &Args,
    r: &mut serde_json::Map<String, Value>,
    notes: &mut serde_json::Map<String, Value>,
) {
    use tether_tests::harness::fleet::Fleet;
    let n = a.replica_sessions;
    eprintln!("== replicas: {} on PostgreSQL, {n} sessions", a.replicas);
    // Durable commits (fsync on), as in production; the tests' servers run without.
    let pg = tether_tests::harness::postgres::PgServer::start_durable();
    let mut fl = Fleet::start(&pg, a.replicas.max(2), &[]).await;
    let all_urls = fl.urls(&(0..fl.replicas.len()).collect::<Vec<_>>());
    let t = Instant::now();
    let ids = bench::provision(&fl.replicas[0], n, "provisioning on PostgreSQL").await;
    eprintln!("  {} enrolled in {:.1?}", ids.len(), t.elapsed());
    r.insert(
        "enroll_pg_per_s".into(),
        json!((ids.len() as f64 / t.elapsed().as_secs_f64()).round()),
    );

    // Cross-replica propagation: changes written on r1, agents on r2.
    let k = a.propagation_agents.min(ids.len());
    let mut on_r2 = Running::new(&fl.replicas[1].grpc_url());
    on_r2.add(&ids[..k], Duration::from_secs(120)).await;
    let lat = bench::propagation(&fl.api(0), &on_r2, k, a.changes).await;
    let p = |q| (bench::percentile(&lat, q) * 100.0).round() / 100.0;
    eprintln!(
        "  cross-replica propagation: p50 {} ms, p99 {} ms ({} measured)",
        p(50.0),
        p(99.0),
        lat.len()
    );
    r.insert("propagation_cross_replica_p50_ms".into(), json!(p(50.0)));
    r.insert("propagation_cross_replica_p99_ms".into(), json!(p(99.0)));
    on_r2.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // TLS handshakes against one replica, full and resumed.
    let h = ids.len().min(2000);
    let full = bench::handshakes(
        &fl.replicas[2 % fl.replicas.len()].grpc_url(),
        &ids[..h],
        false,
    )
    .await;
    let resumed = bench::handshakes(
        &fl.replicas[2 % fl.replicas.len()].grpc_url(),
        &ids[..h],
        true,
    )
    .await;
    eprintln!("  TLS handshakes: {full:.0}/s full, {resumed:.0}/s resumed");
    r.insert("tls_handshakes_full_per_s".into(), json!(full.round()));
    r.insert(
        "tls_handshakes_resumed_per_s".into(),
        json!(resumed.round()),
    );

    // Sessions held across the replicas, by simulated agents in worker processes.
    let rss_before: u64 = fl.replicas.iter().map(|p| bench::rss_kib(p.pid())).sum();
    let t0 = Instant::now();
    let mut workers = match bench::workers::Workers::spawn(&ids, &all_urls).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("  cannot start worker processes: {e}");
            return;
        }
    };
    let took = workers
        .wait_live(ids.len(), Duration::from_secs(900))
        .await
        .map(|_| t0.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let live = workers.live();
    let rss: u64 = fl.replicas.iter().map(|p| bench::rss_kib(p.pid())).sum();
    let per = rss.saturating_sub(rss_before) as f64 / live.max(1) as f64;
    let spread = fl.api(0).ok_get("/replicas").await;
    eprintln!("  {live} live after {took:.1?}; replicas' RSS {rss} KiB ({per:.1} KiB per session)");
    r.insert("sessions_held_total".into(), json!(live));
    r.insert(
        "replica_rss_per_session_kib".into(),
        json!((per * 10.0).round() / 10.0),
    );
    r.insert(
        "replica_sessions_spread".into(),
        json!(spread["replicas"].as_array().map(|a| {
            a.iter()
                .map(|x| json!({"name": x["name"], "sessions": x["sessions"]}))
                .collect::<Vec<_>>()
        })),
    );

    // One tenant-wide change acked by every agent, across the replicas.
    let tenant = ids.first().map(|i| i.tenant_id.clone()).unwrap_or_default();
    let mut times = Vec::new();
    for i in 0..3 {
        if !workers.mark().await {
            eprintln!("  fan-out: workers did not answer");
            break;
        }
        let mode = if i % 2 == 0 { "none" } else { "full" };
        let t0 = Instant::now();
        let (status, _) = fl
            .api(0)
            .put(
                &format!("/tenants/{tenant}/settings"),
                &json!({"query_text_redaction": mode}),
            )
            .await;
        if !status.is_success() {
            break;
        }
        while workers.done() < live && t0.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let fan = (workers.done() >= live).then(|| t0.elapsed().as_secs_f64() * 1000.0);
        eprintln!("  fan-out across replicas: all {live} had it after {fan:?} ms");
        times.extend(fan);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).map(|t| t.round());
    r.insert(format!("fanout_replicas_{live}_ms"), json!(median));
    if live >= 100_000 {
        r.insert("fanout_100k_ms".into(), json!(median));
    }

    // Ingest through every replica into PostgreSQL.
    let k = a.ingest_agents.min(ids.len());
    let ingest = bench::ingest(&all_urls, &ids[..k], a.batch, 4, a.ingest_seconds).await;
    eprintln!(
        "  ingest through {} replicas into PostgreSQL: {ingest:.0} records/s",
        fl.replicas.len()
    );
    r.insert("ingest_pg_records_per_s".into(), json!(ingest.round()));

    // SIGKILL of one replica.
    let want = live;
    let t0 = Instant::now();
    fl.replicas[0].kill();
    // Until the killed replica's agents notice the connection is gone.
    workers.wait_below(want, Duration::from_secs(10)).await;
    let back = workers.wait_live(want, Duration::from_secs(120)).await;
    eprintln!("  one replica SIGKILLed: all {want} back after {back:.1?}");
    let one_back = back.map(|_| (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    r.insert(format!("reconnect_replica_kill_{want}_s"), json!(one_back));
    r.insert("reconnect_replica_kill_s".into(), json!(one_back));
    if back.is_none() {
        r.insert(
            "reconnect_replica_kill_live_at_timeout".into(),
            json!(workers.live()),
        );
    }
    let again = fl.replicas[0].same_place();
    let mut again = again;
    again.extra_args = tether_tests::harness::fleet::replica_args(&fl.db_url, &fl.key_file, "r1");
    match start_replica(again).await {
        Some(p) => fl.replicas[0] = p,
        None => {
            eprintln!("  the killed replica did not start again in time; stopping the phase here");
            workers.stop().await;
            return;
        }
    }

    // Every replica killed and restarted.
    let places: Vec<_> = fl
        .replicas
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut o = p.same_place();
            o.extra_args = tether_tests::harness::fleet::replica_args(
                &fl.db_url,
                &fl.key_file,
                &format!("r{}", i + 1),
            );
            o
        })
        .collect();
    for p in &mut fl.replicas {
        p.kill();
    }
    let t0 = Instant::now();
    workers.wait_below(want, Duration::from_secs(10)).await;
    let restarted = futures::future::join_all(places.into_iter().map(start_replica)).await;
    fl.replicas = restarted.into_iter().flatten().collect();
    let back = workers.wait_live(want, Duration::from_secs(180)).await;
    if back.is_none() {
        r.insert(
            "reconnect_all_replicas_live_at_timeout".into(),
            json!(workers.live()),
        );
    }
    let (full, resumed) = (
        counter_sum(&fl.replicas, "tether_tls_handshakes_total{kind=\"full\"}").await,
        counter_sum(
            &fl.replicas,
            "tether_tls_handshakes_total{kind=\"resumed\"}",
        )
        .await,
    );
    eprintln!(
        "  every replica restarted: all {want} back after {back:.1?} ({resumed} resumed, {full} full handshakes)"
    );
    let all_back = back.map(|_| (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    r.insert(format!("reconnect_all_replicas_{want}_s"), json!(all_back));
    if want >= 100_000 {
        r.insert("reconnect_100k_s".into(), json!(all_back));
    }
    r.insert(
        "reconnect_all_replicas_resumed_handshakes".into(),
        json!(resumed),
    );
    r.insert("reconnect_all_replicas_full_handshakes".into(), json!(full));
    notes.insert("replicas".into(), json!(format!(
        "{} tether-control-plane replicas on one PostgreSQL 15 server on the same machine (fsync and synchronous commit on); simulated agents in {} worker processes (at most {} each, under the open-file limit), each starting at a random replica and moving to the next when its session ends",
        fl.replicas.len(),
        workers.agents().div_ceil(bench::workers::PER_WORKER),
        bench::workers::PER_WORKER
    )));
    workers.stop().await;
}
