//! The Tether control plane.
//!
//! Read in this order: [`ControlPlane`] (what `serve` does), [`grpc`] (the service agents
//! dial into), [`sessions`] (live sessions, supersede and revoke), [`api`] (REST),
//! [`store`] (persistence behind one trait), [`ca`] (the internal CA).
#![forbid(unsafe_code)]
#![recursion_limit = "512"]

pub mod account_binding;
pub mod admission;
pub mod api;
pub mod authz;
pub mod ca;
pub mod clock;
pub mod dashboard;
pub mod desired;
pub mod fleet;
pub mod grpc;
pub mod identity;
pub mod install;
pub mod metrics;
pub mod presence;
pub mod secrets;
pub mod sessions;
pub mod signing;
pub mod state;
pub mod status;
pub mod store;
pub mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tether_shared::{files, tokens};
use tokio::net::TcpListener;

use crate::authz::Role;
use crate::ca::Ca;
use crate::clock::{Clock, SystemClock};
use crate::sessions::Registry;
use crate::state::{AppState, SessionSettings};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// The whole HTTP side: the REST API, the dashboard, and the security headers on every
/// response.
pub fn app(state: state::AppState) -> axum::Router {
    api::router(state.clone())
        .merge(dashboard::router(state))
        .layer(axum::middleware::from_fn(dashboard::security_headers))
}

/// Lifetime of the gRPC server certificate (re-issued on every start).
const SERVER_CERT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The name of the fleet's TLS ticket secret.
const TICKET_SECRET: &str = "tls-ticket-secret";
/// How long shutdown waits for connections to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration of `tether-control-plane serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the CA, the admin token and (by default) the SQLite database.
    pub data_dir: PathBuf,
    /// Database URL; `None` means SQLite at `DATA_DIR/tether.db`.
    pub database: Option<String>,
    /// The key-encryption key of the control plane's secrets; `None` means
    /// `DATA_DIR/secret-key` (created on first start), which only SQLite allows.
    pub secret_key_file: Option<PathBuf>,
    /// The gRPC endpoint agents are told to use (its host goes into the server
    /// certificate).
    pub public_grpc_endpoint: Option<String>,
    /// Extra DNS names or IP addresses for the gRPC server certificate.
    pub tls_sans: Vec<String>,
    /// Where agents' signed AWS identities are verified (account binding).
    pub sts_endpoint: String,
    /// Session tunables.
    pub session: SessionSettings,
    /// How long telemetry (query records, metrics, events) is kept.
    pub telemetry_retention: Duration,
    /// This replica among the others.
    pub fleet: fleet::FleetSettings,
    /// Sign-in with identity providers.
    pub identity: state::IdentitySettings,
}

