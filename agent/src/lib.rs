//! The Tether agent: runs inside the customer's VPC, opens every connection itself, and
//! holds one mutual-TLS session to the control plane.
//!
//! Read in this order: [`run`] (enroll if needed, then sessions forever), [`session`]
//! (one session: Hello, heartbeats, renewal, Goodbye), [`transport`] (proxy, TLS, HTTP/2),
//! [`retry`] (backoff with full jitter), [`identity_store`] (key and certificate on disk).
#![forbid(unsafe_code)]

pub mod audit;
pub mod aws_identity;
pub mod cloudwatch;
pub mod collect;
pub mod desired;
pub mod doctor;
pub mod egress;
pub mod eks;
pub mod enroll;
pub mod error;
pub mod guardrails;
pub mod identity_store;
pub mod metrics;
pub mod podlogs;
pub mod presto_tls;
pub mod reach;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod retry;
pub mod secrets;
pub mod session;
pub mod support;
pub mod telemetry;
pub mod transport;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::desired::DesiredStore;
pub use crate::error::AgentError;
use crate::identity_store::StateDir;
use crate::report::Report;
use crate::retry::{Retry, RetryPolicy};
use crate::session::SessionEnd;
use crate::telemetry::Telemetry;
use crate::transport::TlsMaterial;

/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Configuration of `tether-agent run`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `https://HOST:PORT` of the control plane's gRPC endpoint.
    pub control_plane: String,
    /// The control plane's CA certificate (`ca.pem`).
    pub ca_file: PathBuf,
    /// Where the key and certificate live.
    pub state_dir: PathBuf,
    /// One-time bootstrap token, used when the state dir holds no certificate.
    pub enrollment_token: Option<String>,
    /// Refuse to enroll into any other compute plane.
    pub compute_plane_id: Option<String>,
    /// Reconnect policy.
    pub retry: RetryPolicy,
    /// Kubeconfig; `None` means in-cluster config when in a pod, else no reconciling.
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Presto clusters.
    pub namespace: String,
    /// Full resync period of the reconciler.
    pub resync_interval: Duration,
    /// Grace period of drained workers before their pods are replaced.
    pub drain_grace: Duration,
    /// IAM role of the Presto pods (IRSA), if the install made one.
    pub presto_role_arn: Option<String>,
    /// How catalog credentials in Secrets Manager are read.
    pub secrets: secrets::SecretsSettings,
    /// Which catalog endpoints the agent checks, and how often.
    pub catalog_checks: reach::CatalogChecks,
    /// How often the catalog endpoints are checked.
    pub catalog_check_interval: Duration,
    /// The install's PostgreSQL for the built-in metastore: `host:port` and its secret's ARN.
    pub metastore_db: Option<(String, String)>,
    /// Coordinator certificates of password-protected clusters.
    pub presto_tls: reconcile::PrestoTlsSettings,
    /// How the Presto coordinators are reached.
    pub coordinator_access: collect::CoordinatorAccess,
    /// How often coordinators are scraped.
    pub scrape_interval: Duration,
    /// Bound of the on-disk telemetry spool.
    pub spool_max_bytes: u64,
    /// Where to serve Prometheus `/metrics`, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The agent's CloudWatch shipper, if logs go to CloudWatch: the Presto pods' logs then
    /// go to the same log group, one stream per container ([`podlogs`]).
    pub pod_logs: Option<cloudwatch::LogShipper>,
    /// The coordinator URL each cluster reports ([`reconcile::EndpointTemplate`]).
    pub endpoint: reconcile::EndpointTemplate,
    /// Sign an `sts:GetCallerIdentity` at enrollment, for the control plane to check the
    /// AWS account (`None`: send no identity).
    pub account_binding: Option<aws_identity::StsSettings>,
    /// The EKS cluster to use when running outside it (instead of a kubeconfig).
    pub eks: Option<eks::EksSettings>,
    /// The customer's guardrail policy ([`guardrails`]), if any.
    pub policy_file: Option<PathBuf>,
    /// Where the agent's logs go in CloudWatch, if anywhere (for `doctor`).
    pub cloudwatch: Option<cloudwatch::CloudWatchConfig>,
}

