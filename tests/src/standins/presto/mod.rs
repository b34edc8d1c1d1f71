//! A Presto coordinator stand-in, faithful on the wire so that the agent's real scraper, the
//! Presto CLI and `presto-python-client` work against it unchanged.
//!
//! It serves `/v1/info`, `/v1/info/state` (GET, and PUT for graceful shutdown),
//! `/v1/cluster`, `/v1/query[?state=&limit=]`, `/v1/query/{id}` (410 once expired; DELETE
//! cancels, PUT `…/killed` kills), `/v1/node`, and the client protocol `/v1/statement`, in
//! Presto's JSON shapes: airlift Duration and DataSize strings, ISO-8601 times with millis,
//! `endTime` at the epoch until a query ends, XxHash64 `queryHash`.
//!
//! Queries move QUEUED → RUNNING → FINISHED or FAILED on a planned timeline (a client polling
//! `nextUri` moves its query on at once). Their statistics are a function of the plan and
//! the time, so `/v1/query`, `/v1/cluster` and the client protocol agree at every instant.
//! A failed query's message quotes a literal of its text (`Cannot cast 'alice@example.com'
//! to INT`), like the cast and range failures that leak customer data in real records.
//! Finished queries are kept per Presto's rule: the last `max_history`, plus every query that
//! ended less than `min_expire_age` ago, checked by a job once a second.
//!
//! Started with [`PrestoOptions::pod`], it is that coordinator pod: it reads its
//! configuration from the Deployment's mounted ConfigMaps and Secrets and enforces HTTPS,
//! LDAP password authentication and the file-based access rules they configure (see
//! `security`); it then also listens for HTTPS when the configuration says so.
//!
//! Not served: roles, Kerberos and certificate authentication, `/v1/status`, `/v1/queryState`, stage plans
//! (`outputStage` is null), real result data (every statement returns the same three rows).
//!
//! Module map: `server` (router, REST resources) and `statement` (client protocol) over
//! `coordinator` (query tracker, retention, cluster counters) and `query` (one query's
//! timeline and statistics); `model` holds the JSON shapes, `durations` airlift's formats,
//! `failure` error codes and messages, `hash` XxHash64; `workload` submits queries.

mod coordinator;
mod durations;
mod failure;
mod hash;
mod model;
pub mod pod;
mod query;
mod security;
mod server;
mod statement;
mod workload;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use pod::PodSource;
pub use workload::{Workload, WorkloadHandle, default_texts};

use query::{ClientSession, Timing};
use server::Shared;

/// How the stand-in is started.
#[derive(Debug, Clone)]
pub struct PrestoOptions {
    /// Where to listen; default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// `node.environment`; default `tether`.
    pub environment: String,
    /// The version `/v1/info` reports; default `0.293`.
    pub version: String,
    /// Workers reported by `/v1/cluster` and `/v1/node`; default 2.
    pub active_workers: u32,
    /// Like `query.max-history`; default 100.
    pub max_history: usize,
    /// Like `query.min-expire-age`; default 15 min (tests set it low).
    pub min_expire_age: Duration,
    /// The coordinator Deployment whose mounted configuration the stand-in runs with;
    /// `None`: no authentication and no access control, HTTP only.
    pub pod: Option<PodSource>,
}

impl Default for PrestoOptions {
    fn default() -> Self {
        PrestoOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            environment: "tether".to_owned(),
            version: "0.293".to_owned(),
            active_workers: 2,
            max_history: 100,
            min_expire_age: Duration::from_secs(15 * 60),
            pod: None,
        }
    }
}

/// How long a query from [`PrestoStandIn::submit`] queues and runs.
const SUBMIT_TIMING: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(450));

/// A running stand-in. Dropping it stops it too; [`PrestoStandIn::shutdown`] also waits.
pub struct PrestoStandIn {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    expiry: Option<JoinHandle<()>>,
    https: Option<(SocketAddr, JoinHandle<()>)>,
}