/// Why the control plane could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Data dir problem.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// CA problem.
    #[error("internal CA: {0}")]
    Ca(#[from] ca::CaError),
    /// Store problem.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Secrets problem (the key file, a wrong key).
    #[error("{0}")]
    Secrets(#[from] secrets::SecretError),
    /// A `--database` URL of no known kind.
    #[error("--database {0:?}: use postgres://… (several replicas) or sqlite://… (one process)")]
    DatabaseUrl(String),
    /// TLS configuration problem.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A server failed.
    #[error("{0} server: {1}")]
    Server(&'static str, String),
}

/// A control plane ready to serve.
#[derive(Debug)]
pub struct ControlPlane {
    state: AppState,
    retention: Duration,
    tls: Arc<rustls::ServerConfig>,
    admin_token_path: PathBuf,
}

impl ControlPlane {
    /// Prepares the data dir: opens the store (running migrations), checks the secret key,
    /// and on a new database creates the CA and the platform admin token; issues the gRPC
    /// server certificate.
    pub async fn open(config: Config) -> Result<Self, ServeError> {
        // One crypto provider for every TLS client and server here (a no-op when the
        // binary installed it already); the STS client needs one to exist.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = &config.data_dir;
        let dir_err = |source| ServeError::DataDir {
            path: dir.display().to_string(),
            source,
        };
        let opened = open_store(&config).await?;
        let (store, secrets) = (opened.store, opened.secrets);
        if is_postgres(&config) {
            // Sessions an earlier process of this replica (same name) held did not survive
            // its end; those of other replicas end with their leases.
            store.remove_replica(&config.fleet.replica_name).await?;
        } else {
            // One process owns a SQLite database: no session survived the restart.
            store.mark_all_disconnected().await?;
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let admin_token_path = dir.join("admin-token");
        ensure_admin_token(store.as_ref(), clock.now(), &admin_token_path)
            .await
            .map_err(|e| match e {
                AdminTokenError::Io(source) => dir_err(source),
                AdminTokenError::Store(e) => ServeError::Store(e),
            })?;
        let ca = Arc::new(Ca::shared(dir, &secrets, clock.now()).await?);
        let (dns, ips) = server_names(&config);
        let (server_cert, server_key) = ca.issue_server(&dns, &ips, SERVER_CERT_TTL)?;
        let ticket_secret = secrets
            .get_or_create(TICKET_SECRET, clock.now(), || {
                let mut bytes = vec![0u8; 32];
                rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes[..]);
                bytes
            })
            .await?;
        let tls = grpc::tls::server_config(
            ca.ca_pem(),
            &server_cert.pem,
            server_key.serialize_der(),
            &ticket_secret,
        )
        .map_err(|e| ServeError::Tls(e.to_string()))?;
        let signer = Arc::new(signing::DesiredStateSigner::shared(&secrets, clock.now()).await?);
        tracing::info!(
            key_id = signer.public().key_id(),
            "desired state signing key"
        );
        let state = AppState {
            store,
            ca,
            signer,
            sessions: Registry::default(),
            clock,
            admission: Arc::new(admission::Admission::new(
                config.session.session_starts_per_second,
                config.session.admission_max_wait,
            )),
            settings: config.session,
            presence: Arc::default(),
            fleet: fleet::Fleet::new(config.fleet.clone(), opened.pg),
            binding: state::BindingSettings {
                sts_endpoint: config.sts_endpoint.clone(),
                http: account_binding::StsClient::new(),
            },
            secrets: secrets.clone(),
            identity: config.identity.clone(),
            oidc_http: identity::oidc::http_client().map_err(ServeError::Tls)?,
            sign_in_limits: Arc::default(),
            install: state::InstallSettings {
                grpc_endpoint: config.public_grpc_endpoint.clone().unwrap_or_default(),
                agent_image: format!("public.ecr.aws/tether/agent:{}", env!("CARGO_PKG_VERSION")),
            },
        };
        Ok(Self {
            state,
            retention: config.telemetry_retention,
            tls,
            admin_token_path,
        })
    }

    /// The shared state (for in-process callers such as the sandbox).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Where the platform admin token was written.
    pub fn admin_token_path(&self) -> &Path {
        &self.admin_token_path
    }

    /// Serves HTTP on `http` and gRPC (TLS) on `grpc` until `shutdown` resolves; then
    /// says Goodbye to every agent with a spread-out `retry_after` and drains.
    pub async fn run(
        self,
        http: TcpListener,
        grpc: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut state = self.state.clone();
        if state.install.grpc_endpoint.is_empty() {
            // Without --public-grpc-endpoint, name the bound address if it is one agents
            // can dial; otherwise a placeholder the installer must replace.
            state.install.grpc_endpoint = match grpc.local_addr() {
                Ok(addr) if !addr.ip().is_unspecified() && addr.is_ipv4() => {
                    format!("https://{addr}")
                }
                _ => "https://control-plane.example.com:8443".to_owned(),
            };
        }
        let app = app(state);
        let http_server = axum::serve(
            http,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(wait(stop_rx.clone()));
        let grpc_server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(32))
            .add_service(grpc::AgentControlService::new(self.state.clone()).into_server())
            .serve_with_incoming_shutdown(
                grpc::tls::incoming(grpc, self.tls.clone()),
                wait(stop_rx.clone()),
            );
        let retention_task = tokio::spawn(retention(self.state.clone(), self.retention));
        let lease_task = tokio::spawn(self.state.fleet.clone().run_lease(self.state.clone()));
        let listener_task = tokio::spawn(self.state.fleet.clone().run_listener(self.state.clone()));
        let presence_task = tokio::spawn(self.state.presence.clone().run(self.state.store.clone()));
        let mut http_task = tokio::spawn(async move { http_server.await });
        let mut grpc_task = tokio::spawn(grpc_server);
        let sessions = self.state.sessions.clone();
        tokio::select! {
            () = shutdown => {}
            r = &mut http_task => return Err(ServeError::Server("HTTP", format!("{r:?}"))),
            r = &mut grpc_task => return Err(ServeError::Server("gRPC", format!("{r:?}"))),
        }
        tracing::info!(
            sessions = sessions.len(),
            "shutting down: saying goodbye to agents"
        );
        retention_task.abort();
        listener_task.abort();
        lease_task.abort();
        self.state.fleet.drain(&self.state).await;
        tokio::time::sleep(self.state.fleet.linger()).await;
        stop_tx.send_replace(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let _ = http_task.await;
            let _ = grpc_task.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections did not drain in time; closing them");
        }
        // What the sessions reported up to their end (flushes take turns, in order).
        self.state.presence.flush(self.state.store.as_ref()).await;
        presence_task.abort();
        self.state.fleet.leave(&self.state).await;
        Ok(())
    }
}

/// Deletes telemetry older than `keep`, at start and then hourly.
async fn retention(state: AppState, keep: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let before_ms = (state.clock.now() - keep.as_secs() as i64) * 1000;
        match state.store.purge_telemetry(before_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "expired telemetry deleted"),
            Err(e) => tracing::warn!(error = %e, "telemetry retention failed"),
        }
    }
}

enum AdminTokenError {
    Io(std::io::Error),
    Store(StoreError),
}