/// Enrolls if needed, then keeps a session up until `shutdown` resolves. Returns an error
/// only for what retrying cannot fix (bad configuration, refused enrollment, revocation).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let endpoints = transport::Endpoints::parse(&config.control_plane)
        .map_err(|e| AgentError::Config(e.to_string()))?;
    let ca = std::fs::read(&config.ca_file).map_err(|e| {
        AgentError::Config(format!(
            "cannot read --ca-file {}: {e}",
            config.ca_file.display()
        ))
    })?;
    let roots = tether_shared::pki::certs_from_pem(&ca)
        .map_err(|e| AgentError::Config(format!("--ca-file {}: {e}", config.ca_file.display())))?;
    let state = StateDir::open(&config.state_dir)?;
    audit::init(&config.state_dir, audit::DEFAULT_MAX_BYTES);
    if let Some(shipper) = &config.pod_logs {
        audit::ship_to(shipper);
    }
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let mut retry = Retry::new(config.retry);
    let mut attempt: u64 = 0;

    let material = TlsMaterial {
        roots: roots.clone(),
        client: None,
    };
    let mut creds = match state.load()? {
        Some(c) => c,
        None => {
            let token = config.enrollment_token.as_deref().ok_or_else(|| {
                AgentError::NotEnrolled(state.identity_path().display().to_string())
            })?;
            loop {
                attempt += 1;
                let url = endpoints.current();
                tracing::info!(attempt, control_plane = %url, "enrolling with control plane");
                match enroll::enroll(
                    url,
                    &material,
                    &state,
                    token,
                    config.compute_plane_id.as_deref(),
                    config.account_binding.as_ref(),
                )
                .await
                {
                    Ok(c) => break c,
                    Err(e) if e.is_retryable() => {
                        let delay = retry.next_delay();
                        tracing::error!(
                            delay_ms = delay.as_millis() as u64,
                            "enrollment failed, will retry: {e}"
                        );
                        endpoints.advance();
                        if wait(delay, &mut stop).await {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    retry.reset();

    let compute_plane_id = compute_plane_of(&creds)?;
    let desired = DesiredStore::open(&config.state_dir, &compute_plane_id)
        .map_err(|e| AgentError::Config(e.to_string()))?;
    // With a policy, everything that acts on the desired state follows the guarded one.
    let (guard, applied) = match &config.policy_file {
        Some(path) => {
            let (guard, guarded) = guardrails::Guard::start(
                path,
                &config.state_dir,
                &compute_plane_id,
                desired.subscribe(),
            )
            .map_err(|e| AgentError::Config(e.to_string()))?;
            (Some(guard), Some(guarded))
        }
        None => {
            // Without a policy the effective state is the document itself: a kept one
            // would be stale the next time a policy is given.
            let _ = std::fs::remove_file(config.state_dir.join(guardrails::GUARDED_STATE_FILE));
            (None, None)
        }
    };
    let effective = || match &applied {
        Some(g) => g.desired.clone(),
        None => desired.subscribe(),
    };
    // The sender lives as long as `run`, reconciler or not, so sessions never see the
    // report channel closed.
    let (report_tx, mut report_rx) = watch::channel(Report::default());
    let (reach_tx, reach_rx) = watch::channel(collect::Reachability::new());
    let (catalog_reach_tx, catalog_reach_rx) = watch::channel(reach::CatalogReach::new());
    // The reconciler and collector stop on shutdown, and also when the session loop ends
    // for good (e.g. revocation), so a fatal error exits at once.
    let (halt_tx, halt_rx) = watch::channel(false);
    let catalog_checks = tokio::spawn(reach::run(
        config.catalog_checks,
        config.catalog_check_interval,
        // --aws-region, else the environment's (ECS sets AWS_REGION in a task).
        config
            .secrets
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned()),
        effective(),
        catalog_reach_tx,
        halt_rx.clone(),
    ));
    let forward = {
        let mut stop = stop.clone();
        let halt_tx = halt_tx.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            halt_tx.send_replace(true);
        })
    };
    let telemetry = Telemetry::open(&config.state_dir, config.spool_max_bytes).map_err(|e| {
        AgentError::Config(format!(
            "telemetry spool in {}: {e}",
            config.state_dir.display()
        ))
    })?;
    let client = match &config.eks {
        Some(e) => Some(
            eks::client(e, &config.state_dir, halt_rx.clone())
                .await
                .map_err(AgentError::Config)?,
        ),
        None => reconcile::client(config.kubeconfig.as_deref())
            .await
            .map_err(AgentError::Config)?,
    };
    let kube = match client {
        Some(client) => Some(reconcile::kube_ops::Kube::new(
            client,
            config.namespace.clone(),
        )),
        None => {
            tracing::warn!(
                "no --kubeconfig and not running in a pod: desired state is received and kept, not applied"
            );
            None
        }
    };
    let pod_logs = match (&kube, &config.pod_logs) {
        (Some(k), Some(parent)) => Some(tokio::spawn(podlogs::run(
            k.client().clone(),
            podlogs::PodLogSettings {
                namespace: config.namespace.clone(),
                compute_plane_id: compute_plane_id.clone(),
                state_dir: config.state_dir.clone(),
                retry: config.retry,
            },
            parent.clone(),
            halt_rx.clone(),
        ))),
        _ => None,
    };
    let guard = guard.map(|g| tokio::spawn(g.run(halt_rx.clone())));
    let reconciler = kube.as_ref().map(|k| {
        start_reconciler(
            &config,
            &compute_plane_id,
            k.clone(),
            (effective(), applied.as_ref().map(|g| g.conditions.clone())),
            report_tx.clone(),
            (reach_rx, catalog_reach_rx),
            halt_rx.clone(),
        )
    });
    let kube_for_support = kube.clone();
    let collector = collect::Collector::new(
        collect::CollectSettings {
            interval: config.scrape_interval,
            access: config.coordinator_access,
            namespace: config.namespace.clone(),
        },
        kube,
        telemetry.clone(),
        effective(),
        report_rx.clone(),
        reach_tx,
    );
    let collector = tokio::spawn(collector.run(halt_rx.clone()));
    let support = tokio::spawn(
        support::Desk {
            config: config.clone(),
            compute_plane_id: compute_plane_id.clone(),
            kube: kube_for_support,
            report: report_rx.clone(),
            sent: Default::default(),
        }
        .run(halt_rx.clone()),
    );
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AgentError::Config(format!("--metrics-listen {addr}: {e}")))?;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics listening");
        tokio::spawn(metrics::serve(
            listener,
            telemetry.clone(),
            report_rx.clone(),
            halt_rx.clone(),
        ));
    }

    let result = session_loop(
        &config,
        &endpoints,
        &roots,
        &material,
        &state,
        &mut creds,
        &desired,
        &mut report_rx,
        &telemetry,
        &mut stop,
        &mut retry,
        attempt,
    )
    .await;
    halt_tx.send_replace(true);
    forward.abort();
    if let Some(r) = reconciler {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), collector).await;
    catalog_checks.abort();
    support.abort();
    if let Some(g) = guard {
        g.abort();
    }
    if let Some(p) = pod_logs {
        let _ = tokio::time::timeout(Duration::from_secs(10), p).await;
    }
    telemetry.sync();
    audit::flush(Duration::from_secs(5)).await;
    result
}