impl PrestoStandIn {
    /// Binds `opts.listen` and serves on the current tokio runtime.
    pub async fn start(opts: PrestoOptions) -> std::io::Result<Self> {
        // Its HTTP clients (rustls) need the one crypto provider; a no-op once installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let security = match &opts.pod {
            Some(src) => Some(Arc::new(
                security::Security::load(src.clone()).map_err(std::io::Error::other)?,
            )),
            None => None,
        };
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let tls = security.as_ref().and_then(|s| s.https.clone());
        let shared = Arc::new(Shared::new(opts, addr, security));
        let (stop, stopped) = watch::channel(false);
        let https = match tls {
            Some(tls) => {
                let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
                let https_addr = l.local_addr()?;
                let app =
                    server::router(shared.clone()).layer(axum::Extension(server::Transport::Https));
                Some((
                    https_addr,
                    tokio::spawn(server::serve_https(l, tls, app, stopped.clone())),
                ))
            }
            None => None,
        };
        let app = server::router(shared.clone())
            .layer(axum::Extension(server::Transport::Http))
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut until = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "presto stand-in server failed");
            }
        });
        let expiry = tokio::spawn(expire_every_second(shared.clone(), stopped));
        Ok(PrestoStandIn {
            shared,
            stop,
            server: Some(server),
            expiry: Some(expiry),
            https,
        })
    }

    /// The HTTPS listener's address, when the mounted configuration enables HTTPS.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().map(|(a, _)| *a)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.base()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Starts a workload: `count` queries (or unbounded if `None`) submitted at
    /// `per_second`, each moving QUEUED → RUNNING → FINISHED (or FAILED with probability
    /// `fail_ratio`) over `run_time`; texts come from `texts` round-robin.
    pub fn start_workload(&self, w: Workload) -> WorkloadHandle {
        workload::start(self.shared.clone(), w, self.stop.subscribe())
    }

    /// Submits one query as the client protocol would (it queues 50 ms and runs 450 ms; a
    /// text containing `fail`, in any case, fails) and returns its id.
    pub fn submit(
        &self,
        user: &str,
        source: Option<&str>,
        catalog: Option<&str>,
        schema: Option<&str>,
        sql: &str,
    ) -> String {
        let session = ClientSession {
            user: user.to_owned(),
            source: source.map(str::to_owned),
            catalog: catalog.map(str::to_owned),
            schema: schema.map(str::to_owned),
            remote_address: Some("127.0.0.1".to_owned()),
            user_agent: Some(format!("StatementClientV1/{}", self.shared.opts.version)),
            client_info: None,
            client_tags: Vec::new(),
        };
        let timing = Timing {
            queued_for: SUBMIT_TIMING.0,
            run_for: SUBMIT_TIMING.1,
            failure_pick: sql.to_ascii_lowercase().contains("fail").then_some(0),
        };
        let (mut c, now) = self.shared.coordinator();
        c.create(sql.to_owned(), session, timing, now)
    }

    /// Queries submitted so far, by every means.
    pub fn submitted(&self) -> u64 {
        self.shared.coordinator().0.submitted()
    }

    /// Every query that reached FINISHED or FAILED, in the order they ended, whether or not
    /// it has expired since.
    pub fn finished_ids(&self) -> Vec<String> {
        self.shared.coordinator().0.finished_ids().to_vec()
    }

    /// `"ACTIVE"`, `"INACTIVE"` or `"SHUTTING_DOWN"`, as `GET /v1/info/state` answers.
    pub fn node_state(&self) -> String {
        self.shared.coordinator().0.node_state.name().to_owned()
    }

    /// What `GET /v1/cluster` answers right now.
    pub fn cluster_stats(&self) -> serde_json::Value {
        self.shared.cluster_stats_json()
    }

    /// Stops serving, stops workloads and the expiry job, and waits (up to 5 s) for open
    /// requests to finish.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        let https = self.https.take().map(|(_, t)| t);
        for task in [self.server.take(), self.expiry.take(), https]
            .into_iter()
            .flatten()
        {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// `QueryTracker`'s expiry job.
async fn expire_every_second(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (mut c, now) = shared.coordinator();
                c.expire(now);
            }
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

impl std::fmt::Debug for PrestoStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrestoStandIn")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Drop for PrestoStandIn {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
