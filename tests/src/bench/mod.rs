//! `tether-bench`: one real control plane process and many simulated agents in this
//! process, on loopback. See BENCHMARKS.md for what each figure means.

pub mod sim;
pub mod workers;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tether_agent::retry::RetryPolicy;
use tether_agent::transport::TlsMaterial;
use tether_proto::v1 as pb;
use tokio::sync::watch;

use self::sim::{AgentStats, Fleet, Identity};
use crate::harness::{Api, ControlPlaneProc};

/// CPU ticks per second of /proc (Linux: 100).
const TICKS: f64 = 100.0;

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    crate::harness::presto_env::rss_kib(pid)
}

/// A field of `/proc/PID/status` in KiB (e.g. `RssAnon`, `RssFile`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process, seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    (ticks(11) + ticks(12)) / TICKS
}

/// p-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A tenant with `n` compute planes, each with an enrolled identity.
pub async fn provision(cp: &ControlPlaneProc, n: usize, progress: &str) -> Vec<Identity> {
    let api = cp.api();
    let t = api
        .ok_post(
            "/tenants",
            &json!({"name": format!("bench-{}", std::process::id())}),
        )
        .await;
    let tenant = t["id"].as_str().unwrap_or_default().to_owned();
    let url = cp.grpc_url();
    let ca = tether_shared::pki::certs_from_pem(&std::fs::read(cp.ca_file()).unwrap_or_default())
        .unwrap_or_default();
    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<Option<Identity>> = futures::stream::iter(0..n)
        .map(|i| {
            let (api, tenant, url, ca, done) = (&api, &tenant, &url, &ca, &done);
            async move {
                let r = enroll_one(api, tenant, url, ca, i).await;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 1000 == 0 {
                    eprintln!("  {progress}: {d}/{n} enrolled ({:.0?})", started.elapsed());
                }
                r
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    out.into_iter().flatten().collect()
}

async fn enroll_one(
    api: &Api,
    tenant: &str,
    url: &str,
    ca: &[rustls_pki_types::CertificateDer<'static>],
    i: usize,
) -> Option<Identity> {
    let (_, v) = api
        .post(
            &format!("/tenants/{tenant}/compute-planes"),
            &json!({"name": format!("cp-{i}"), "region": "us-east-1"}),
        )
        .await;
    let cp_id = v["id"].as_str()?.to_owned();
    let (_, t) = api
        .post(
            &format!("/compute-planes/{cp_id}/enrollment-tokens"),
            &json!({"ttl_seconds": 3600}),
        )
        .await;
    let token = t["token"].as_str()?.to_owned();
    let uri = tether_agent::transport::parse_control_plane_url(url).ok()?;
    let server_only = TlsMaterial {
        roots: ca.to_vec(),
        client: None,
    };
    let ch = tether_agent::transport::connect(&uri, &server_only)
        .await
        .ok()?;
    let (key, csr) = tether_shared::pki::key_and_csr("bench-agent").ok()?;
    let resp = pb::agent_control_client::AgentControlClient::new(ch)
        .enroll(pb::EnrollRequest {
            bootstrap_token: token,
            csr_pem: csr,
            agent_version: "bench".into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    let certs = tether_shared::pki::certs_from_pem(resp.certificate_pem.as_bytes()).ok()?;
    let key = tether_shared::pki::key_from_pem(key.as_bytes()).ok()?;
    let tls = TlsMaterial {
        roots: ca.to_vec(),
        client: Some((certs, Arc::new(key))),
    };
    Some(Identity {
        tenant_id: tenant.to_owned(),
        cp_id,
        config: agent_config(&tls)?,
        tls: Arc::new(tls),
    })
}

/// A simulated agent's TLS client configuration, kept for its life as the real agent
/// keeps its own (so reconnects resume); a few tickets are enough (two arrive per
/// handshake, one is used per reconnect).
pub fn agent_config(tls: &TlsMaterial) -> Option<Arc<rustls::ClientConfig>> {
    let mut config = (*tether_agent::transport::new_client_config(tls).ok()?).clone();
    config.resumption = rustls::client::Resumption::store(Arc::new(
        rustls::client::ClientSessionMemoryCache::new(4),
    ));
    Some(Arc::new(config))
}

/// The running simulated fleet.
pub struct Running {
    /// Shared counters.
    pub fleet: Arc<Fleet>,
    /// Per agent, by compute plane id.
    pub stats: HashMap<String, Arc<AgentStats>>,
    /// Order of start.
    pub ids: Vec<String>,
    /// Reference time of `AgentStats::last_push_ns`.
    pub epoch: Instant,
    urls: Arc<Vec<http::Uri>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// An empty fleet for the control plane at `url` (several replicas: comma-separated;
    /// each agent starts at a random one and moves to the next when its session ends).
    pub fn new(url: &str) -> Running {
        let (stop, _) = watch::channel(false);
        let urls = url
            .split(',')
            .filter_map(|u| tether_agent::transport::parse_control_plane_url(u.trim()).ok())
            .collect();
        Running {
            fleet: Arc::new(Fleet::default()),
            stats: HashMap::new(),
            ids: Vec::new(),
            epoch: Instant::now(),
            urls: Arc::new(urls),
            stop,
        }
    }

    /// Starts one simulated agent per identity (in batches, so handshakes do not all
    /// collide) and waits until all are welcomed or `timeout`.
    pub async fn add(&mut self, ids: &[Identity], timeout: Duration) -> Option<Duration> {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        let base = self.ids.len();
        for (i, id) in ids.iter().enumerate() {
            let s = Arc::new(AgentStats::default());
            self.stats.insert(id.cp_id.clone(), s.clone());
            self.ids.push(id.cp_id.clone());
            tokio::spawn(sim::run(
                self.urls.clone(),
                id.clone(),
                self.fleet.clone(),
                s,
                self.epoch,
                policy,
                self.stop.subscribe(),
            ));
            if i % 200 == 199 {
                // Let the control plane finish a batch of handshakes.
                let target = base + i + 1;
                let deadline = Instant::now() + Duration::from_secs(30);
                while self.fleet.live.load(Ordering::SeqCst) < target * 9 / 10
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let left = timeout.saturating_sub(t0.elapsed());
        self.wait_live(self.ids.len(), left)
            .await
            .map(|_| t0.elapsed())
    }

    /// Waits until `n` sessions are live; returns how long it took or `None` on timeout.
    pub async fn wait_live(&self, n: usize, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while self.fleet.live.load(Ordering::SeqCst) < n {
            if t0.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(t0.elapsed())
    }

    /// Stops every simulated agent.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// `PUT /compute-planes/{cp}/settings` with an alternating value.
pub async fn change(api: &Api, cp: &str, i: usize) -> bool {
    let mode = if i.is_multiple_of(2) {
        "full"
    } else {
        "redacted"
    };
    let (s, _) = api
        .put(
            &format!("/compute-planes/{cp}/settings"),
            &json!({"query_text_redaction": mode}),
        )
        .await;
    s.is_success()
}

/// Propagation: `changes` sequential writes to random agents' settings; latency from the
/// API call's start to the agent receiving the document. Milliseconds, sorted.
pub async fn propagation(api: &Api, run: &Running, agents: usize, changes: usize) -> Vec<f64> {
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let cp = &run.ids[(i * 7919) % agents.min(run.ids.len())];
        let Some(stats) = run.stats.get(cp) else {
            continue;
        };
        let before = stats.pushes.load(Ordering::SeqCst);
        let t0 = run.epoch.elapsed();
        if !change(api, cp, i).await {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.pushes.load(Ordering::SeqCst) == before && Instant::now() < deadline {
            let notified = run.fleet.pushed.notified();
            if stats.pushes.load(Ordering::SeqCst) != before {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        let at = Duration::from_nanos(stats.last_push_ns.load(Ordering::SeqCst));
        if stats.pushes.load(Ordering::SeqCst) > before && at >= t0 {
            lat.push((at - t0).as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// Fan-out: one tenant-wide settings change that concerns every agent of the fleet;
/// time from the API call until every agent received the new document (ms), or `None`
/// if not all did within 60 s.
pub async fn fanout(api: &Api, run: &Running, tenant: &str, i: usize) -> Option<f64> {
    let before: HashMap<&String, u64> = run
        .ids
        .iter()
        .filter_map(|c| Some((c, run.stats.get(c)?.pushes.load(Ordering::SeqCst))))
        .collect();
    let mode = if i.is_multiple_of(2) { "none" } else { "full" };
    let total_before = run.fleet.pushes.load(Ordering::SeqCst);
    let target = total_before + run.ids.len() as u64;
    let t0 = Instant::now();
    let (status, body) = api
        .put(
            &format!("/tenants/{tenant}/settings"),
            &json!({"query_text_redaction": mode}),
        )
        .await;
    if !status.is_success() {
        eprintln!("  fan-out: the settings change failed: {status} {body}");
        return None;
    }
    let deadline = t0 + Duration::from_secs(60);
    // Cheap while waiting (one counter); exact once it adds up (every agent, one each).
    loop {
        if run.fleet.pushes.load(Ordering::SeqCst) >= target {
            let took = t0.elapsed().as_secs_f64() * 1000.0;
            let all = run.ids.iter().all(|c| {
                run.stats.get(c).is_some_and(|s| {
                    s.pushes.load(Ordering::SeqCst) > before.get(c).copied().unwrap_or(0)
                })
            });
            if all {
                return Some(took);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A query record of realistic size.
pub fn record(i: u64) -> pb::QueryRecord {
    pb::QueryRecord {
        query_id: format!("20261126_000000_{i:05}_bench{}", i / 100_000),
        cluster: "etl".into(),
        user: "analyst".into(),
        source: "presto-cli".into(),
        catalog: "hive".into(),
        schema: "sales".into(),
        state: "FINISHED".into(),
        create_time_unix_ms: 1_795_000_000_000,
        end_time_unix_ms: 1_795_000_001_000,
        queued_time_ms: 3,
        elapsed_time_ms: 1000,
        cpu_time_ms: 800,
        peak_memory_bytes: 1 << 24,
        input_rows: 10_000,
        input_bytes: 1 << 20,
        output_rows: 10,
        query: "SELECT region, sum(amount) FROM orders WHERE day = ? GROUP BY region".into(),
        fingerprint: "9f2c1a7e5b3d4c6f".into(),
        ..pb::QueryRecord::default()
    }
}

/// The next `batch` query records after `seq` (advanced), ids offset by `base`.
fn next_batch(seq: &mut u64, batch: usize, base: u64) -> pb::TelemetryBatch {
    let records = (0..batch)
        .map(|_| {
            *seq += 1;
            pb::TelemetryRecord {
                seq: *seq,
                kind: Some(pb::telemetry_record::Kind::Query(record(base + *seq))),
            }
        })
        .collect();
    pb::TelemetryBatch {
        records,
        dropped_records_total: 0,
        dropped_by_class: None,
    }
}

/// Telemetry ingest: `agents` streams, each sending batches of `batch` records with at
/// most `window` batches unacked, for `secs`. Returns acked records per second.
pub async fn ingest(url: &str, ids: &[Identity], batch: usize, window: usize, secs: f64) -> f64 {
    // Several replicas: the agents are spread over them.
    let uris: Vec<http::Uri> = url
        .split(',')
        .map(|u| tether_agent::transport::parse_control_plane_url(u.trim()).expect("url"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let totals = futures::future::join_all(ids.iter().enumerate().map(|(a, id)| {
        let uri = uris[a % uris.len()].clone();
        async move {
            let Ok(mut client) = sim::channel(&uri, id).await else {
                return 0u64;
            };
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::TelemetryBatch>(window);
            let Ok(resp) = client
                .telemetry(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            else {
                return 0;
            };
            let mut acks = resp.into_inner();
            let mut seq = 0u64;
            let mut acked = 0u64;
            let base = (a as u64) << 40;
            loop {
                while seq < acked + (window * batch) as u64 && Instant::now() < deadline {
                    if tx.send(next_batch(&mut seq, batch, base)).await.is_err() {
                        return acked;
                    }
                }
                if acked >= seq {
                    return acked;
                }
                match acks.message().await {
                    Ok(Some(ack)) => acked = acked.max(ack.through_seq),
                    _ => return acked,
                }
            }
        }
    }))
    .await;
    let total: u64 = totals.iter().sum();
    total as f64 / t0.elapsed().as_secs_f64()
}

/// TLS handshakes per second against `url`: each of `ids` connects once (mTLS and
/// HTTP/2 set up, then dropped), 32 at a time. With `resumed`, each identity connected once
/// before and offers the session ticket it got; otherwise a fresh client configuration (no
/// ticket) makes every handshake a full one.
pub async fn handshakes(url: &str, ids: &[Identity], resumed: bool) -> f64 {
    let Ok(uri) = tether_agent::transport::parse_control_plane_url(url) else {
        return 0.0;
    };
    let config = |id: &Identity| {
        if resumed {
            Some(id.config.clone())
        } else {
            tether_agent::transport::new_client_config(&id.tls).ok()
        }
    };
    if resumed {
        // Collect a ticket each.
        futures::stream::iter(ids)
            .for_each_concurrent(32, |id| {
                let uri = uri.clone();
                async move {
                    let _ = tether_agent::transport::connect_with(&uri, id.config.clone()).await;
                }
            })
            .await;
    }
    let ok = std::sync::atomic::AtomicUsize::new(0);
    let t0 = Instant::now();
    futures::stream::iter(ids)
        .for_each_concurrent(32, |id| {
            let (uri, ok) = (uri.clone(), &ok);
            let config = config(id);
            async move {
                if let Some(c) = config
                    && tether_agent::transport::connect_with(&uri, c).await.is_ok()
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    ok.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// The transport's limit: one tonic bidirectional stream of the same batches over TLS to
/// a server that acks without storing. Records per second.
pub async fn raw_stream(batch: usize, window: usize, secs: f64) -> f64 {
    raw::run(batch, window, secs).await
}

mod raw {
    use std::pin::Pin;
    use std::time::{Duration, Instant};

    use futures::Stream;
    use tether_proto::v1 as pb;
    use tether_proto::v1::agent_control_server::{AgentControl, AgentControlServer};
    use tonic::{Request, Response, Status, Streaming};

    struct AckOnly;

    type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

    #[tonic::async_trait]
    impl AgentControl for AckOnly {
        async fn enroll(
            &self,
            _: Request<pb::EnrollRequest>,
        ) -> Result<Response<pb::EnrollResponse>, Status> {
            Err(Status::unimplemented("raw baseline"))
        }
        type SessionStream = Out<pb::ControlMessage>;
        async fn session(
            &self,
            _: Request<Streaming<pb::AgentMessage>>,
        ) -> Result<Response<Self::SessionStream>, Status> {
            Err(Status::unimplemented("raw baseline"))
        }
        type TelemetryStream = Out<pb::TelemetryAck>;
        async fn telemetry(
            &self,
            req: Request<Streaming<pb::TelemetryBatch>>,
        ) -> Result<Response<Self::TelemetryStream>, Status> {
            let mut inbound = req.into_inner();
            let out = async_stream(move |tx| async move {
                while let Ok(Some(b)) = inbound.message().await {
                    let through = b.records.last().map_or(0, |r| r.seq);
                    if tx
                        .send(Ok(pb::TelemetryAck {
                            through_seq: through,
                        }))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            Ok(Response::new(out))
        }
        async fn renew_certificate(
            &self,
            _: Request<pb::RenewCertificateRequest>,
        ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
            Err(Status::unimplemented("raw baseline"))
        }
        async fn send_support_bundle(
            &self,
            _: Request<pb::SupportBundle>,
        ) -> Result<Response<pb::SupportBundleAck>, Status> {
            Err(Status::unimplemented("raw baseline"))
        }
    }

    fn async_stream<F, Fut>(f: F) -> Out<pb::TelemetryAck>
    where
        F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::TelemetryAck, Status>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(f(tx));
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    pub async fn run(batch: usize, window: usize, secs: f64) -> f64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    AgentControlServer::new(AckOnly)
                        .max_decoding_message_size(tether_proto::MAX_MESSAGE_BYTES),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = pb::agent_control_client::AgentControlClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::TelemetryBatch>(window);
        let mut acks = client
            .telemetry(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let t0 = Instant::now();
        let (mut seq, mut acked) = (0u64, 0u64);
        loop {
            while seq < acked + (window * batch) as u64 && Instant::now() < deadline {
                if tx
                    .send(super::next_batch(&mut seq, batch, 0))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            if acked >= seq {
                break;
            }
            match acks.message().await {
                Ok(Some(a)) => acked = acked.max(a.through_seq),
                _ => break,
            }
        }
        acked as f64 / t0.elapsed().as_secs_f64()
    }
}

/// The machine, for the results.
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split(':')
                .nth(1)
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "memory_gib": (mem_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0, "cpu_model": model,
           "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()})
}