/// The compute plane the agent's certificate speaks for.
fn compute_plane_of(creds: &identity_store::Credentials) -> Result<String, AgentError> {
    creds
        .info
        .identity
        .as_ref()
        .map(|i| i.compute_plane_id.clone())
        .ok_or_else(|| AgentError::Config("the agent certificate names no compute plane".into()))
}

/// Starts the reconciler.
fn start_reconciler(
    config: &Config,
    compute_plane_id: &str,
    kube: reconcile::kube_ops::Kube,
    (desired, guardrails): (
        watch::Receiver<desired::Desired>,
        Option<watch::Receiver<Vec<tether_proto::v1::ClusterCondition>>>,
    ),
    report: watch::Sender<Report>,
    reach: (
        watch::Receiver<collect::Reachability>,
        watch::Receiver<reach::CatalogReach>,
    ),
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let settings = reconcile::Settings {
        namespace: config.namespace.clone(),
        compute_plane_id: compute_plane_id.to_owned(),
        resync: config.resync_interval,
        drain_grace: config.drain_grace,
        endpoint: config.endpoint.clone(),
        presto_role_arn: config.presto_role_arn.clone(),
        secrets: config.secrets.clone(),
        metastore_db: config.metastore_db.clone(),
        presto_tls: config.presto_tls.clone(),
    };
    let mut reconciler = reconcile::Reconciler::new(kube, settings, desired, report, reach);
    if let Some(g) = guardrails {
        reconciler = reconciler.with_guardrails(g);
    }
    tokio::spawn(reconciler.run(stop))
}