/// The first control plane on a new database creates the platform admin token and
/// writes it to `DIR/admin-token` (0600); the token of an existing `DIR/admin-token` is
/// the one registered then (a SQLite database made anew keeps its admin token). Other
/// replicas write nothing; `tether-control-plane admin-token` mints more.
async fn ensure_admin_token(
    store: &dyn Store,
    now: i64,
    path: &Path,
) -> Result<(), AdminTokenError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => Some(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(AdminTokenError::Io(e)),
    };
    let token = existing
        .clone()
        .unwrap_or_else(|| tokens::generate(tokens::API_TOKEN_PREFIX));
    let hash = tokens::hash(&token);
    let first = store
        .bootstrap_platform_admin(&hash, now)
        .await
        .map_err(AdminTokenError::Store)?;
    match (first, existing.is_some()) {
        (true, false) => {
            files::write_private(path, format!("{token}\n").as_bytes())
                .map_err(AdminTokenError::Io)?;
            tracing::info!(path = %path.display(), "platform admin token written");
        }
        (true, true) => {
            tracing::info!(path = %path.display(), "platform admin token registered")
        }
        (false, true) => {
            let known = store
                .find_api_token(&hash)
                .await
                .map_err(AdminTokenError::Store)?;
            if known.is_none() {
                tracing::warn!(path = %path.display(), "this admin-token is not a token of this database");
            }
        }
        (false, false) => {}
    }
    Ok(())
}

/// An opened store with its secrets.
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its sealed secrets.
    pub secrets: secrets::Secrets,
    /// The PostgreSQL pool, when the store is PostgreSQL (replicas notify each other
    /// through it).
    pub pg: Option<sqlx::PgPool>,
}

/// Opens the store `config` names and its secrets: SQLite in the data dir unless
/// `--database` names PostgreSQL. The data dir becomes owner-only (0700, every file in
/// it 0600) before anything secret is written there.
pub async fn open_store(config: &Config) -> Result<Opened, ServeError> {
    let dir = &config.data_dir;
    let loosened = files::secure_dir(dir).map_err(|source| ServeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    for path in loosened {
        tracing::warn!(path = %path.display(), "file in the data dir was readable by others; made it 0600");
    }
    let postgres = is_postgres(config);
    let mut pg = None;
    let store: Arc<dyn Store> = match config.database.as_deref() {
        None => {
            let path = dir.join("tether.db");
            // SQLite gives its -wal and -shm files the database file's mode.
            files::create_private(&path).map_err(|source| ServeError::DataDir {
                path: path.display().to_string(),
                source,
            })?;
            let url = format!("sqlite://{}", path.display());
            Arc::new(SqliteStore::open(&url).await?)
        }
        Some(url) if url.starts_with("sqlite:") => Arc::new(SqliteStore::open(url).await?),
        Some(url) if postgres => {
            let s = store::postgres::PgStore::open(url).await?;
            pg = Some(s.pool().clone());
            Arc::new(s)
        }
        Some(other) => return Err(ServeError::DatabaseUrl(redact_url(other))),
    };
    let key = match (&config.secret_key_file, postgres) {
        (Some(path), _) => secrets::SecretKey::load(path)?,
        (None, false) => secrets::SecretKey::load_or_create(&dir.join("secret-key"))?,
        (None, true) => return Err(secrets::SecretError::Required.into()),
    };
    let secrets = secrets::Secrets::open(key, store.clone(), SystemClock.now()).await?;
    Ok(Opened { store, secrets, pg })
}

/// Mints a new platform admin token in the database `config` names (checking its secret
/// key first, so a token is never added to the wrong database).
pub async fn mint_admin_token(config: &Config) -> Result<String, ServeError> {
    let store = open_store(config).await?.store;
    let token = tokens::generate(tokens::API_TOKEN_PREFIX);
    store
        .create_api_token(
            None,
            Role::PlatformAdmin,
            &tokens::hash(&token),
            SystemClock.now(),
        )
        .await?;
    tracing::info!("platform admin token minted");
    Ok(token)
}

/// Replaces the desired-state signing key of the database `config` names with a new one,
/// introduced by a statement the old key signs; returns the old and new key ids. Replicas
/// sign with the new key once restarted; agents follow the statement at their next session.
pub async fn rotate_signing_key(config: &Config) -> Result<(String, String), ServeError> {
    let secrets = open_store(config).await?.secrets;
    let (old, new) = signing::DesiredStateSigner::rotate(&secrets, SystemClock.now()).await?;
    tracing::info!(old = %old, new = %new, "desired-state signing key rotated");
    Ok((old, new))
}

/// Whether the store is PostgreSQL (several replicas may share it).
fn is_postgres(config: &Config) -> bool {
    config
        .database
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// A database URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => format!("{}://…{}", u.scheme_str().unwrap_or("?"), u.path()),
        Err(_) => "(unparsable)".to_owned(),
    }
}

/// Names for the gRPC server certificate: loopback, the public endpoint's host, and any
/// `--tls-san`.
fn server_names(config: &Config) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = vec!["localhost".to_owned()];
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    let endpoint_host = config
        .public_grpc_endpoint
        .as_deref()
        .and_then(|e| e.parse::<http::Uri>().ok())
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()));
    for name in endpoint_host
        .into_iter()
        .chain(config.tls_sans.iter().cloned())
    {
        match name.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&name) => dns.push(name),
            Err(_) => {}
        }
    }
    (dns, ips)
}