/// Holds sessions until stopped or refused for good.
#[allow(clippy::too_many_arguments)]
async fn session_loop(
    config: &Config,
    endpoints: &transport::Endpoints,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    material: &TlsMaterial,
    state: &StateDir,
    creds: &mut identity_store::Credentials,
    desired: &DesiredStore,
    report_rx: &mut watch::Receiver<Report>,
    telemetry: &Telemetry,
    stop: &mut watch::Receiver<bool>,
    retry: &mut Retry,
    mut attempt: u64,
) -> Result<(), AgentError> {
    loop {
        attempt += 1;
        let url = endpoints.current();
        // An agent that was away longer than its certificate lives cannot renew it: say so
        // (or enroll again with a given token) instead of dialling with it, whichever way
        // the control plane would refuse it (a TLS alert on a full handshake, a refused
        // session start on a resumed one).
        let now = tether_shared::timestamps::now_unix_ms() / 1000;
        if creds.info.not_after <= now {
            let expired = AgentError::Refused(format!(
                "this agent's certificate expired at {}: create a new enrollment token and enroll this agent again",
                tether_shared::timestamps::rfc3339_from_ms(creds.info.not_after * 1000)
                    .unwrap_or_default()
            ));
            *creds = reenroll(config, url, material, state, expired).await?;
            retry.reset();
            continue;
        }
        tracing::info!(attempt, control_plane = %url, "dialing control plane");
        let started = Instant::now();
        let result = session::run(
            url, roots, state, creds, desired, report_rx, telemetry, stop,
        )
        .await;
        if started.elapsed() >= STABLE_SESSION {
            retry.reset();
        }
        let delay = match result {
            Ok(SessionEnd::Shutdown) => {
                tracing::info!("agent stopped");
                return Ok(());
            }
            Ok(SessionEnd::Goodbye {
                reason, message, ..
            }) if reason == "revoked" => {
                let revoked = AgentError::Revoked(message);
                *creds = reenroll(config, url, material, state, revoked).await?;
                retry.reset();
                continue;
            }
            Err(revoked @ AgentError::Revoked(_)) => {
                *creds = reenroll(config, url, material, state, revoked).await?;
                retry.reset();
                continue;
            }
            Ok(SessionEnd::Goodbye {
                reason,
                message,
                retry_after,
            }) => {
                tracing::warn!(%reason, detail = %message, retry_after_ms = retry_after.as_millis() as u64, "control plane ended the session");
                // Draining, superseded, rebalancing: another replica may take it now.
                endpoints.advance();
                retry.after_goodbye(retry_after)
            }
            Ok(SessionEnd::Closed) => {
                tracing::warn!("session closed by the control plane");
                endpoints.advance();
                retry.next_delay()
            }
            Err(e) if e.is_retryable() => {
                let delay = retry.next_delay();
                tracing::error!(
                    delay_ms = delay.as_millis() as u64,
                    "cannot hold a session, will retry: {e}"
                );
                endpoints.advance();
                delay
            }
            Err(e) => return Err(e),
        };
        if *stop.borrow() || wait(delay, stop).await {
            tracing::info!("agent stopped");
            return Ok(());
        }
    }
}

/// After a revocation: enroll again if the operator gave a (new) enrollment token,
/// otherwise, or if that fails, stop with the revocation as the reason.
async fn reenroll(
    config: &Config,
    url: &http::Uri,
    material: &TlsMaterial,
    state: &StateDir,
    revoked: AgentError,
) -> Result<identity_store::Credentials, AgentError> {
    let Some(token) = config.enrollment_token.as_deref() else {
        return Err(revoked);
    };
    tracing::warn!("{revoked}; enrolling again with the given enrollment token");
    let before = state.load().ok().flatten().and_then(|c| c.info.identity);
    let creds = enroll::enroll(
        url,
        material,
        state,
        token,
        config.compute_plane_id.as_deref(),
        config.account_binding.as_ref(),
    )
    .await
    .map_err(|e| AgentError::Revoked(format!("{revoked}; enrolling again failed: {e}")))?;
    if before.is_some() && creds.info.identity != before {
        // The reconciler and the persisted desired state belong to the old identity.
        return Err(AgentError::Config(
            "enrolled again into another compute plane; restart the agent to serve it".into(),
        ));
    }
    Ok(creds)
}

/// Sleeps `delay`; true if told to stop meanwhile.
async fn wait(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    }
}
